"""Sweeps: plan (ids equal `bench run`'s), the local pool, Ray and submitit executors end to end on
tiny generated data, per-cell status from run folders, and collect into the store (idempotent).

Workers never open the SQLite store; these tests check that the store file does not even exist
until `collect` runs. Every test gets its own ARTSHIFT_HOME whose `cache/` is shared with one
warmed at module start (the random-init Inception calibration), so runs take seconds.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from benchmark import data
from benchmark.analyses import sweep
from benchmark.cli import app, main
from benchmark.core.errors import ArtshiftError
from benchmark.core.locks import RunLock
from benchmark.core.store import Store
from benchmark.pipeline import runner

cli = CliRunner()

# rows of a ci run here: FID-64/192/768/2048 and KID-2048 on the FID Inception, FD and KID on
# EfficientNet-Lite0 (precision/recall/density/coverage need more than k = 5 images per set)
ROWS = 7


def _need(module: str):
    """The extras' tests skip where the extra is absent, except in CI, which installs them: there a
    missing extra fails instead of silently skipping."""
    if os.environ.get("CI") == "true":
        return importlib.import_module(module)
    return pytest.importorskip(module)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Two artists of 3 generated paintings per split and 3 photos per split (32-48 px)."""
    from helpers_methods import write_set

    root = tmp_path_factory.mktemp("sweep_data")
    for split, seed in (("paintings/cezanne/train", 0), ("paintings/cezanne/test", 1), ("paintings/vangogh/train", 4),
                        ("paintings/vangogh/test", 5), ("photos/train", 2), ("photos/test", 3)):
        write_set(root / split, 3, seed)
    return root


@pytest.fixture(scope="module")
def warm_cache(root, tmp_path_factory) -> Path:
    """A cache with the calibrated random-init extractor and the photos' statistics."""
    warm = tmp_path_factory.mktemp("warm_home")
    runner.execute("original", "cezanne", profile="ci", data_root=root, home=warm, progress=False, worker=True)
    return warm / "cache"


@pytest.fixture
def home(home, warm_cache) -> Path:
    (home / "cache").symlink_to(warm_cache, target_is_directory=True)
    return home


def _cells(root, home, methods=("original", "cyclegan"), artists=("cezanne", "vangogh"), seeds=(0,), **overrides):
    return sweep.plan(list(methods), list(artists), list(seeds), profile="ci", overrides=overrides or None,
                      data_root=root, home=home)


