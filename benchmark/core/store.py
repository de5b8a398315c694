"""The results store: one SQLite database (WAL) of runs and metric rows, with provenance.

Why SQLite: results from many runs, seeds and machines accumulate in one file that tables
and reports query without a server, and WAL lets a sweep write while a report reads. Every
metric row carries its sample counts (n_real, n_fake), the layer id, the extractor identity
and resize mode, the metric version and direction: nothing is stored without n.

The schema version lives in ``PRAGMA user_version``; a store written by older code is
migrated in place when it is opened (one transaction, so a failed migration changes nothing).
Version 1 (no user_version) keyed rows on ``dims INTEGER`` of the FID Inception; version 2
keys them on a text layer id (``inception:2048``, ``vgg19:relu4_2``), adds the metric's
direction and an interval (low, high) beside std, and records each run's spec version.
"""

from __future__ import annotations

import json
import logging
import math
import os
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

import benchmark
from benchmark.core import paths
from benchmark.core.atomic import DiskFullError
from benchmark.core.errors import ArtshiftError
from benchmark.core.spec import RunSpec, canonical

log = logging.getLogger("artshift.store")

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,               -- 'run' (trained by artshift) or 'eval' (external folder)
    method TEXT NOT NULL,             -- method name, or the label of an external folder
    artist TEXT NOT NULL,
    profile TEXT NOT NULL,
    seed INTEGER,
    spec_json TEXT NOT NULL,
    spec_version INTEGER NOT NULL DEFAULT 1,  -- run identity scheme (benchmark.spec); v1 runs are never reused
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
    metric TEXT NOT NULL,             -- a registered metric (fid, kid, ...)
    layer TEXT NOT NULL,              -- layer id, e.g. inception:2048, vgg19:relu4_2
    display_name TEXT NOT NULL,       -- e.g. FID-2048[random-init]
    value REAL NOT NULL,
    std REAL,                         -- spread of the value (e.g. over KID subsets), when it has one
    low REAL,                         -- interval around the value (e.g. a bootstrap 95% interval), when it has one
    high REAL,
    direction TEXT NOT NULL CHECK (direction IN ('lower', 'higher')),  -- which way is better
    n_real INTEGER NOT NULL,
    n_fake INTEGER NOT NULL,
    extractor_id TEXT NOT NULL,
    resize_mode TEXT NOT NULL,
    metric_version TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, metric, layer, extractor_id, resize_mode)
);
"""

# v1 -> v2: FID and KID (the only v1 metrics) are lower-is-better; v1 dims are FID Inception dims
_MIGRATE_1_TO_2 = """
ALTER TABLE runs ADD COLUMN spec_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE metrics RENAME TO metrics_v1;
{metrics}
INSERT INTO metrics (run_id, metric, layer, display_name, value, std, low, high, direction, n_real, n_fake,
                     extractor_id, resize_mode, metric_version, created_at)
    SELECT run_id, metric, 'inception:' || dims, display_name, value, std, NULL, NULL, 'lower', n_real, n_fake,
           extractor_id, resize_mode, metric_version, created_at FROM metrics_v1;
DROP TABLE metrics_v1;
"""


def _statements(script: str) -> list[str]:
    """Split a SQL script into statements (executescript would commit our open transaction)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out


@dataclass(frozen=True)
class MetricRow:
    metric: str
    layer: str
    display_name: str
    value: float
    n_real: int
    n_fake: int
    extractor_id: str
    resize_mode: str
    metric_version: str
    std: float | None = None
    direction: str = "lower"
    low: float | None = None
    high: float | None = None


def check_rows(run_id: str, rows: list[MetricRow], *, done: bool = False) -> None:
    """Refuse rows that must never be recorded: none at all for a finished run, or a non-finite value."""
    if done and not rows:
        raise ArtshiftError(f"run {run_id} produced no metric rows; not recording it as done")
    bad = [r for r in rows if not math.isfinite(r.value)]
    if bad:  # SQLite would store NaN as NULL and refuse it with an opaque NOT NULL error
        raise ArtshiftError(f"run {run_id}: {bad[0].display_name} is {bad[0].value} "
                            f"({len(bad)} non-finite value(s)); nothing was recorded",
                            hint="the translations or features contain NaN/inf; check the run's images")


