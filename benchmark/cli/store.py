"""``bench store rebuild``: the results store is an index of the run folders; rebuild it from them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from benchmark.cli.common import Home, out
from benchmark.core import paths
from benchmark.core.store import rebuild

store_app = typer.Typer(no_args_is_help=True, help="The results store (results.sqlite): rebuild it from the run folders.")


@store_app.command("rebuild")
def store_rebuild(home: Optional[Path] = Home) -> None:
    """A new results.sqlite from every run folder (spec.json, metrics.json, status.json, DONE); the old
    file is kept beside it as results.sqlite.damaged-<time>."""

    res = rebuild(paths.home(home))
    counts = ", ".join(f"{n} {s}" for s, n in sorted(res["counts"].items())) or "no runs"
    kept = f"; the old file is kept as {res['aside']}" if res["aside"] else ""
    out.print(escape(f"rebuilt {res['path']} from the run folders: {counts}{kept}"), highlight=False)
    for line in res["skipped"]:
        out.print(escape(f"  skipped {line}"), highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")
