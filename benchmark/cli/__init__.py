"""``bench``: a thin command-line face over functions that tests and scripts call directly.

It only parses arguments and prints; user errors (``ArtshiftError``) are printed without a
traceback and exit with status 2.

Command groups are registered like methods: each is a module of this package with a
``register(app)`` function, listed as one line in the ``# --- command groups ---`` section of
``benchmark/core/registry.py``, and added here, in registration order, when the app is built
(so ``bench --help`` lists them all). Every group lives here, those over ``reports`` and
``methods`` included (``leaderboard``, ``reproduce``, ``grid``, ``report``, ``study``,
``shift``, ``bank``): this package is the top floor and may import any other, while nothing
below it imports ``reports`` or ``methods`` (docs/architecture.md). Since building the app
imports every group's module, those modules import numpy, pandas or torch users inside their
commands, so ``bench --help`` stays fast. Shared options, enums, consoles and tables are in
``benchmark.cli.common``. A new group is one module + one registry line; nothing in this file
changes.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from typing import Any, Optional

import typer
from rich.markup import escape

from benchmark.cli.common import err, out
from benchmark.core import registry
from benchmark.core.atomic import disk_full, free_mb
from benchmark.core.errors import ArtshiftError
from benchmark.core.profiles import CPU_THREADS

__all__ = ["app", "build_app", "err", "main", "out"]

# errors of the machine rather than of artshift: one line and exit 2 instead of a traceback
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}
ENVIRONMENT_HINT = ("free disk space or choose a folder you can write to (--home / $ARTSHIFT_HOME, --out), then "
                    "run the same command again: it resumes from the last checkpoint")

HELP = "artshift: translate paintings to photos with registered methods and measure the domain gap."


def build_app(groups: Optional[registry.Registry[Any]] = None) -> typer.Typer:
    """A fresh ``bench`` app with every group of ``groups`` (default: ``registry.commands``) added."""
    groups = registry.commands if groups is None else groups
    new = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=HELP)
    for name in groups.names():
        groups.get(name)(new)
    return new


app = build_app()


class Terminated(KeyboardInterrupt):
    """SIGTERM outside training (start-up, translation, evaluation): stop like Ctrl-C, so the run
    records itself as interrupted and the console says how to resume."""


def _terminate(signum, frame) -> None:
    raise Terminated("SIGTERM")


def _interrupt(exc: BaseException) -> BaseException | None:
    """The KeyboardInterrupt behind ``exc`` (typer turns one into a silent ``Exit(130)``)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _interrupted(exc: BaseException) -> None:
    """Print the one line that says how to resume, and exit 143 (SIGTERM) or 130 (Ctrl-C)."""
    text = str(exc).strip()
    term = isinstance(exc, Terminated) or text.startswith("SIGTERM")
    if "run the same command again" not in text:
        text = f"{'SIGTERM' if term else 'interrupted'}: stopped; run the same command again to resume"
    err.print(f"interrupted: {escape(text)}", highlight=False, soft_wrap=True)
    sys.exit(143 if term else 130)


def main() -> None:
    for stream in (sys.stdout, sys.stderr):  # file names that are not valid UTF-8 print as escapes
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    import signal
    import threading

    import torch

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    # every command computes at CPU_THREADS unless the user set OMP_NUM_THREADS (why: the constant's
    # comment in benchmark.core.profiles); `bench run --threads N` sets its own count for its run
    threads_before = torch.get_num_threads()
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(CPU_THREADS)
    try:
        _main()
    finally:
        torch.set_num_threads(threads_before)
        if previous is not None:  # main() called in-process (tests, scripts): leave the handler as it was
            signal.signal(signal.SIGTERM, previous)


def _main() -> None:
    try:
        app()
    except SystemExit as exc:
        cause = _interrupt(exc) if exc.code == 130 else None
        if cause is None:
            raise
        _interrupted(cause)
    except ArtshiftError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise  # anything else is a bug: keep its traceback
        # a full disk or a folder the user cannot write: their machine, not our code; the run
        # itself is already recorded as failed (and its temporary files removed) by the runner
        where = f" {exc.filename}" if exc.filename else ""
        extra = ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT) and exc.filename:  # which folder is full, and how full
            from pathlib import Path


            folder = Path(str(exc.filename)).parent
            free = free_mb(folder)
            extra = f" (the file system of {folder} is full" + (f", {free:.2f} MB free)" if free is not None else ")")
        err.print(f"[bold red]error:[/] {escape(f'cannot write{where}: {exc.strerror or exc}{extra}')}\n"
                  f"  -> {escape(ENVIRONMENT_HINT)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except RuntimeError as exc:

        if not disk_full(exc):
            raise  # a bug: keep its traceback
        # torch's zip writer outside an atomic write: it does not say which file
        from benchmark.core import paths

        first = str(exc).strip().splitlines()[0][:200]
        err.print(f"[bold red]error:[/] {escape(f'a file could not be written: the disk is full ({first}); check the file system of {paths.home()}')}\n"
                  f"  -> {escape(ENVIRONMENT_HINT)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        _interrupted(exc)
