"""``bench leaderboard``: every finished run in the paper's layout (see ``reports.leaderboard``).

Registered in ``benchmark.registry.commands`` as ``reports.cli:register``, so the core package
never imports ``reports``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from benchmark.cli.common import Fmt, Home, out


def leaderboard_cmd(
    fmt: Fmt = typer.Option(Fmt.md, "--format", "-f"),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="write to this file instead of stdout"),
    home: Optional[Path] = Home,
) -> None:
    """All finished runs in the paper's layout: one block per Inception layer, rows methods, columns artists."""
    from benchmark import paths
    from benchmark.store import Store
    from reports import leaderboard

    df = Store(paths.home(home) / "results.sqlite").results()
    text = leaderboard.to_markdown(leaderboard.build(df)) if fmt is Fmt.md else leaderboard.to_csv(df)
    if output:
        output.write_text(text)
        out.print(escape(f"wrote {output}"))
    else:
        sys.stdout.write(text)


def register(app: typer.Typer) -> None:
    app.command("leaderboard")(leaderboard_cmd)
