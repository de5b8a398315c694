"""One exception type for every error a user can cause.

The CLI prints these without a traceback and exits non-zero; everything else is a bug and
keeps its traceback. Messages say what went wrong, where (file, folder, key) and what to do.
"""

from __future__ import annotations


class ArtshiftError(Exception):
    """A problem the user can fix: bad input, missing data or weights, unknown names."""

    def __init__(self, message: str, *, hint: str | None = None):
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  -> {hint}")


def did_you_mean(name: str, choices, *, n: int = 1, cutoff: float = 0.6, otherwise: str | None = None) -> str | None:
    """The hint for an unknown name: ``did you mean 'x'?`` (or ``'x' or 'y'``), else ``otherwise``."""
    import difflib

    close = difflib.get_close_matches(str(name), sorted(map(str, choices)), n=n, cutoff=cutoff)
    if not close:
        return otherwise
    return f"did you mean {' or '.join(repr(c) for c in close)}?"
