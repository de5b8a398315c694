"""``bench ci``: every method on the three artists at the ``ci`` profile, then every report.

Why a command and not a shell script: CI, a laptop and a GitHub Actions runner must produce the
same folder the same way, resumably (a finished cell is reused, a failed one retried), with one
clock per stage so a slow stage is visible in the CI log. It is a pipeline check: the heading
of every output says so, and the ``ci`` profile's numbers are never results.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark import data
from benchmark.analyses import sweep
from benchmark.core import registry
from benchmark.core.errors import ArtshiftError
from benchmark.core.store import Store
from reports import grids, html
from reports import leaderboard as L

HEADING = "ci profile: a pipeline check, not results"
ARTISTS = ("monet", "cezanne", "vangogh")
PROFILE = "ci"


@dataclass
class CiResult:
    out_dir: Path
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    cells: dict[tuple[str, str], str] = field(default_factory=dict)  # (method, artist) -> run id or "failed: ..."
    failed: list[str] = field(default_factory=list)
    markdown: str = ""
    files: list[Path] = field(default_factory=list)


def run_ci(out_dir: Path, *, home: Path, data_root: Path, methods: list[str] | None = None,
           artists: tuple[str, ...] | list[str] = ARTISTS, seed: int = 0, workers: int = 2,
           log: Callable[[str], None] = lambda m: None) -> CiResult:
    """Run the missing cells, then write leaderboard.md/.html, one grid per artist and the report.

    Cells run as a local sweep (``benchmark.analyses.sweep``): ``workers`` processes with one torch thread
    each, which on a 2-core machine beats one process with two threads several times over
    (docs/benchmarks.md, sweep overhead); workers write their run folders and one collect imports
    them. A cell that fails is recorded (its leaderboard cell reads ``- (1 failed)``) and the others go
    on; the caller decides the exit status from ``result.failed``.
    """
    names = list(methods) if methods else registry.methods.names()
    for m in names:
        registry.methods.entry(m)  # unknown names fail before anything runs
    res = CiResult(Path(out_dir))

    def stage(name: str, started: float) -> None:
        res.stages[name] = time.perf_counter() - started
        log(f"stage {name}: {res.stages[name]:.1f}s")

    t = time.perf_counter()
    cells = sweep.plan(names, list(artists), [seed], profile=PROFILE, data_root=data_root, home=home)
    cells.sort(key=lambda c: (list(artists).index(c.artist), names.index(c.method)))  # ours' bank once per pool
    pool = sweep.PoolExecutor(sweep.Options(workers=workers, threads=1, device="cpu"))

    def on_result(cell: Any, r: dict[str, Any]) -> None:
        res.cells[cell.method, cell.artist] = r["run_id"] if r["state"] != "failed" else f"failed: {r.get('error')}"
        if r["state"] == "failed":
            res.failed.append(f"{cell.method} / {cell.artist}: {r.get('error')}")
        state = "FAILED" if r["state"] == "failed" else "reused" if r["state"] == "skipped" else r["state"]
        log(f"  {cell.method} / {cell.artist}: run {r['run_id']} {state} ({r.get('seconds', 0.0):.1f}s)"
            + (f": {r.get('error')}" if r["state"] == "failed" else ""))

    # the first cell alone, with every thread: it builds the caches every other cell reads (the
    # random-init extractor's calibration, the photo statistics), which workers would otherwise
    # each compute at once
    first = sweep.PoolExecutor(sweep.Options(workers=1, threads=max(1, workers), device="cpu"))
    for part, executor in ((cells[:1], first), (cells, pool)):
        launched = sweep.launch(part, executor, on_result)
        for s in launched.skipped:
            if (s.cell.method, s.cell.artist) not in res.cells:
                res.cells[s.cell.method, s.cell.artist] = s.cell.run_id
                log(f"  {s.cell.method} / {s.cell.artist}: run {s.cell.run_id} reused")
    stage("runs", t)

    store = Store.for_reading(home / "results.sqlite")
    res.out_dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    df, runs = L.load(store)
    keep = runs[runs.run_id.isin({c.run_id for c in cells})]  # exactly this code's cells, no older runs
    df = df[df.run_id.isin(set(keep.run_id))]
    board = L.build(df, keep, artists=list(artists))
    res.markdown = f"# {HEADING}\n\n" + L.to_markdown(board)
    for name, text in (("leaderboard.md", res.markdown), ("leaderboard.html", L.to_html(board)),
                       ("leaderboard.json", L.to_json(board))):
        path = res.out_dir / name
        path.write_text(text, encoding="utf-8")
        res.files.append(path)
    stage("leaderboard", t)

    t = time.perf_counter()

    def domain(artist: str) -> Any:
        return data.ensure_domain(artist, data_root, home, allow_download=False, progress=False)

    for artist in artists:
        try:
            grid = grids.make_grid(store, domain(artist), res.out_dir / "grids", profile=PROFILE, seed=seed)
            res.files += [grid.png, grid.pdf]
        except ArtshiftError as exc:
            res.failed.append(f"grid {artist}: {exc}")
            log(f"  grid {artist}: FAILED ({exc})")
    stage("grids", t)

    t = time.perf_counter()
    report = html.build_report(store, res.out_dir / "report", home=home, domain_fn=domain, artists=list(artists),
                               profiles=[PROFILE], heading=HEADING, grid_seed=seed)
    res.files.append(report.index)
    stage("report", t)
    (res.out_dir / "timings.json").write_text(json.dumps({"stages_s": res.stages, "cells": {
        f"{m}/{a}": v for (m, a), v in res.cells.items()}, "failed": res.failed}, indent=2) + "\n", encoding="utf-8")
    return res
