"""``bench reproduce tomei2018``: the paper's missing cells run, then its tables beside ours (see ``reports.paper``).

Registered in ``benchmark.core.registry.commands`` as ``benchmark.cli.reproduce:register``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from benchmark.cli.common import DataRoot, Home, out
from benchmark.cli.leaderboard import write_text


def reproduce_cmd(
    paper: str = typer.Argument(..., help="the published tables to reproduce (known: tomei2018)"),
    profile: str = typer.Option("paper", "--profile", "-p", help="ci, smoke, cpu, quick or paper"),
    artist: list[str] = typer.Option([], "--artist", "-a", help="only these of the paper's artists (repeatable)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list the runs that are missing, run nothing"),
    no_run: bool = typer.Option(False, "--no-run", help="report from the store only: run and measure nothing"),
    data_root: Optional[Path] = DataRoot,
    home: Optional[Path] = Home,
    device: str = typer.Option("cpu", "--device"),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="also write the report to this file"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    study: list[Path] = typer.Option([], "--study", help="a `bench study` folder whose tally.json goes beside "
                                                         "the paper's Tables 2-3 (repeatable)"),
) -> None:
    """Run the paper's missing cells (resumable), then print paper | artshift | delta, Kendall tau and a verdict."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from reports import paper as paper_mod

    ref = paper_mod.reference(paper)
    artists = paper_mod.check_artists(ref, artist)
    plan = paper_mod.plan(ref, profile, artists, home=home)
    if dry_run:
        sys.stdout.write(paper_mod.describe_plan(plan, profile))
        return
    if not no_run:
        for step in paper_mod.execute_plan(plan, profile, data_root=data_root, home=home, device=device,
                                           progress=not quiet):
            out.print(escape(step), highlight=False)
    text = paper_mod.report(ref, profile, artists, home=home, data_root=data_root, device=device, no_run=no_run)
    if study:
        text += paper_mod.study_report(ref, study)
    sys.stdout.write(text)
    if output is not None:
        write_text(text, output)


def register(app: typer.Typer) -> None:
    app.command("reproduce")(reproduce_cmd)