def provenance() -> dict[str, Any]:
    """Package versions, git revision (if any), machine: what a reader needs to trust a number."""
    import numpy
    import torch

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
        repo = Path(__file__).resolve().parents[2]
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        if rev.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            info["git"] = rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return info


DAMAGED_MESSAGES = ("file is not a database", "database disk image is malformed", "malformed database schema",
                    "database corrupt")


class StoreDamaged(ArtshiftError):
    """The results file cannot be read as SQLite: everything it indexes is in the run folders."""


def store_error(path: Path, exc: BaseException) -> ArtshiftError | None:
    """The one-line error for a SQLite failure of the store at ``path``, or None for a bug."""
    import errno


    text = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and (any(m in text for m in DAMAGED_MESSAGES)
                                                  or type(exc) is sqlite3.DatabaseError):
        return StoreDamaged(f"results store {path} is damaged ({text}); the run folders still hold every result",
                            hint="rebuild it from the run folders with `bench store rebuild` (the damaged file is "
                                 "kept beside it)")
    if isinstance(exc, sqlite3.OperationalError) and "disk is full" in text:
        return DiskFullError(path, None, os.strerror(errno.ENOSPC))
    if isinstance(exc, sqlite3.OperationalError) and ("readonly" in text or "read-only" in text
                                                      or "unable to open database file" in text):
        return ArtshiftError(f"cannot write the results store {path}: {text} (its folder is read-only)",
                             hint="`bench leaderboard`, `bench report` and `bench eval --run` of measured runs work "
                                  "on a read-only home; to record anything pass --home (or $ARTSHIFT_HOME) a folder "
                                  "you can write")
    return None


