"""Atomic file writes: the one way artshift replaces a file.

Why: a run killed mid-write (Ctrl-C, preemption, a full disk) must leave either the old file or
the new one, never half of one, and never a stray temporary file. The temporary name is unique
per process and thread, so two processes writing the same target never share it.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmark.core.errors import ArtshiftError


@contextmanager
def atomic_path(path: Path, *, suffix: str = ".tmp", fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    ``suffix`` lets writers that insist on an extension (numpy's ``.npz``, PIL's format by
    name) keep it. On any error the temporary file is removed and the error propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}{suffix}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        full = disk_full(exc)
        if not full:
            raise
        needed = tmp.stat().st_size if tmp.exists() else None
        raise DiskFullError(path, needed, getattr(exc, "strerror", None)) from exc
    finally:
        tmp.unlink(missing_ok=True)


FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write that failed for want of space: ENOSPC/EDQUOT, or torch's zip
    writer, which reports a short write as ``RuntimeError: [enforce fail ...] unexpected pos``."""
    if isinstance(exc, OSError):
        return exc.errno in FULL_ERRNOS
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("unexpected pos" in text or "PytorchStreamWriter failed" in text
                                              or "file write failed" in text)


def free_mb(folder: Path) -> float | None:
    for p in (Path(folder), *Path(folder).parents):
        try:
            return shutil.disk_usage(p).free / 2**20
        except OSError:
            continue
    return None


class DiskFullError(ArtshiftError):
    """A file could not be written because its file system is full; nothing was replaced."""

    def __init__(self, path: Path, needed: int | None = None, strerror: str | None = None):
        path = Path(path)
        free = free_mb(path.parent)
        size = f"; this step needed {needed / 2**20:.2f} MB" if needed else ""
        left = f", {free:.2f} MB free" if free is not None else ""
        self.path = path
        super().__init__(f"cannot write {path.name}: {strerror or 'No space left on device'} in {path.parent} "
                         f"(the folder's file system is full{size}{left}); the previous {path.name} is unchanged",
                         hint="free disk space there (or move ARTSHIFT_HOME / --home), then run the same command "
                              "again: a run resumes from its last good checkpoint")


def write_atomic(path: Path, data: bytes | str, *, fsync: bool = False) -> Path:
    """Replace ``path`` with ``data`` (text is written as UTF-8)."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)
