"""Sweeps: methods x artists x seeds as RunSpecs handed to an executor (a process pool, Ray or
submitit/Slurm); nothing here schedules, retries or requeues by itself: the engines do.

- A cell is one RunSpec whose id is the one ``bench run`` computes (``runner.make_spec``), so
  sweeps and single runs share run folders: a finished cell is skipped, an interrupted one
  resumes from its checkpoint, and two launches of one sweep meet at the run folder's lock.
- Workers never open the SQLite store (its locking is unsafe on the network file systems where
  clusters keep results): each records into its run folder (``runner.execute(worker=True)``:
  ``metrics.json``, ``status.json``, ``DONE``) and ``collect``, one process, imports them.
- A cell's state is read from its folder and lock file, never from the launching process, so
  ``status`` is right whichever machine ran the cell and after the launcher died.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark import data
from benchmark.core import paths, registry
from benchmark.core.errors import ArtshiftError, did_you_mean
from benchmark.core.locks import HEARTBEAT_S, STALE_S, RunLock
from benchmark.core.profiles import check_profile
from benchmark.core.spec import RunSpec, canonical
from benchmark.core.store import MetricRow, Store
from benchmark.pipeline.runner import execute, make_spec, run_dir_for

STATES = ("done", "running", "failed", "interrupted", "missing")


@dataclass(frozen=True)
class Cell:
    method: str
    artist: str
    seed: int
    profile: str
    overrides: tuple[tuple[str, str], ...]  # the --set values this method has (text, as typed)
    run_id: str
    run_dir: Path
    data_root: Path
    home: Path

    @property
    def label(self) -> str:
        return f"{self.method} / {self.artist} / seed {self.seed}"

    @property
    def lock(self) -> Path:
        return self.run_dir.parent / f".{self.run_id}.lock"  # where runner.execute takes it


# --- plan ---------------------------------------------------------------------------------------

def _unique(items: Sequence[Any], what: str) -> list[Any]:
    out = list(dict.fromkeys(items))
    if not out:
        raise ArtshiftError(f"a sweep needs at least one {what}", hint=f"pass --{what}s a,b,...")
    return out


def split_overrides(methods: Sequence[str], profile: str, overrides: dict[str, str]) -> dict[str, dict[str, str]]:
    """Each method gets the ``--set`` keys its config has, so ``--set epoch_size=3`` shrinks the
    GANs of a sweep without making ``original`` fail; a key no method has is an error."""
    fields = {m: {f.name for f in dataclasses.fields(registry.methods.get(m).default_config(profile))}
              for m in methods}
    for key in overrides:
        if not any(key in names for names in fields.values()):
            known = set().union(*fields.values())
            raise ArtshiftError(f"--set {key}: none of {', '.join(methods)} has such a setting",
                                hint=did_you_mean(key, known, otherwise=f"settings: {', '.join(sorted(known))}"))
    return {m: {k: v for k, v in overrides.items() if k in fields[m]} for m in methods}


def plan(methods: Sequence[str], artists: Sequence[str], seeds: Sequence[int], *, profile: str,
         overrides: dict[str, str] | None = None, data_root: Path | None = None, home: Path | None = None,
         progress: bool = False) -> list[Cell]:
    """Every (method, artist, seed) cell with its run id; names and values are checked before any data is read."""
    methods, artists, seeds = _unique(methods, "method"), _unique(artists, "artist"), _unique(seeds, "seed")
    check_profile(profile)
    for m in methods:
        registry.methods.entry(m)  # did-you-mean for every name before any work
    per_method = split_overrides(methods, profile, dict(overrides or {}))
    for m in methods:
        make_spec(m, artists[0], profile, 0, per_method[m], "")  # values in range
    home, root = paths.home(home), paths.data_root(data_root)
    for a in artists:
        data.check_artist(a, root, home)
    fingerprints = {a: data.split_fingerprint(data.ensure_domain(a, root, home, progress=progress)) for a in artists}
    cells = []
    for m in methods:
        for a in artists:
            for s in seeds:
                spec = make_spec(m, a, profile, int(s), per_method[m], fingerprints[a])[2]
                cells.append(Cell(m, a, int(s), profile, tuple(sorted(per_method[m].items())), spec.run_id,
                                  run_dir_for(home, spec), root, home))
    return cells


# --- state, read from each run folder ----------------------------------------------------------

@dataclass(frozen=True)
class CellState:
    cell: Cell
    state: str  # one of STATES
    detail: str = ""
    stored: bool = False  # the store holds it as done (what collect has imported)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def cell_state(cell: Cell) -> tuple[str, str]:
    """(state, detail) from the run folder: DONE, a live lock, the failure record, or what is left."""
    if (cell.run_dir / "DONE").exists():
        return "done", ""
    lock = RunLock(cell.lock)
    if lock.held():
        info = lock.holder()
        return "running", f"pid {info.get('pid', '?')} on {info.get('host', '?')}"
    record = _read_json(cell.run_dir / "status.json") or {}
    if record.get("status") in ("failed", "interrupted"):
        return record["status"], str(record.get("error") or "")
    if cell.run_dir.exists():
        return "interrupted", "stopped without a record (killed?); launch resumes it"
    return "missing", ""


def status(cells: Sequence[Cell]) -> list[CellState]:
    store_path = cells[0].home / "results.sqlite" if cells else None
    store = Store(store_path, read_only=True) if store_path and store_path.is_file() else None
    out = []
    for cell in cells:
        state, detail = cell_state(cell)
        row = store.run(cell.run_id) if store is not None else None
        out.append(CellState(cell, state, detail, bool(row and row["status"] == "done")))
    return out


# --- collect: run folders -> the store, from one process ----------------------------------------

_ROW_FIELDS = [f.name for f in dataclasses.fields(MetricRow)]


def _rows(path: Path) -> list[MetricRow]:
    rows = _read_json(path)
    if not isinstance(rows, list):
        raise ArtshiftError(f"cannot read the metric rows in {path}", hint="re-run the cell with --force")
    return [MetricRow(**{k: r[k] for k in _ROW_FIELDS if k in r}) for r in rows]


def _key(r: MetricRow | dict[str, Any]) -> tuple:
    get = r.get if isinstance(r, dict) else lambda k: getattr(r, k)
    return tuple(get(k) for k in ("metric", "layer", "extractor_id", "resize_mode", "value", "n_real", "n_fake"))


@dataclass
class Collected:
    imported: list[Cell] = field(default_factory=list)
    unchanged: list[Cell] = field(default_factory=list)  # already in the store as they are on disk
    not_done: list[CellState] = field(default_factory=list)


def collect(cells: Sequence[Cell], store: Store | None = None) -> Collected:
    """Import every finished (and every failed) cell's record into the store; running twice changes nothing."""
    out = Collected()
    if not cells:
        return out
    store = store or Store(cells[0].home / "results.sqlite")
    for cell in cells:
        state, detail = cell_state(cell)
        record = _read_json(cell.run_dir / "status.json") or {}
        stored = store.run(cell.run_id)
        if state == "done":
            rows = _rows(cell.run_dir / "metrics.json")
            if (stored and stored["status"] == "done"
                    and sorted(map(_key, store.metrics_for(cell.run_id))) == sorted(map(_key, rows))):
                out.unchanged.append(cell)
                continue
            status_, error = "done", None
        elif state in ("failed", "interrupted") and record:
            out.not_done.append(CellState(cell, state, detail))
            if stored and (stored["status"], stored["error"]) == (state, record.get("error")):
                continue
            rows, status_, error = [], state, record.get("error")
        else:
            out.not_done.append(CellState(cell, state, detail))
            continue
        info = _read_json(cell.run_dir / "spec.json") or {}
        if "spec" not in info:
            raise ArtshiftError(f"cannot read {cell.run_dir / 'spec.json'}", hint="re-run the cell with --force")
        spec = RunSpec.from_json(canonical(info["spec"]))
        store.import_run(cell.run_id, method=spec.method, artist=spec.artist, profile=spec.profile, seed=spec.seed,
                         spec_json=spec.canonical_json(), spec_version=spec.spec_version, run_dir=str(cell.run_dir),
                         data_fingerprint=spec.data_fingerprint, status=status_, timings=record.get("timings") or {},
                         error=error, method_weights=record.get("method_weights"),
                         provenance=record.get("provenance"), rows=rows)
        if status_ == "done":
            out.imported.append(cell)
    return out


