"""``bench grid``: the paper's qualitative figure, paintings beside each method's translation (see ``reports.grids``).

Registered in ``benchmark.core.registry.commands`` as ``benchmark.cli.grid:register``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from benchmark.cli.common import DataRoot, Home, out
from benchmark.core import paths
from benchmark.core.errors import ArtshiftError


def grid_cmd(
    artist: str = typer.Option(..., "--artist", "-a"),
    runs: Optional[str] = typer.Option(None, "--runs", help="run ids, comma-separated (default: the newest finished "
                                                            "run of every method at --profile)"),
    profile: str = typer.Option("smoke", "--profile", "-p", help="without --runs: runs of this profile"),
    n: int = typer.Option(6, "--n", help="how many test paintings (rows)"),
    seed: int = typer.Option(0, "--seed", help="seeds which test paintings are shown"),
    output: Path = typer.Option(Path("grids"), "--out", "-o", help="folder for grid_<artist>.png and .pdf"),
    data_root: Optional[Path] = DataRoot,
    home: Optional[Path] = Home,
) -> None:
    """Rows of test paintings: the painting, then each method's translation, titled `method [profile]`."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark import data
    from benchmark.core.store import Store
    from reports import grids

    home_dir = paths.home(home)
    db = home_dir / "results.sqlite"
    if not db.is_file():
        raise ArtshiftError(f"no runs yet in {home_dir}",
                            hint=f"run one first, e.g. `bench run --method cyclegan --artist {artist} "
                                 f"--profile {profile}`")
    store = Store.for_reading(db)
    domain = data.ensure_domain(artist, paths.data_root(data_root), home_dir, allow_download=False, progress=False)
    run_ids = [r.strip() for r in (runs or "").split(",") if r.strip()]
    grid = grids.make_grid(store, domain, output, run_ids=run_ids, profile=profile, n=n, seed=seed)
    out.print(escape(f"wrote {grid.png} and {grid.pdf}: {len(grid.paintings)} paintings x "
                     f"{', '.join(grid.titles)}"), highlight=False)


def register(app: typer.Typer) -> None:
    app.command("grid")(grid_cmd)