def _bench(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``bench ARGS`` in this process through the real entry point (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    captured = capsys.readouterr()
    return exit_.value.code or 0, captured.out, captured.err


def _row(output: str, run_id: str) -> str:
    return next(line for line in output.splitlines() if run_id in line)


# --- plan -------------------------------------------------------------------------------------

def test_plan_cells_carry_the_run_ids_bench_run_computes(root, home):
    cells = _cells(root, home, seeds=(0, 1), epoch_size="3")
    assert [(c.method, c.artist, c.seed) for c in cells] == [
        (m, a, s) for m in ("original", "cyclegan") for a in ("cezanne", "vangogh") for s in (0, 1)]
    for c in cells:
        fp = data.split_fingerprint(data.ensure_domain(c.artist, root, home, progress=False))
        overrides = {"epoch_size": "3"} if c.method == "cyclegan" else {}  # original has no epoch_size
        spec = runner.make_spec(c.method, c.artist, "ci", c.seed, overrides, fp)[2]
        assert c.run_id == spec.run_id and c.run_dir == runner.run_dir_for(home, spec)
    assert len({c.run_id for c in cells}) == 8
    plain = {(c.method, c.artist, c.seed): c.run_id for c in _cells(root, home, seeds=(0, 1))}
    for c in cells:  # --set epoch_size changes the GAN cells only
        assert (plain[c.method, c.artist, c.seed] == c.run_id) == (c.method == "original")


@pytest.mark.parametrize("kwargs,message", [
    ({"methods": ("original", "cyclegam")}, "did you mean 'cyclegan'"),
    ({"artists": ("cezane",)}, "unknown artist 'cezane'"),
    ({"epoch_sise": "3"}, "did you mean 'epoch_size'"),
    ({"epoch_size": "0"}, "epoch_size=0 is outside"),
    ({"seeds": ()}, "at least one seed"),
])
def test_plan_refuses_bad_names_and_values_before_any_work(root, home, kwargs, message):
    with pytest.raises(ArtshiftError, match=re.escape(message)):
        _cells(root, home, **kwargs)
    assert not (home / "runs").exists()


def test_finished_cells_are_skipped_and_workers_never_open_the_store(root, home, monkeypatch, capsys):
    cells = _cells(root, home)
    done = cells[0]  # original / cezanne
    result = sweep.run_cell(done)  # what every executor's worker runs
    assert result["state"] == "done" and result["rows"] == ROWS
    assert not (home / "results.sqlite").exists()  # the worker recorded into its run folder only
    rows = json.loads((done.run_dir / "metrics.json").read_text())
    assert {(r["metric"], r["layer"]) for r in rows} >= {("fid", "inception:2048"), ("kid", "inception:2048")}
    assert all(r["n_fake"] == 3 and r["n_real"] == 3 for r in rows)
    assert json.loads((done.run_dir / "status.json").read_text())["status"] == "done"
    assert sweep.run_cell(done)["state"] == "skipped"  # finished: read back from the folder, not recomputed

    code, out, _ = _bench(monkeypatch, capsys, "sweep", "plan", "--methods", "original,cyclegan", "--artists",
                          "cezanne,vangogh", "--profile", "ci", "--data-root", str(root))
    assert code == 0
    assert "skip (done)" in _row(out, done.run_id)
    for c in cells[1:]:
        assert re.search(r"\bmissing\b.*\brun\b", _row(out, c.run_id)) and "skip" not in _row(out, c.run_id)
    assert "4 cells: 1 done, 3 missing" in out


# --- status, collect, leaderboard ---------------------------------------------------------------

class InProcess:
    """An executor that runs each handed cell here, in order: shows which cells launch hands over."""

    def __init__(self):
        self.handed: list[sweep.Cell] = []

    def run(self, cells):
        for c in cells:
            self.handed.append(c)
            yield c, sweep.run_cell(c)


def test_status_shows_each_cell_from_its_run_folder(root, home, monkeypatch, capsys):
    cells = _cells(root, home, methods=("original",), seeds=(0, 1))
    done, failed, running, missing = cells  # (cezanne, 0), (cezanne, 1), (vangogh, 0), (vangogh, 1)
    sweep.run_cell(done)

    def broken(*a, **k):
        raise RuntimeError("disk on fire")

    with monkeypatch.context() as m:
        m.setattr(runner, "evaluate_paths", broken)
        res = sweep.run_cell(failed)
    assert res["state"] == "failed" and "disk on fire" in res["error"]

    args = ("sweep", "status", "--methods", "original", "--artists", "cezanne,vangogh", "--seeds", "0-1",
            "--profile", "ci", "--data-root", str(root))
    with RunLock(running.lock):  # another process (here: this one) works on the cell
        code, out, _ = _bench(monkeypatch, capsys, *args)
        assert code == 0
        assert " done " in _row(out, done.run_id)
        assert " failed " in _row(out, failed.run_id) and "disk on fire" in _row(out, failed.run_id)
        assert " running " in _row(out, running.run_id) and f"pid {os.getpid()}" in _row(out, running.run_id)
        assert " missing " in _row(out, missing.run_id)
        assert "4 cells: 1 done, 1 running, 1 failed, 1 missing" in out

        ex = InProcess()
        launched = sweep.launch(cells, ex)  # neither the finished nor the running cell is run again
        assert [c.run_id for c in ex.handed] == [failed.run_id, missing.run_id]
        assert sorted(s.cell.run_id for s in launched.skipped) == sorted([done.run_id, running.run_id])
    states = {s.cell.run_id: s.state for s in sweep.status(cells)}
    assert states == {done.run_id: "done", failed.run_id: "done", running.run_id: "missing", missing.run_id: "done"}

    # a folder left by a killed process, with no record and no live lock, is interrupted (launch resumes it)
    running.run_dir.mkdir(parents=True)
    assert sweep.cell_state(running)[0] == "interrupted"


def test_collect_imports_finished_cells_once_and_the_leaderboard_shows_them(root, home, monkeypatch, capsys):
    cells = _cells(root, home, methods=("original", "cyclegan"), artists=("cezanne",), epoch_size="2")
    for c in cells:
        sweep.run_cell(c)
    failing = _cells(root, home, methods=("original",), artists=("vangogh",))[0]
    def broken(*a, **k):
        raise ValueError("no photos")

    with monkeypatch.context() as m:
        m.setattr(runner, "evaluate_paths", broken)
        sweep.run_cell(failing)
    assert not (home / "results.sqlite").exists()

    first = sweep.collect(cells + [failing])
    assert [c.run_id for c in first.imported] == [c.run_id for c in cells] and not first.unchanged
    store = Store(home / "results.sqlite")
    for c in cells:
        on_disk = json.loads((c.run_dir / "metrics.json").read_text())
        stored = store.metrics_for(c.run_id)
        assert sorted((r["layer"], r["metric"], r["value"]) for r in stored) == \
            sorted((r["layer"], r["metric"], r["value"]) for r in on_disk)
        run = store.run(c.run_id)
        assert run["status"] == "done" and json.loads(run["timings_json"])["fit_s"] >= 0
        assert json.loads(run["provenance_json"])["torch_threads"] >= 1  # the worker's machine, not the collector's
    assert store.run(failing.run_id)["status"] == "failed" and "no photos" in store.run(failing.run_id)["error"]
    before = store.results().sort_values(["run_id", "layer", "metric"]).reset_index(drop=True)

    second = sweep.collect(cells + [failing])  # idempotent: nothing new, nothing changed
    assert not second.imported and len(second.unchanged) == 2
    after = store.results().sort_values(["run_id", "layer", "metric"]).reset_index(drop=True)
    assert before.equals(after) and len(after) == 2 * ROWS

    code, out, _ = _bench(monkeypatch, capsys, "sweep", "collect", "--methods", "original,cyclegan", "--artists",
                          "cezanne", "--profile", "ci", "--set", "epoch_size=2", "--data-root", str(root))
    assert code == 0 and "collect: 0 imported, 2 already in the store, 0 not done" in out
    board = cli.invoke(app, ["leaderboard", "--format", "csv"])
    assert board.exit_code == 0, board.output
    table = list(csv.DictReader(io.StringIO(board.output)))
    for c in cells:
        mine = [r for r in table if r["run_id"] == c.run_id]
        assert len(mine) == ROWS and {r["method"] for r in mine} == {c.method}
        assert {r["overrides"] for r in mine} == {"epoch_size=2" if c.method == "cyclegan" else ""}
    assert failing.run_id not in board.output


# --- executors ----------------------------------------------------------------------------------

def _check_launched(root, home, cells, out: str) -> None:
    assert f"collect: {len(cells)} imported, 0 already in the store, 0 not done" in out
    store = Store(home / "results.sqlite", read_only=True)
    for c in cells:
        assert (c.run_dir / "DONE").exists()
        assert store.run(c.run_id)["status"] == "done"
        assert len(store.metrics_for(c.run_id)) == ROWS


SWEEP = ("--methods", "original,cyclegan", "--artists", "cezanne,vangogh", "--profile", "ci", "--set", "epoch_size=2")


@pytest.mark.slow
def test_local_pool_runs_every_cell_with_one_torch_thread_each(root, home, monkeypatch, capsys):
    cells = _cells(root, home, epoch_size="2")
    code, out, err = _bench(monkeypatch, capsys, "sweep", "launch", *SWEEP, "--executor", "local", "--workers", "2",
                            "--data-root", str(root))
    assert code == 0, out + err
    _check_launched(root, home, cells, out)
    for c in cells:
        assert json.loads((c.run_dir / "status.json").read_text())["provenance"]["torch_threads"] == 1
    code, out, _ = _bench(monkeypatch, capsys, "sweep", "launch", *SWEEP, "--data-root", str(root))
    assert code == 0 and out.count("skipped") == 4 and "0 imported, 4 already in the store" in out


@pytest.mark.slow
def test_ray_executor_runs_the_sweep(root, home, monkeypatch, capsys):
    _need("ray")
    cells = _cells(root, home, epoch_size="2")
    code, out, err = _bench(monkeypatch, capsys, "sweep", "launch", *SWEEP, "--executor", "ray", "--workers", "2",
                            "--data-root", str(root))
    assert code == 0, out + err
    _check_launched(root, home, cells, out)
    code, out, _ = _bench(monkeypatch, capsys, "sweep", "status", *SWEEP, "--data-root", str(root))
    assert "4 cells: 4 done" in out and all(" done " in _row(out, c.run_id) for c in cells)


@pytest.mark.slow
def test_slurm_executor_through_submitits_local_executor(root, home, monkeypatch, capsys):
    _need("submitit")
    cells = _cells(root, home, epoch_size="2")
    code, out, err = _bench(monkeypatch, capsys, "sweep", "launch", *SWEEP, "--executor", "slurm", "--cluster",
                            "local", "--timeout-min", "10", "--data-root", str(root))
    assert code == 0, out + err
    _check_launched(root, home, cells, out)
    code, out, _ = _bench(monkeypatch, capsys, "sweep", "status", *SWEEP, "--data-root", str(root))
    assert "4 cells: 4 done" in out


def test_a_requeued_job_is_the_same_cell_and_runs_in_process_with_the_debug_executor(root, home):
    submitit = _need("submitit")
    cell = _cells(root, home, methods=("original",), artists=("vangogh",))[0]
    job = sweep.CellJob(cell, threads=1, device="cpu")
    again = job.checkpoint()
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert isinstance(again.function, sweep.CellJob) and again.function.cell == cell
    ex = sweep.SubmititExecutor(sweep.Options(cluster="debug", device="cpu"))
    [(ran, result)] = list(ex.run([cell]))
    assert ran == cell and result["state"] == "done"
    assert not (home / "results.sqlite").exists()


def _pending(pid: int, sig: int) -> bool:
    """Whether ``sig`` waits, undelivered, for the (stopped) process ``pid``."""
    text = Path(f"/proc/{pid}/status").read_text()
    masks = [int(line.split()[1], 16) for line in text.splitlines() if line.startswith(("SigPnd:", "ShdPnd:"))]
    return any(m & (1 << (sig - 1)) for m in masks)


@pytest.mark.slow
def test_a_job_that_times_out_is_requeued_and_resumes_from_its_checkpoint(root, home):
    """submitit's local executor sends SIGUSR2 `signal_delay_s` before its time limit, exactly as
    Slurm does. The job is parked (SIGSTOP) right after its first checkpoint until that signal is
    pending, so the timeout always lands mid-training, however fast the machine; then it resumes."""
    _need("submitit")
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to see the pending timeout signal")
    cell = _cells(root, home, methods=("cyclegan",), artists=("cezanne",), epoch_size="20", checkpoint_every="5")[0]
    ex = sweep.SubmititExecutor(sweep.Options(cluster="local", device="cpu", timeout_min=2, signal_delay_s=60))
    [job] = ex.submit([cell])
    ckpt = cell.run_dir / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 55
    while not ckpt.exists():
        assert time.monotonic() < deadline and not job.done(), "the job never wrote its first checkpoint"
        time.sleep(0.01)
    pid = RunLock(cell.lock).holder()["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        stopped_at = torch.load(ckpt, weights_only=True)["iteration"]
        assert 5 <= stopped_at < 40
        deadline = time.monotonic() + 90
        while not _pending(pid, signal.SIGUSR2):  # the executor's timeout fires at 120 - 60 s
            assert time.monotonic() < deadline, "no timeout signal came"
            time.sleep(0.1)
    finally:
        os.kill(pid, signal.SIGCONT)
    result = job.result()
    assert result["state"] == "done", result
    assert torch.load(ckpt, weights_only=True)["iteration"] == 40
    log = (cell.run_dir / "log.txt").read_text()
    resumed = [int(n) for n in re.findall(r"resuming cyclegan from iteration (\d+)", log)]
    assert resumed and resumed[0] >= stopped_at, log[-2000:]
    job_log = "".join(p.read_text() for p in job.paths.folder.glob(f"{job.job_id}_*.err"))
    assert "Caught signal SIGUSR2" in job_log and "this job is timed-out" in job_log
    assert sweep.collect([cell]).imported == [cell]


# --- the CLI's user errors ----------------------------------------------------------------------

@pytest.mark.parametrize("extra,needle", [
    (("--executor", "rey"), "did you mean 'ray'"),
    (("--set", "epoch_size"), "key=value"),
    (("--seeds", "a-b"), "is not a seed or a range"),
    (("--workers", "0"), "must be at least 1"),
])
def test_sweep_user_errors_exit_2_with_one_message(root, monkeypatch, capsys, extra, needle):
    code, out, err = _bench(monkeypatch, capsys, "sweep", "launch", "--methods", "original", "--artists", "cezanne",
                            "--profile", "ci", "--data-root", str(root), *extra)
    assert code == 2 and needle in err and err.startswith("error:"), err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2


@pytest.mark.parametrize("executor,module,extra", [("ray", "ray", "ray"), ("slurm", "submitit", "slurm")])
def test_a_missing_extra_says_how_to_install_it(root, home, monkeypatch, capsys, executor, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    code, _, err = _bench(monkeypatch, capsys, "sweep", "launch", "--methods", "original", "--artists", "cezanne",
                          "--profile", "ci", "--data-root", str(root), "--executor", executor)
    assert code == 2 and f"pip install -e '.[{extra}]'" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (home / "runs").exists()