# --- workers and executors ----------------------------------------------------------------------

def run_cell(cell: Cell, threads: int = 1, device: str = "cpu", wait: float = 0.0) -> dict[str, Any]:
    """One cell in a worker: run (or resume) it into its folder; a failure is a result, not a crash,
    so one bad cell does not stop the pool. SystemExit and KeyboardInterrupt pass (a scheduler's
    requeue, Ctrl-C): the run folder then says 'interrupted' and the next attempt resumes."""
    import torch

    torch.set_num_threads(threads)
    logging.getLogger("artshift").setLevel(logging.INFO)  # the run's log.txt says what `bench run`'s would
    t = time.perf_counter()
    try:
        res = execute(cell.method, cell.artist, profile=cell.profile, seed=cell.seed, overrides=dict(cell.overrides),
                      data_root=cell.data_root, home=cell.home, progress=False, device=device, wait=wait, worker=True,
                      threads=threads)
    except Exception as exc:
        error = str(exc) if isinstance(exc, ArtshiftError) else f"{type(exc).__name__}: {exc}"
        return {"run_id": cell.run_id, "state": "failed", "error": error, "seconds": time.perf_counter() - t}
    return {"run_id": res.run_id, "state": "skipped" if res.reused else "done", "rows": len(res.metrics),
            "seconds": time.perf_counter() - t}