class Store:
    def __init__(self, path: Path | None = None, *, read_only: bool = False):
        """``read_only``: for reports and tables, which must work on a results file the user can
        only read (a shared or archived store); nothing is created, migrated or written."""
        self.path = Path(path) if path else paths.home() / "results.sqlite"
        self.read_only = read_only
        if read_only:
            self._check_readable()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._open_schema()
        except sqlite3.Error as exc:
            mapped = store_error(self.path, exc)
            if mapped is None:
                raise
            raise mapped from None

    @classmethod
    def open(cls, path: Path) -> Store:
        """For commands that write only when they must (``bench eval --run``): the store to write,
        or, when its folder cannot be written, the store to read."""
        path = Path(path)
        writable = os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))
        if not writable and path.is_file():
            return cls(path, read_only=True)
        return cls(path)

    @classmethod
    def for_reading(cls, path: Path) -> Store:
        """Open for tables and reports: read-only, except that an old schema is migrated once when
        the file can be written (a read-only old store gets an error saying so)."""
        path = Path(path)
        try:
            return cls(path, read_only=True)
        except ArtshiftError:
            if path.is_file() and os.access(path, os.W_OK) and os.access(path.parent, os.W_OK):
                cls(path)  # migrate
                return cls(path, read_only=True)
            raise

    def _check_readable(self) -> None:
        if not self.path.is_file():
            raise ArtshiftError(f"no results store at {self.path}",
                                hint="run `bench run --method original --artist monet --profile smoke` first, "
                                     "or pass --home")
        with self._connect() as con:
            version = con.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise ArtshiftError(f"results store {self.path} has schema version {version}, not {SCHEMA_VERSION}",
                                hint="open it once with write access (e.g. `bench run ...`) to migrate it")

    def _open_schema(self) -> None:
        """Create a new store, or migrate an older one to ``SCHEMA_VERSION`` (one transaction)."""
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("BEGIN IMMEDIATE")  # two processes opening an old store: one migrates, one waits
            try:
                version = con.execute("PRAGMA user_version").fetchone()[0]
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if version > SCHEMA_VERSION:
                    raise ArtshiftError(f"results store {self.path} has schema version {version}; this artshift "
                                        f"reads up to {SCHEMA_VERSION}", hint="upgrade artshift, or pass another --home")
                if version < SCHEMA_VERSION and "metrics" in tables:
                    self._migrate(con, version)
                elif version < SCHEMA_VERSION:
                    for stmt in _statements(SCHEMA):
                        con.execute(stmt)
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                con.execute("COMMIT")
            except BaseException:  # a SIGTERM (KeyboardInterrupt) may land before BEGIN took effect or after COMMIT
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        finally:
            con.close()

    def _migrate(self, con: sqlite3.Connection, version: int) -> None:
        columns = {r[1] for r in con.execute("PRAGMA table_info(metrics)")}
        if version == 0 and "dims" in columns:
            log.info("migrating results store %s from schema 1 to %d", self.path, SCHEMA_VERSION)
            metrics_ddl = SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS metrics"):].strip()
            for stmt in _statements(_MIGRATE_1_TO_2.format(metrics=metrics_ddl)):
                con.execute(stmt)
            return
        raise ArtshiftError(f"results store {self.path} has an unknown layout (user_version {version}, "
                            f"metrics columns {sorted(columns)})", hint="move it away; a new store is then created")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            # immutable when we cannot write beside it: WAL readers otherwise need to create -shm
            writable = os.access(self.path.parent, os.W_OK) and os.access(self.path, os.W_OK)
            uri = f"{self.path.resolve().as_uri()}?{'mode=ro' if writable else 'immutable=1'}"
            con = sqlite3.connect(uri, uri=True, timeout=30)
        else:
            con = sqlite3.connect(self.path, timeout=30)
        con.row_factory = sqlite3.Row
        try:
            if not self.read_only:
                con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA foreign_keys=ON")
            with con:
                yield con
        except sqlite3.Error as exc:  # damaged, full or read-only: one line naming the file
            mapped = store_error(self.path, exc)
            if mapped is None:
                raise
            raise mapped from None
        finally:
            con.close()

    def start_run(self, run_id: str, *, kind: str, method: str, artist: str, profile: str, seed: int | None,
                  spec_json: str, run_dir: str | None, data_fingerprint: str, spec_version: int = 2) -> None:
        now = time.time()
        with self._connect() as con:
            con.execute(
                """INSERT INTO runs (run_id, kind, method, artist, profile, seed, spec_json, spec_version, run_dir,
                                     data_fingerprint, status, provenance_json, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)
                   ON CONFLICT(run_id) DO UPDATE SET status='running', error=NULL, updated_at=excluded.updated_at,
                       provenance_json=excluded.provenance_json""",
                (run_id, kind, method, artist, profile, seed, spec_json, spec_version, run_dir, data_fingerprint,
                 json.dumps(provenance()), now, now))

    def finish_run(self, run_id: str, status: str, timings: dict[str, float] | None = None,
                   error: str | None = None, method_weights: str | None = None,
                   rows: list[MetricRow] | None = None) -> None:
        """Set a run's final status; ``rows`` are written in the same transaction, so a run is
        never 'done' without its metric rows (nor are rows left behind for a run that failed)."""
        if status == "done" and rows is not None:
            check_rows(run_id, rows, done=True)
        with self._connect() as con:
            if rows:
                self._insert_metrics(con, run_id, rows)
            con.execute("UPDATE runs SET status=?, error=?, timings_json=COALESCE(?, timings_json), "
                        "method_weights=COALESCE(?, method_weights), updated_at=? WHERE run_id=?",
                        (status, error, json.dumps(timings) if timings is not None else None, method_weights,
                         time.time(), run_id))

    def delete_metrics(self, run_id: str) -> None:
        """Drop every metric row of a run (``--force`` re-runs it from scratch)."""
        with self._connect() as con:
            con.execute("DELETE FROM metrics WHERE run_id=?", (run_id,))

    def delete_runs_under(self, prefix: str) -> list[str]:
        """Drop every run row whose id starts with ``prefix`` (exactly: no LIKE wildcards), with its
        metric rows; returns their ids."""
        under = "substr(run_id, 1, ?) = ?"
        with self._connect() as con:
            ids = [r[0] for r in con.execute(f"SELECT run_id FROM runs WHERE {under}", (len(prefix), prefix))]
            con.execute(f"DELETE FROM metrics WHERE {under}", (len(prefix), prefix))
            con.execute(f"DELETE FROM runs WHERE {under}", (len(prefix), prefix))
        return ids

    def add_metrics(self, run_id: str, rows: list[MetricRow]) -> None:
        with self._connect() as con:
            self._insert_metrics(con, run_id, rows)

    @staticmethod
    def _insert_metrics(con: sqlite3.Connection, run_id: str, rows: list[MetricRow]) -> None:
        check_rows(run_id, rows)
        now = time.time()
        con.executemany(
            """INSERT OR REPLACE INTO metrics (run_id, metric, layer, display_name, value, std, low, high,
                   direction, n_real, n_fake, extractor_id, resize_mode, metric_version, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [(run_id, r.metric, r.layer, r.display_name, r.value, r.std, r.low, r.high, r.direction, r.n_real,
              r.n_fake, r.extractor_id, r.resize_mode, r.metric_version, now) for r in rows])

    def import_run(self, run_id: str, *, method: str, artist: str, profile: str, seed: int, spec_json: str,
                   spec_version: int, run_dir: str, data_fingerprint: str, status: str, timings: dict[str, float],
                   error: str | None, method_weights: str | None, provenance: dict[str, Any] | None,
                   rows: list[MetricRow]) -> None:
        """Record a run that a sweep worker finished in its own folder: the run and exactly its rows
        (older rows of the run are replaced) in one transaction, so importing twice changes nothing."""
        if status == "done":
            check_rows(run_id, rows, done=True)
        now = time.time()
        with self._connect() as con:
            con.execute(
                """INSERT INTO runs (run_id, kind, method, artist, profile, seed, spec_json, spec_version, run_dir,
                                     data_fingerprint, method_weights, status, error, timings_json, provenance_json,
                                     created_at, updated_at)
                   VALUES (?, 'run', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(run_id) DO UPDATE SET run_dir=excluded.run_dir, method_weights=excluded.method_weights,
                       status=excluded.status, error=excluded.error, timings_json=excluded.timings_json,
                       provenance_json=excluded.provenance_json, updated_at=excluded.updated_at""",
                (run_id, method, artist, profile, seed, spec_json, spec_version, run_dir, data_fingerprint,
                 method_weights, status, error, json.dumps(timings), json.dumps(provenance or {}), now, now))
            con.execute("DELETE FROM metrics WHERE run_id=?", (run_id,))
            if rows:
                self._insert_metrics(con, run_id, rows)

    def restore_evaluation(self, run: dict[str, Any], metrics: list[dict[str, Any]]) -> None:
        """Put back a run row and its metric rows exactly as recorded (``rebuild``)."""
        run_cols = [r[1] for r in self._columns("runs")]
        metric_cols = [r[1] for r in self._columns("metrics")]
        with self._connect() as con:
            cols = [c for c in run_cols if c in run]
            con.execute(f"INSERT OR REPLACE INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [run[c] for c in cols])
            for m in metrics:
                cols = [c for c in metric_cols if c in m]
                con.execute(f"INSERT OR REPLACE INTO metrics ({', '.join(cols)}) VALUES "
                            f"({', '.join('?' * len(cols))})", [m[c] for c in cols])

    def _columns(self, table: str) -> list[Any]:
        with self._connect() as con:
            return list(con.execute(f"PRAGMA table_info({table})"))

    def run(self, run_id: str) -> dict[str, Any] | None:
        with self._connect() as con:
            row = con.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return dict(row) if row else None

    def find_runs(self, *, method: str, artist: str, profile: str, seed: int | None,
                  status: str | None = None) -> list[dict[str, Any]]:
        """Trained runs of one (method, artist, profile, seed), newest first."""
        query = "SELECT * FROM runs WHERE kind='run' AND method=? AND artist=? AND profile=? AND seed IS ?"
        args: list[Any] = [method, artist, profile, seed]
        if status:
            query += " AND status=?"
            args.append(status)
        with self._connect() as con:
            rows = con.execute(query + " ORDER BY spec_version DESC, updated_at DESC", args).fetchall()
        return [dict(r) for r in rows]

    def metrics_for(self, run_id: str) -> list[dict[str, Any]]:
        with self._connect() as con:
            # widest layer first within a metric and extractor (FID-2048, -768, -192, -64, as before)
            rows = con.execute("SELECT * FROM metrics WHERE run_id=? "
                               "ORDER BY metric, extractor_id, length(layer) DESC, layer DESC", (run_id,)).fetchall()
        return [dict(r) for r in rows]

    def results(self) -> pd.DataFrame:
        """Every metric row of every finished run, joined with its run (one row per value)."""
        with self._connect() as con, _unwrap_pandas():
            df = pd.read_sql_query(
                """SELECT r.run_id, r.kind, r.method, r.artist, r.profile, r.seed, r.method_weights,
                          r.spec_version, r.created_at AS run_created_at,
                          m.metric, m.layer, m.display_name, m.value, m.std, m.low, m.high, m.direction, m.n_real,
                          m.n_fake, m.extractor_id, m.resize_mode, m.metric_version
                   FROM metrics m JOIN runs r ON r.run_id = m.run_id WHERE r.status = 'done'""", con)
        return df


@contextmanager
def _unwrap_pandas() -> Iterator[None]:
    """pandas wraps SQLite's errors in its own DatabaseError: hand the SQLite one on."""
    try:
        yield
    except pd.errors.DatabaseError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, sqlite3.Error):
            raise cause from None
        raise


def frame(store: Store, query: str, params: tuple[Any, ...] = ()) -> pd.DataFrame:
    """A query's rows as a DataFrame through the store's own connection (read-only, damage-aware)."""
    with store._connect() as con, _unwrap_pandas():
        return pd.read_sql_query(query, con, params=params)


# --- rebuilding the index from the run folders -------------------------------------------------------

def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def rebuild(home: Path) -> dict[str, Any]:
    """``bench store rebuild``: a new ``results.sqlite`` from the run folders under ``home/runs``.

    The store is an index: each run folder holds its spec (``spec.json``), its rows
    (``metrics.json``), how it ended (``status.json``) and the commit point (``DONE``). The old
    file (damaged or not) is moved aside to ``results.sqlite.damaged-<time>`` with its WAL files,
    never deleted. Runs are imported as ``done`` (DONE + rows), ``failed`` or ``interrupted``.
    Evaluations of external folders (``bench eval --images``) have no run folder and are not
    recovered: run them again.
    """

    home = Path(home)
    path = home / "results.sqlite"
    aside = None
    if path.exists():
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)
        for extra in ("-wal", "-shm"):
            side = path.with_name(path.name + extra)
            if side.exists():
                os.replace(side, aside.with_name(aside.name + extra))
    store = Store(path)
    counts: dict[str, int] = {}
    skipped: list[str] = []
    for spec_file in sorted((home / "runs").glob("*/*/*/spec.json")):
        run_dir = spec_file.parent
        info = _read_json(spec_file)
        if not isinstance(info, dict) or "spec" not in info:
            skipped.append(f"{run_dir} (unreadable spec.json)")
            continue
        spec = RunSpec.from_json(canonical(info["spec"]))
        record = _read_json(run_dir / "status.json") or {}
        rows_json = _read_json(run_dir / "metrics.json")
        if (run_dir / "DONE").exists() and isinstance(rows_json, list):
            status = "done"
            fields = {f for f in MetricRow.__dataclass_fields__}
            rows = [MetricRow(**{k: r[k] for k in fields if k in r}) for r in rows_json]
        else:
            status = record.get("status") if record.get("status") in ("failed", "interrupted") else "interrupted"
            rows = []
        store.import_run(spec.run_id, method=spec.method, artist=spec.artist, profile=spec.profile, seed=spec.seed,
                         spec_json=spec.canonical_json(), spec_version=spec.spec_version, run_dir=str(run_dir),
                         data_fingerprint=spec.data_fingerprint, status=status, timings=record.get("timings") or {},
                         error=record.get("error"), method_weights=record.get("method_weights"),
                         provenance=record.get("provenance"), rows=rows)
        counts[status] = counts.get(status, 0) + 1
    for record_file in sorted((home / "evals").glob("*.json")):  # evaluations that have no run folder
        record = _read_json(record_file)
        if not isinstance(record, dict) or not isinstance(record.get("run"), dict):
            skipped.append(f"{record_file} (unreadable)")
            continue
        store.restore_evaluation(record["run"], record.get("metrics") or [])
        counts["evaluations"] = counts.get("evaluations", 0) + 1
    return {"path": path, "aside": aside, "counts": counts, "skipped": skipped}
