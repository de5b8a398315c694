"""The results store: one SQLite database (WAL) of runs and metric rows, with provenance.

Why SQLite: results from many runs, seeds and machines accumulate in one file that tables
and reports query without a server, and WAL lets a sweep write while a report reads. Every
metric row carries its sample counts (n_real, n_fake), the extractor identity and resize
mode, and the metric version: nothing is stored without n.
"""

from __future__ import annotations

import json
import platform
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark import paths

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,               -- 'run' (trained by artshift) or 'eval' (external folder)
    method TEXT NOT NULL,             -- method name, or the label of an external folder
    artist TEXT NOT NULL,
    profile TEXT NOT NULL,
    seed INTEGER,
    spec_json TEXT NOT NULL,
    run_dir TEXT,
    data_fingerprint TEXT,
    method_weights TEXT,              -- weights identity of a method's own pretrained network (Gatys' VGG)
    status TEXT NOT NULL,             -- running | done | failed
    error TEXT,
    timings_json TEXT,
    provenance_json TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    metric TEXT NOT NULL,             -- fid | kid
    dims INTEGER NOT NULL,
    display_name TEXT NOT NULL,       -- e.g. FID-2048[random-init]
    value REAL NOT NULL,
    std REAL,
    n_real INTEGER NOT NULL,
    n_fake INTEGER NOT NULL,
    extractor_id TEXT NOT NULL,
    resize_mode TEXT NOT NULL,
    metric_version TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, metric, dims, extractor_id, resize_mode)
);
"""


@dataclass(frozen=True)
class MetricRow:
    metric: str
    dims: int
    display_name: str
    value: float
    n_real: int
    n_fake: int
    extractor_id: str
    resize_mode: str
    metric_version: str
    std: float | None = None


def provenance() -> dict[str, Any]:
    """Package versions, git revision (if any), machine: what a reader needs to trust a number."""
    import numpy
    import torch

    import benchmark

    info: dict[str, Any] = {
        "artshift": benchmark.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "node": platform.node(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        repo = Path(__file__).resolve().parents[1]
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        if rev.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            info["git"] = rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return info


class Store:
    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else paths.home() / "results.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=30)
        con.row_factory = sqlite3.Row
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA foreign_keys=ON")
            with con:
                yield con
        finally:
            con.close()

    def start_run(self, run_id: str, *, kind: str, method: str, artist: str, profile: str, seed: int | None,
                  spec_json: str, run_dir: str | None, data_fingerprint: str) -> None:
        now = time.time()
        with self._connect() as con:
            con.execute(
                """INSERT INTO runs (run_id, kind, method, artist, profile, seed, spec_json, run_dir,
                                     data_fingerprint, status, provenance_json, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)
                   ON CONFLICT(run_id) DO UPDATE SET status='running', error=NULL, updated_at=excluded.updated_at,
                       provenance_json=excluded.provenance_json""",
                (run_id, kind, method, artist, profile, seed, spec_json, run_dir, data_fingerprint,
                 json.dumps(provenance()), now, now))

    def finish_run(self, run_id: str, status: str, timings: dict[str, float] | None = None,
                   error: str | None = None, method_weights: str | None = None) -> None:
        with self._connect() as con:
            con.execute("UPDATE runs SET status=?, error=?, timings_json=COALESCE(?, timings_json), "
                        "method_weights=COALESCE(?, method_weights), updated_at=? WHERE run_id=?",
                        (status, error, json.dumps(timings) if timings is not None else None, method_weights,
                         time.time(), run_id))

    def add_metrics(self, run_id: str, rows: list[MetricRow]) -> None:
        now = time.time()
        with self._connect() as con:
            con.executemany(
                """INSERT OR REPLACE INTO metrics (run_id, metric, dims, display_name, value, std, n_real, n_fake,
                       extractor_id, resize_mode, metric_version, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [(run_id, r.metric, r.dims, r.display_name, r.value, r.std, r.n_real, r.n_fake, r.extractor_id,
                  r.resize_mode, r.metric_version, now) for r in rows])

    def run(self, run_id: str) -> dict[str, Any] | None:
        with self._connect() as con:
            row = con.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return dict(row) if row else None

    def metrics_for(self, run_id: str) -> list[dict[str, Any]]:
        with self._connect() as con:
            rows = con.execute("SELECT * FROM metrics WHERE run_id=? ORDER BY metric, dims DESC", (run_id,)).fetchall()
        return [dict(r) for r in rows]

    def results(self) -> pd.DataFrame:
        """Every metric row of every finished run, joined with its run (one row per value)."""
        with self._connect() as con:
            df = pd.read_sql_query(
                """SELECT r.run_id, r.kind, r.method, r.artist, r.profile, r.seed, r.method_weights,
                          r.created_at AS run_created_at,
                          m.metric, m.dims, m.display_name, m.value, m.std, m.n_real, m.n_fake, m.extractor_id,
                          m.resize_mode, m.metric_version
                   FROM metrics m JOIN runs r ON r.run_id = m.run_id WHERE r.status = 'done'""", con)
        return df
