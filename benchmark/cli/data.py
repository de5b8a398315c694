"""``bench data list|fetch|verify``: dataset manifests, verified downloads, local checks."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from benchmark.cli.common import DataRoot, Home, out
from benchmark.core import paths

data_app = typer.Typer(no_args_is_help=True, help="Datasets: list manifests, fetch (verified), verify.")


@data_app.command("list")
def data_list() -> None:
    """Known datasets (one manifest each) and whether they are present locally."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark import data

    root = paths.data_root()
    home = paths.home()
    table = Table()
    for col in ("name", "artist", "splits (expected)", "local"):
        table.add_column(col)
    for name, m in data.load_manifests(home).items():
        present = (root / name).is_dir()
        counts = ", ".join(f"{k} {v}" for k, v in m.counts.items())
        table.add_row(name, m.artist, counts, escape(str(root / name)) if present else "-")
    out.print(table)


@data_app.command("fetch")
def data_fetch(name: str, data_root: Optional[Path] = DataRoot, home: Optional[Path] = Home,
               force: bool = typer.Option(False, "--force"),
               archive: Optional[Path] = typer.Option(None, "--archive",
                                                      help="a zip you downloaded elsewhere (offline machines)")) -> None:
    """Download NAME (checksum checked or pinned on first download), extract safely, verify counts."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark import data

    path = data.fetch_dataset(name, paths.data_root(data_root), paths.home(home), force=force, archive=archive)
    out.print(escape(f"{name} ready at {path}"))


@data_app.command("verify")
def data_verify(name: str, data_root: Optional[Path] = DataRoot, home: Optional[Path] = Home) -> None:
    """Check a local dataset against its manifest: counts per split, readable images, pinned hash."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark import data

    report = data.verify_dataset(name, paths.data_root(data_root), paths.home(home), progress=True)
    for line in report.lines():
        out.print(escape(line), highlight=False)
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