class CellJob:
    """A cell as a submitit job. On SIGUSR2 (Slurm's warning before the time limit, or a
    preemption) submitit calls ``checkpoint``; the job is requeued with the same cell, and
    ``runner.execute`` resumes from the run's last checkpoint (translations already written are
    kept). The retry waits for the lock a dead attempt on another node may have left."""

    def __init__(self, cell: Cell, threads: int = 1, device: str = "cpu"):
        self.cell, self.threads, self.device = cell, threads, device

    def __call__(self) -> dict[str, Any]:
        return run_cell(self.cell, self.threads, self.device, wait=STALE_S + HEARTBEAT_S)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit  # optional extra (artshift[slurm]): only in a Slurm job

        return submitit.helpers.DelayedSubmission(CellJob(self.cell, self.threads, self.device))


def _failed(cell: Cell, exc: BaseException) -> dict[str, Any]:
    return {"run_id": cell.run_id, "state": "failed", "error": f"{type(exc).__name__}: {exc}".strip()[:2000],
            "seconds": 0.0}


def _extra(module: str, extra: str, executor: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ArtshiftError(f"the {executor} executor needs {module}, which is not installed: "
                            f"pip install -e '.[{extra}]'") from None


@dataclass
class Options:
    workers: int = 2  # cells at once (local pool, local Ray cluster)
    threads: int = 1  # torch threads per cell (and CPUs requested per cell)
    device: str = "auto"  # auto: cuda when this machine has it, else cpu
    gpus: int = -1  # GPUs per cell (Ray, Slurm); -1: 1 when the device is cuda, else 0
    address: str | None = None  # Ray: join this cluster instead of starting one
    folder: Path | None = None  # submitit: job scripts and logs (default <home>/sweeps/submitit)
    cluster: str | None = None  # submitit: None picks slurm when available, else local; or slurm|local|debug
    partition: str | None = None
    timeout_min: int = 240
    signal_delay_s: int | None = None  # submitit: SIGUSR2 this long before the time limit
    max_requeues: int = 3  # submitit: timeouts requeued before the job fails
    wait: bool = True  # submitit: wait for the jobs (False: submit and return; collect later)

    def resolved(self) -> Options:
        import torch

        device = self.device if self.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        gpus = self.gpus if self.gpus >= 0 else int(device.startswith("cuda"))
        if self.workers < 1 or self.threads < 1:
            raise ArtshiftError(f"--workers {self.workers}, --threads {self.threads}: both must be at least 1")
        return dataclasses.replace(self, device=device, gpus=gpus)


class PoolExecutor:
    """``local``: a process pool of ``workers`` spawned processes (spawn: no forked torch state)."""

    def __init__(self, options: Options):
        self.options = options.resolved()

    def run(self, cells: Sequence[Cell]) -> Iterator[tuple[Cell, dict[str, Any]]]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        o = self.options
        with ProcessPoolExecutor(max_workers=max(1, o.workers), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_cell, c, o.threads, o.device): c for c in cells}
            for fut in as_completed(futures):
                try:
                    yield futures[fut], fut.result()
                except Exception as exc:  # a worker process died (e.g. out of memory)
                    yield futures[fut], _failed(futures[fut], exc)


