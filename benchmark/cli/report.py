"""``bench report`` (static HTML pages) and ``bench ci`` (the CI leaderboard; see ``reports.ci``).

Registered in ``benchmark.core.registry.commands`` as ``benchmark.cli.report:register``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from benchmark.cli.common import DataRoot, Home, err, out
from benchmark.core import paths
from benchmark.core.errors import ArtshiftError
from benchmark.core.profiles import check_profile


def _store(home_dir: Path):
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark.core.store import Store
    from reports import leaderboard as L

    db = home_dir / "results.sqlite"
    if not db.is_file():
        raise ArtshiftError(f"no results store in {home_dir}: nothing to report", hint=f"make a first run: "
                                                                                     f"`{L.FIRST_RUN}`")
    return Store.for_reading(db)


def report_cmd(
    output: Path = typer.Option(Path("report"), "--out", "-o", help="folder for index.html, <artist>.html, assets/"),
    artist: list[str] = typer.Option([], "--artist", "-a", help="only these artists (repeatable; default: every "
                                                                "artist with runs)"),
    profile: list[str] = typer.Option([], "--profile", "-p", help="only runs of these profiles (repeatable)"),
    n: int = typer.Option(6, "--n", help="paintings per grid"),
    seed: int = typer.Option(0, "--seed", help="seeds which paintings the grids show"),
    data_root: Optional[Path] = DataRoot,
    home: Optional[Path] = Home,
) -> None:
    """One static page per artist (leaderboard, grid, shift figures, downstream, provenance) plus an index."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark import data
    from reports import html

    for p in profile:
        check_profile(p)
    home_dir, root = paths.home(home), paths.data_root(data_root)
    store = _store(home_dir)
    report = html.build_report(
        store, output, home=home_dir, artists=artist or None, profiles=profile or None, grid_n=n, grid_seed=seed,
        domain_fn=lambda a: data.ensure_domain(a, root, home_dir, allow_download=False, progress=False))
    for page in report.pages.values():
        out.print(escape(f"wrote {page.path}: {page.leaderboard_rows} leaderboard rows, {len(page.images)} figures"),
                  highlight=False)
        for note in page.notes:
            err.print(escape(f"  note: {note}"), highlight=False)
    out.print(escape(f"open {report.index}"), highlight=False)


def ci_cmd(
    output: Path = typer.Option(Path("reports/ci"), "--out", "-o", help="folder for the leaderboard, grids, report"),
    methods: str = typer.Option("", "--methods", help="comma-separated (default: every registered method)"),
    artists: str = typer.Option("monet,cezanne,vangogh", "--artists", help="comma-separated"),
    workers: int = typer.Option(2, "--workers", help="cells at once, one torch thread each"),
    data_root: Optional[Path] = DataRoot,
    home: Optional[Path] = Home,
) -> None:
    """Every method x monet, cezanne, vangogh at the ci profile (resumable), then leaderboard, grids and report."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from reports.ci import HEADING, run_ci

    names = [m.strip() for m in methods.split(",") if m.strip()]
    arts = [a.strip() for a in artists.split(",") if a.strip()]
    if not arts:
        raise ArtshiftError("--artists is empty", hint="e.g. --artists monet,cezanne,vangogh")
    out.print(escape(f"bench ci: {HEADING}"), highlight=False)
    res = run_ci(output, home=paths.home(home), data_root=paths.data_root(data_root), methods=names or None,
                 artists=arts, workers=workers, log=lambda m: out.print(escape(m), highlight=False))
    out.print(escape("stage durations: " + ", ".join(f"{k} {v:.1f}s" for k, v in res.stages.items())
                     + f"; total {sum(res.stages.values()):.1f}s"), highlight=False)
    out.print(escape(f"wrote {res.out_dir}/ (leaderboard.md, leaderboard.html, grids/, report/index.html)"),
              highlight=False)
    sys.stdout.flush()
    sys.stdout.write("\n" + res.markdown)
    if res.failed:
        raise ArtshiftError(f"{len(res.failed)} ci cell(s) failed: " + "; ".join(res.failed),
                            hint="each failed run's log.txt is in its run folder; `bench ci` again resumes")


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
    app.command("ci")(ci_cmd)
