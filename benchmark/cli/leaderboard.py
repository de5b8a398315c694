"""``bench leaderboard``: the store's tables in md, latex, csv, html or json (see ``reports.leaderboard``).

Registered in ``benchmark.core.registry.commands`` as ``benchmark.cli.leaderboard:register``, so the core package
never imports ``reports``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from benchmark.cli.common import Home, err, out
from benchmark.core import paths
from benchmark.core.errors import ArtshiftError


def write_text(text: str, output: Optional[Path]) -> None:
    """To stdout, or to ``output`` (its folder created) with a one-line error when that cannot be written."""
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ArtshiftError(f"cannot write {output}: {exc.strerror or exc}",
                            hint="pass --out a file path in a folder you can write to") from None
    out.print(escape(f"wrote {output}"), highlight=False)


def leaderboard_cmd(
    fmt: str = typer.Option("md", "--format", "-f", help="md, latex, csv, html or json"),
    artist: list[str] = typer.Option([], "--artist", "-a", help="only these artists (repeatable)"),
    metric: list[str] = typer.Option([], "--metric", "-m", help="only these metrics, e.g. fid, kid (repeatable)"),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="write to this file instead of stdout"),
    home: Optional[Path] = Home,
) -> None:
    """All finished runs in the paper's layout: one block per metric, layer and extractor; rows methods, columns artists."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark.core.store import Store
    from reports import leaderboard

    leaderboard.check_format(fmt)
    path = paths.home(home) / "results.sqlite"
    if not path.is_file():  # no store yet: say how to make a first run
        sys.stdout.write(leaderboard.EMPTY)
        return
    store = Store.for_reading(path)  # a results file the user can only read is fine
    text = leaderboard.render(store, fmt, artists=artist or None, metrics=metric or None)
    if text.startswith(leaderboard.EMPTY.rstrip("\n")):  # nothing to write anywhere: say how to make a first run
        sys.stdout.write(text)
        return
    write_text(text, output)
    for line in leaderboard.interrupted_notes(leaderboard.runs_table(store)):  # beside the table, not in it
        err.print(escape(f"note: {line}"), highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("leaderboard")(leaderboard_cmd)