class RayExecutor:
    """``ray``: one Ray core task per cell, asking for ``threads`` CPUs (and a GPU when there is one);
    a local cluster of ``workers x threads`` CPUs is started unless ``address`` names one."""

    def __init__(self, options: Options):
        self.ray = _extra("ray", "ray", "ray")
        self.options = options.resolved()

    def run(self, cells: Sequence[Cell]) -> Iterator[tuple[Cell, dict[str, Any]]]:
        ray, o = self.ray, self.options
        started = not ray.is_initialized()
        if started and o.address:
            ray.init(address=o.address, logging_level="WARNING")
        elif started:
            ray.init(num_cpus=max(1, o.workers) * o.threads, include_dashboard=False,
                     object_store_memory=int(2e8), logging_level="WARNING")
        try:
            task = ray.remote(num_cpus=o.threads, num_gpus=o.gpus)(run_cell)
            pending = {task.remote(c, o.threads, o.device): c for c in cells}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                cell = pending.pop(ready[0])
                try:
                    yield cell, ray.get(ready[0])
                except ray.exceptions.RayError as exc:  # the task's worker died
                    yield cell, _failed(cell, exc)
        finally:
            if started:
                ray.shutdown()


class SubmititExecutor:
    """``slurm``: one submitit job per cell (Slurm when ``sbatch`` is there, else submitit's local
    executor; ``cluster`` forces one); timeouts and preemptions requeue through ``CellJob.checkpoint``."""

    def __init__(self, options: Options):
        self.submitit = _extra("submitit", "slurm", "slurm")
        self.options = options.resolved()

    def executor(self, home: Path) -> Any:
        o, submitit = self.options, self.submitit
        folder = o.folder or home / "sweeps" / "submitit"
        cluster = o.cluster or submitit.AutoExecutor.which()
        delay = {} if o.signal_delay_s is None else {"signal_delay_s": o.signal_delay_s}
        if cluster == "local":  # directly: AutoExecutor does not pass the local executor's signal delay
            ex = submitit.LocalExecutor(folder=folder, max_num_timeout=o.max_requeues)
            ex.update_parameters(timeout_min=o.timeout_min, gpus_per_node=o.gpus, **delay)
            return ex
        ex = submitit.AutoExecutor(folder=folder, cluster=cluster, slurm_max_num_timeout=o.max_requeues)
        ex.update_parameters(timeout_min=o.timeout_min, cpus_per_task=o.threads, gpus_per_node=o.gpus,
                             name="artshift-sweep", slurm_partition=o.partition,
                             **{f"slurm_{k}": v for k, v in delay.items()})
        return ex

    def submit(self, cells: Sequence[Cell]) -> list[Any]:
        if not cells:
            return []
        ex = self.executor(cells[0].home)
        return [ex.submit(CellJob(c, self.options.threads, self.options.device)) for c in cells]

    def run(self, cells: Sequence[Cell]) -> Iterator[tuple[Cell, dict[str, Any]]]:
        jobs = self.submit(cells)
        if not self.options.wait:
            for cell, job in zip(cells, jobs):
                yield cell, {"run_id": cell.run_id, "state": "submitted", "job_id": job.job_id, "seconds": 0.0}
            return
        by_job = {id(j): c for j, c in zip(jobs, cells)}
        poll_s = 30.0 if type(jobs[0]).__name__ == "SlurmJob" else 1.0  # sacct is not to be hammered
        for job in self.submitit.helpers.as_completed(jobs, poll_frequency=poll_s):
            cell = by_job[id(job)]
            try:
                yield cell, job.result()
            except Exception as exc:  # the job failed outside run_cell, or ran out of requeues
                yield cell, _failed(cell, exc)


def make_executor(name: str, options: Options) -> Any:
    """The registered executor (did-you-mean for unknown names; one-line error for a missing extra)."""
    return registry.executors.get(name)(options)


@dataclass
class Launched:
    results: list[tuple[Cell, dict[str, Any]]]
    skipped: list[CellState]  # done already, or running elsewhere
    collected: Collected | None


def launch(cells: Sequence[Cell], executor: Any, on_result: Any = None) -> Launched:
    """Run every cell that is not done or running elsewhere on ``executor`` (a name or one from
    ``make_executor``), then collect (unless the jobs were only submitted)."""
    if isinstance(executor, str):
        executor = make_executor(executor, Options())
    states = status(cells)
    todo = [s.cell for s in states if s.state not in ("done", "running")]
    skipped = [s for s in states if s.state in ("done", "running")]
    results = []
    for cell, result in executor.run(todo):
        results.append((cell, result))
        if on_result is not None:
            on_result(cell, result)
    submitted_only = any(r.get("state") == "submitted" for _, r in results)
    return Launched(results, skipped, None if submitted_only else collect(cells))
