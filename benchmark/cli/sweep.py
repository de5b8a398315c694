"""``bench sweep plan|launch|status|collect``: methods x artists x seeds on a process pool, Ray or Slurm."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from benchmark.cli.common import DataRoot, Home, out
from benchmark.core.errors import ArtshiftError
from benchmark.core.profiles import parse_overrides

sweep_app = typer.Typer(no_args_is_help=True, help="Sweeps: plan, launch (local | ray | slurm), status, collect.")

Methods = typer.Option(..., "--methods", "-m", help="comma-separated registered methods, e.g. original,cyclegan")
Artists = typer.Option(..., "--artists", "-a", help="comma-separated artists, e.g. cezanne,vangogh")
Seeds = typer.Option("0", "--seeds", help="comma-separated seeds or ranges, e.g. 0,1,2 or 0-4")
Profile = typer.Option("smoke", "--profile", "-p", help="ci, smoke, cpu, quick or paper")
Set = typer.Option([], "--set", help="config override key=value (repeatable); each method takes the keys it has")


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in _names(text):
        low, sep, high = part.partition("-")
        try:
            seeds += list(range(int(low), int(high) + 1)) if sep and low else [int(part)]
        except ValueError:
            raise ArtshiftError(f"--seeds {text!r}: {part!r} is not a seed or a range",
                                hint="write seeds as 0,1,2 or 0-4") from None
    return seeds


def _plan(methods: str, artists: str, seeds: str, profile: str, set_: list[str], data_root: Optional[Path],
          home: Optional[Path]) -> list[Any]:
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark.analyses.sweep import plan

    return plan(_names(methods), _names(artists), parse_seeds(seeds), profile=profile,
                overrides=parse_overrides(set_), data_root=data_root, home=home)


def _status_table(states: list[Any]) -> Table:
    table = Table()
    for col in ("method", "artist", "seed", "run id", "state", "in store", "detail"):
        table.add_column(col, overflow="fold")
    for s in states:
        table.add_row(s.cell.method, s.cell.artist, str(s.cell.seed), s.cell.run_id, s.state,
                      "yes" if s.stored else "-", escape(s.detail.splitlines()[0][:200] if s.detail else ""))
    return table


def _counts(states: list[Any]) -> str:
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark.analyses.sweep import STATES

    return ", ".join(f"{n} {k}" for k in STATES if (n := sum(s.state == k for s in states)))


@sweep_app.command("plan")
def plan_cmd(methods: str = Methods, artists: str = Artists, seeds: str = Seeds, profile: str = Profile,
             set_: list[str] = Set, data_root: Optional[Path] = DataRoot, home: Optional[Path] = Home) -> None:
    """Every cell with its run id and what launch would do (skip finished cells, resume interrupted ones)."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark.analyses.sweep import status

    states = status(_plan(methods, artists, seeds, profile, set_, data_root, home))
    action = {"done": "skip (done)", "running": "skip (running)", "missing": "run"}
    table = Table()
    for col in ("method", "artist", "seed", "run id", "state", "launch would"):
        table.add_column(col)
    for s in states:
        table.add_row(s.cell.method, s.cell.artist, str(s.cell.seed), s.cell.run_id, s.state,
                      action.get(s.state, "resume"))
    out.print(table)
    out.print(f"{len(states)} cells: {_counts(states)}", highlight=False)


@sweep_app.command("launch")
def launch_cmd(methods: str = Methods, artists: str = Artists, seeds: str = Seeds, profile: str = Profile,
               set_: list[str] = Set, data_root: Optional[Path] = DataRoot, home: Optional[Path] = Home,
               executor: str = typer.Option("local", "--executor", "-e", help="local, ray or slurm"),
               workers: int = typer.Option(2, "--workers", help="cells at once (local pool, local Ray cluster)"),
               threads: int = typer.Option(1, "--threads", help="torch threads (CPUs) per cell"),
               device: str = typer.Option("auto", "--device", help="cpu, cuda, ...; auto: cuda when present"),
               gpus: int = typer.Option(-1, "--gpus", help="GPUs per cell (ray, slurm); -1: 1 when the device "
                                                           "is cuda, else 0"),
               address: Optional[str] = typer.Option(None, "--address", help="ray: join this cluster"),
               cluster: Optional[str] = typer.Option(None, "--cluster", help="slurm: force submitit's slurm, "
                                                                             "local or debug executor"),
               partition: Optional[str] = typer.Option(None, "--partition", help="slurm partition"),
               timeout_min: int = typer.Option(240, "--timeout-min", help="slurm: time limit per job; on "
                                                                          "timeout it is requeued and resumes"),
               wait: bool = typer.Option(True, "--wait/--no-wait", help="slurm: wait for the jobs, then collect")
               ) -> None:
    """Run every cell not yet done (interrupted ones resume), then import the results into the store."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark.analyses import sweep

    options = sweep.Options(workers=workers, threads=threads, device=device, gpus=gpus, address=address,
                            cluster=cluster, partition=partition, timeout_min=timeout_min, wait=wait)
    runner = sweep.make_executor(executor, options)  # unknown name or missing extra: before reading any data
    cells = _plan(methods, artists, seeds, profile, set_, data_root, home)

    def report(cell: Any, result: dict) -> None:
        line = f"{result['state']:<9} {cell.label} ({result['run_id']}, {result.get('seconds', 0):.1f}s)"
        if result.get("error"):
            line += f": {str(result['error']).splitlines()[0]}"
        out.print(escape(line), highlight=False)

    res = sweep.launch(cells, runner, on_result=report)
    for s in res.skipped:
        out.print(escape(f"skipped   {s.cell.label} ({s.cell.run_id}): {s.state}"), highlight=False)
    if res.collected is None:
        out.print("jobs submitted; `bench sweep status` follows them and `bench sweep collect` imports the results",
                  highlight=False)
        return
    _print_collected(res.collected)
    failed = [c for c, r in res.results if r["state"] == "failed"]
    if failed:
        raise ArtshiftError(f"{len(failed)} of {len(cells)} cells failed, e.g. {failed[0].label}",
                            hint="`bench sweep status` shows each error; launch again to retry them")


def _print_collected(c: Any) -> None:
    out.print(f"collect: {len(c.imported)} imported, {len(c.unchanged)} already in the store, "
              f"{len(c.not_done)} not done", highlight=False)


@sweep_app.command("status")
def status_cmd(methods: str = Methods, artists: str = Artists, seeds: str = Seeds, profile: str = Profile,
               set_: list[str] = Set, data_root: Optional[Path] = DataRoot, home: Optional[Path] = Home) -> None:
    """done / running / failed / interrupted / missing per cell, read from each run folder."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark.analyses.sweep import status

    states = status(_plan(methods, artists, seeds, profile, set_, data_root, home))
    out.print(_status_table(states))
    out.print(f"{len(states)} cells: {_counts(states)}", highlight=False)


@sweep_app.command("collect")
def collect_cmd(methods: str = Methods, artists: str = Artists, seeds: str = Seeds, profile: str = Profile,
                set_: list[str] = Set, data_root: Optional[Path] = DataRoot, home: Optional[Path] = Home) -> None:
    """Import finished (and failed) cells from their run folders into the store; safe to repeat."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark.analyses.sweep import collect

    _print_collected(collect(_plan(methods, artists, seeds, profile, set_, data_root, home)))


def register(app: typer.Typer) -> None:
    app.add_typer(sweep_app, name="sweep")
