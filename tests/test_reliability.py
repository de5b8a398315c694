"""Fault injection around finished runs and the store (issue 25): a used --out folder, a damaged
final checkpoint, a damaged, read-only or full store/home, dead lock holders, SIGTERM, settings
with a closed set of choices, byte-identical checkpoints, re-measurement on other data.

Every case goes through the real CLI (``benchmark.cli.main``, in-process where it can, a child
process where a signal or a kill is the fault) and checks the exit code, that there is exactly one
``error:`` line naming the file, no traceback, and that nothing was recorded or lost. The runs are
real ``ci``-profile runs on a tiny generated data set (seconds each).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_methods import write_set

from benchmark.core.errors import ArtshiftError

REPO = Path(__file__).resolve().parents[1]


# --- helpers ---------------------------------------------------------------------------------------

def tree_digest(root: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file under ``root`` by relative path (hidden lock files included)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in skip}


def bench(*args, code: int = 0, env: dict[str, str] | None = None) -> tuple[str, str]:
    """``bench ARGS`` in this process: (stdout, stderr); asserts the exit code and that there is no
    traceback, and for an error exactly one ``error:`` line."""
    from benchmark.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = sys.argv
    sys.argv = ["bench", *map(str, args)]
    got = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _env(env or {}):
            try:
                main()
            except SystemExit as exc:
                got = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old
    o, e = out.getvalue(), err.getvalue()
    assert "Traceback" not in e, e[-3000:]
    assert got == code, (got, o[-2000:], e[-2000:])
    if code == 2:
        errors = [line for line in e.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, e[-2000:]
    return o, e


@contextlib.contextmanager
def _env(values: dict[str, str]):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def error_line(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith("error:"))


def tiny_root(root: Path) -> Path:
    for split, seed in (("paintings/monet/train", 0), ("paintings/monet/test", 1), ("photos/train", 2),
                        ("photos/test", 3)):
        write_set(root / split, 4, seed)
    return root


def copy_home(src: Path, dst: Path) -> Path:
    """A copy of a home whose store points at the copy's run folders (the content-addressed cache of
    calibrated extractors and reference statistics is shared through a link, not copied)."""
    shutil.copytree(src, dst, symlinks=True, ignore=lambda d, names: ["cache"] if Path(d) == src else [])
    (dst / "cache").symlink_to((src / "cache").resolve())
    con = sqlite3.connect(dst / "results.sqlite")
    with con:
        con.execute("UPDATE runs SET run_dir = replace(run_dir, ?, ?)", (str(src), str(dst)))
    con.close()
    return dst


def run_dir(home: Path, method: str, seed: int = 0) -> Path:
    from benchmark.core.store import Store

    rows = Store(home / "results.sqlite", read_only=True).find_runs(method=method, artist="monet", profile="ci",
                                                                    seed=seed, status="done")
    return Path(rows[0]["run_dir"])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A home with 3 finished ci runs (original seeds 0 and 1, cyclegan seed 0) on a tiny data set."""
    from benchmark.pipeline import runner

    base = tmp_path_factory.mktemp("finished")
    root, home = tiny_root(base / "data"), base / "home"
    env = {"ARTSHIFT_HOME": str(home), "ARTSHIFT_WEIGHTS": str(home / "weights"), "ARTSHIFT_OFFLINE": "1",
           "ARTSHIFT_DATA": str(root), "HF_HUB_OFFLINE": "1"}
    with _env(env):
        for method, seed in (("original", 0), ("original", 1), ("cyclegan", 0)):
            runner.execute(method, "monet", profile="ci", seed=seed, data_root=root, home=home, progress=False)
    return {"root": root, "home": home, "env": env}


@pytest.fixture
def world(finished, tmp_path, monkeypatch):
    """A private copy of the finished home, with the environment pointing at it."""
    home = copy_home(finished["home"], tmp_path / "home")
    for k, v in {**finished["env"], "ARTSHIFT_HOME": str(home), "ARTSHIFT_WEIGHTS": str(home / "weights")}.items():
        monkeypatch.setenv(k, v)
    return {"root": finished["root"], "home": home, "tmp": tmp_path, "finished_home": finished["home"]}


def test_threads_are_recorded_and_a_bad_count_refused(world):
    """The torch thread count changes a run's float sums, so every finished run records it; a
    bad --threads is one error before anything is created; the process's own count comes back."""
    import torch

    from benchmark.pipeline import runner

    status = json.loads((run_dir(world["home"], "cyclegan") / "status.json").read_text())
    assert isinstance(status["threads"], int) and status["threads"] >= 1
    before = torch.get_num_threads()
    runner.execute("original", "monet", profile="ci", seed=7, data_root=world["root"], home=world["home"],
                   progress=False, threads=before + 1)
    assert json.loads((run_dir(world["home"], "original", seed=7) / "status.json").read_text())["threads"] == before + 1
    assert torch.get_num_threads() == before
    # without --threads a CPU run trains at CPU_THREADS (1), whatever the process's count,
    # so bench run and bench sweep agree; the process's count comes back afterwards
    torch.set_num_threads(2)
    try:
        runner.execute("original", "monet", profile="ci", seed=9, data_root=world["root"], home=world["home"],
                       progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert runner.CPU_THREADS == 1
    assert json.loads((run_dir(world["home"], "original", seed=9) / "status.json").read_text())["threads"] == 1
    folders = set((world["home"] / "runs" / "original" / "monet").iterdir())
    _, err = bench("run", "--method", "original", "--artist", "monet", "--profile", "ci", "--seed", "8",
                   "--threads", "0", code=2)
    assert "--threads 0" in error_line(err)
    assert set((world["home"] / "runs" / "original" / "monet").iterdir()) == folders  # nothing created



def test_every_command_computes_at_the_fixed_thread_count_unless_omp_num_threads_says_otherwise(monkeypatch):
    """Issue 25 §7: not only `bench run` - eval, shift, downstream ... run at CPU_THREADS (two jobs
    on 2 cores then keep >= 40% of their solo speed each); OMP_NUM_THREADS is the user's override,
    and an in-process caller gets its own count back."""
    import torch

    import benchmark.cli as cli
    from benchmark.core.profiles import CPU_THREADS

    seen = []
    monkeypatch.setattr(cli, "_main", lambda: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(CPU_THREADS + 1)
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        cli.main()
        monkeypatch.setenv("OMP_NUM_THREADS", str(CPU_THREADS + 1))
        cli.main()
        assert seen == [CPU_THREADS, CPU_THREADS + 1]
        assert torch.get_num_threads() == CPU_THREADS + 1
    finally:
        torch.set_num_threads(before)


def test_a_profile_that_does_not_fit_in_free_memory_is_refused_before_anything_is_written(world, monkeypatch):
    """Issue 24: a profile that cannot fit says so before training starts and loses nothing; a
    finished run needs no memory to be shown again; a finished run records its peak memory."""
    from benchmark.core import profiles
    from benchmark.pipeline import runner

    status = json.loads((run_dir(world["home"], "cyclegan") / "status.json").read_text())
    assert 0.05 < status["peak_rss_gib"] < 64  # a real measurement of the process, in GiB
    need = profiles.MEMORY_GIB["ci"]
    monkeypatch.setattr(profiles, "available_memory_gib", lambda: need / 4)
    db = ("results.sqlite", "results.sqlite-wal", "results.sqlite-shm")  # SQLite rewrites pages on open/close

    def state():
        with contextlib.closing(sqlite3.connect(world["home"] / "results.sqlite")) as con:
            rows = con.execute("SELECT run_id, status FROM runs ORDER BY run_id").fetchall()
        return tree_digest(world["home"], skip=db), rows

    before = state()
    with pytest.raises(ArtshiftError) as err:
        runner.execute("original", "monet", profile="ci", seed=11, data_root=world["root"], home=world["home"],
                       progress=False)
    assert f"profile 'ci' needs about {need:g} GiB" in str(err.value) and "nothing was started" in str(err.value)
    assert state() == before  # no run folder, no store row
    # --force of a finished run deletes nothing when the new attempt cannot start
    done = run_dir(world["home"], "cyclegan")
    with pytest.raises(ArtshiftError):
        runner.execute("cyclegan", "monet", profile="ci", data_root=world["root"], home=world["home"],
                       progress=False, force=True)
    assert (done / "DONE").exists() and state() == before
    # the finished run is still shown without any memory to spare
    res = runner.execute("cyclegan", "monet", profile="ci", data_root=world["root"], home=world["home"],
                         progress=False)
    assert res.reused
    monkeypatch.setattr(profiles, "available_memory_gib", lambda: need * 2)
    profiles.check_memory("ci")  # enough: no error
    monkeypatch.setattr(profiles, "available_memory_gib", lambda: None)
    profiles.check_memory("cpu")  # unknown (not Linux): no refusal on a guess

# --- 1. bench translate into a used folder -----------------------------------------------------------

def test_translate_refuses_a_used_out_folder_and_overwrite_replaces_it(world):
    home, root, tmp = world["home"], world["root"], world["tmp"]
    rd = run_dir(home, "cyclegan")
    paintings = root / "paintings" / "monet" / "test"
    out = tmp / "out"
    out.mkdir()
    stale = out / "000.png.png"  # a stale file with the name this translation would write
    stale.write_bytes((root / "photos" / "test" / "000.png").read_bytes())
    before = tree_digest(out)
    _, err = bench("translate", "--run", rd.name, "--images", paintings, "--out", out, "--quiet", code=2)
    assert str(out) in error_line(err) and "--overwrite" in err
    assert tree_digest(out) == before  # nothing written, the stale file untouched

    bench("translate", "--run", rd.name, "--images", paintings, "--out", out, "--quiet", "--overwrite")
    manifest = json.loads((out / "artshift-translations.json").read_text())
    assert manifest["run_id"] == rd.name and manifest["complete"] and manifest["inputs"] == str(paintings)
    assert sorted(manifest["files"]) == [f"{i:03d}.png.png" for i in range(4)]
    for name, entry in manifest["files"].items():  # every file replaced: the run's own translation, byte for byte
        assert (out / name).read_bytes() == (rd / "translated" / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()

    # the same translation again resumes into its own folder without the flag
    bench("translate", "--run", rd.name, "--images", paintings, "--out", out, "--quiet")
    # a folder that holds files this translation would not write is refused too
    (out / "other.png").write_bytes(stale.read_bytes())
    _, err = bench("translate", "--run", rd.name, "--images", paintings, "--out", out, "--quiet", code=2)
    assert "would not write" in err and "other.png" in err


def test_eval_images_refuses_a_mixed_or_changed_translation_folder(world):
    home, root, tmp = world["home"], world["root"], world["tmp"]
    rd = run_dir(home, "cyclegan")
    out = tmp / "out"
    bench("translate", "--run", rd.name, "--images", root / "paintings" / "monet" / "test", "--out", out, "--quiet")
    bench("eval", "--images", out, "--artist", "monet", "--name", "mine", "--quiet")  # the clean folder is fine
    shutil.copy(root / "photos" / "test" / "001.png", out / "zz.png")
    _, err = bench("eval", "--images", out, "--artist", "monet", "--name", "mixed", "--quiet", code=2)
    assert "mixes the translations of run" in error_line(err) and "zz.png" in error_line(err)
    (out / "zz.png").unlink()
    (out / "001.png.png").write_bytes((root / "photos" / "test" / "001.png").read_bytes())
    _, err = bench("eval", "--images", out, "--artist", "monet", "--name", "changed", "--quiet", code=2)
    assert "001.png.png was changed" in error_line(err)
    # nothing recorded for a refused folder (folder evals are rows of kind 'eval', which find_runs
    # does not return: read the table itself)
    con = sqlite3.connect(f"file:{home / 'results.sqlite'}?mode=ro", uri=True)
    try:
        labels = [m for (m,) in con.execute("SELECT method FROM runs")]
    finally:
        con.close()
    assert labels and not [m for m in labels if m.startswith(("mixed", "changed"))]


def test_an_empty_images_folder_says_what_it_must_hold(world):
    empty = world["tmp"] / "empty"
    empty.mkdir()
    rd = run_dir(world["home"], "original")
    _, err = bench("translate", "--run", rd.name, "--images", empty, "--out", world["tmp"] / "o", "--quiet", code=2)
    assert str(empty) in error_line(err) and "must hold the paintings to translate" in err
    assert "bench data fetch" not in err
    _, err = bench("eval", "--images", empty, "--artist", "monet", "--name", "x", "--quiet", code=2)
    assert "must hold the translated images to measure" in err and "bench data fetch" not in err


# --- 2. a finished run is read-only --------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "random bytes", "missing"])
def test_a_damaged_final_checkpoint_is_named_and_the_finished_run_is_never_changed(world, damage):
    home, root, tmp = world["home"], world["root"], world["tmp"]
    rd = run_dir(home, "cyclegan")
    ckpt = rd / "checkpoints" / "last.pt"
    want = json.loads((rd / "status.json").read_text())["checkpoints"]["checkpoints/last.pt"]
    assert want == hashlib.sha256(ckpt.read_bytes()).hexdigest()  # recorded when the run finished
    if damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:100])
    elif damage == "random bytes":
        ckpt.write_bytes(os.urandom(ckpt.stat().st_size))
    else:
        ckpt.unlink()
    before = tree_digest(rd)
    _, err = bench("translate", "--run", rd.name, "--images", root / "paintings" / "monet" / "test",
                   "--out", tmp / "out", "--quiet", code=2)
    line = error_line(err)
    assert str(ckpt) in line and want in line
    assert "bench run --method cyclegan --artist monet --profile ci --seed 0 --force" in err
    assert "resum" not in err.lower()  # never "resumed from iteration ..."
    assert not (tmp / "out").exists()
    # eval, grid and report use the stored translations; none of them touches the run's files
    bench("eval", "--run", rd.name, "--quiet")
    bench("grid", "--artist", "monet", "--profile", "ci", "--n", "2", "--seed", "0", "--out", tmp / "grid")
    bench("report", "--out", tmp / "report")
    assert tree_digest(rd) == before


def test_rotation_never_moves_an_unreadable_checkpoint_over_the_previous_one(tmp_path, home):
    import torch
    from helpers_methods import tiny_data, tiny_run
    from test_cyclegan import make

    from benchmark.pipeline.training import CHECKPOINT, previous, readable, train

    data = tiny_data(tmp_path / "tiny")
    run = tiny_run(tmp_path / "r", home)
    train(make(checkpoint_every=5), data, run, stop_after=10)  # last.pt at 10, last.prev.pt at 5
    ckpt = run.checkpoint_dir / CHECKPOINT
    good_prev = previous(ckpt).read_bytes()
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # damaged (a full disk, a bad copy)
    # a resume (as after SIGTERM) falls back to last.prev.pt and checkpoints at 10 and 15 again
    train(make(checkpoint_every=5), data, run, stop_after=5)
    assert torch.load(ckpt, weights_only=True)["iteration"] == 10
    # the damaged file was never rotated into last.prev.pt: it still holds the good iteration-5 checkpoint
    assert readable(previous(ckpt)) and previous(ckpt).read_bytes() == good_prev


def test_a_checkpoint_that_does_not_read_back_never_becomes_last(tmp_path, monkeypatch):
    import torch

    from benchmark.core.errors import ArtshiftError
    from benchmark.pipeline.training import previous, save_checkpoint

    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint({"iteration": 1, "w": torch.ones(3)}, path)
    save_checkpoint({"iteration": 2, "w": torch.ones(3)}, path)
    last, prev = path.read_bytes(), previous(path).read_bytes()
    real = Path.write_bytes

    def flaky(self, data):  # a disk that silently drops the end of the write
        return real(self, data[: len(data) // 2])

    monkeypatch.setattr(Path, "write_bytes", flaky)
    with pytest.raises(ArtshiftError, match="did not read back"):
        save_checkpoint({"iteration": 3, "w": torch.ones(3)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == last and previous(path).read_bytes() == prev
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


# --- 6. byte-identical checkpoints --------------------------------------------------------------------

def test_an_interrupted_and_resumed_run_writes_the_same_checkpoint_bytes(tmp_path, home):
    from helpers_methods import tiny_data, tiny_run
    from test_cyclegan import make

    from benchmark.pipeline.training import CHECKPOINT, train

    data = tiny_data(tmp_path / "tiny")
    straight = tiny_run(tmp_path / "a", home, seed=3, deterministic=True)
    train(make(checkpoint_every=8), data, straight)
    resumed = tiny_run(tmp_path / "b", home, seed=3, deterministic=True)
    train(make(checkpoint_every=8), data, resumed, stop_after=7)  # killed after iteration 7
    train(make(checkpoint_every=8), data, resumed)
    a = (straight.checkpoint_dir / CHECKPOINT).read_bytes()
    b = (resumed.checkpoint_dir / CHECKPOINT).read_bytes()
    assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest()


# --- 3. the store: damaged, read-only, full -------------------------------------------------------------

def _checkpointed(db: Path) -> None:
    """Fold the WAL into the main file, so damaging the main file is the whole damage."""
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    for extra in ("-wal", "-shm"):
        db.with_name(db.name + extra).unlink(missing_ok=True)


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_a_damaged_store_is_named_and_rebuilt_from_the_run_folders(world, damage):
    home = world["home"]
    db = home / "results.sqlite"
    table, _ = bench("leaderboard", "--format", "csv")
    md, _ = bench("leaderboard", "--format", "md")
    assert table.count("\n") > 3
    _checkpointed(db)
    raw = db.read_bytes()
    db.write_bytes(raw[: len(raw) // 3] if damage == "truncated" else os.urandom(len(raw)))
    damaged = db.read_bytes()
    for args in (["leaderboard"], ["run", "--method", "original", "--artist", "monet", "--profile", "ci", "--quiet"],
                 ["eval", "--run", run_dir(world["finished_home"], "original").name, "--quiet"]):
        _, err = bench(*args, code=2)
        line = error_line(err)
        assert str(db) in line and "damaged" in line and "bench store rebuild" in err, (args, err)
    out, _ = bench("store", "rebuild")
    assert "3 done" in out
    kept = list(home.glob("results.sqlite.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == damaged  # kept aside, never deleted
    assert bench("leaderboard", "--format", "csv")[0] == table  # row for row
    assert bench("leaderboard", "--format", "md")[0] == md


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A small tmpfs at ``path`` (needs mount rights: skipped where there are none)."""
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                         text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_read_only_home_serves_leaderboard_report_and_measured_eval(world, monkeypatch):
    src, tmp = world["home"], world["tmp"]
    table, _ = bench("leaderboard", "--format", "csv")
    rid = run_dir(src, "cyclegan").name
    shown, _ = bench("eval", "--run", rid, "--quiet")
    with tmpfs(tmp / "mnt", "64m") as mnt:
        home = copy_home(src, mnt / "home")
        _checkpointed(home / "results.sqlite")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        monkeypatch.setenv("ARTSHIFT_HOME", str(home))
        monkeypatch.setenv("ARTSHIFT_WEIGHTS", str(home / "weights"))
        before = tree_digest(home)
        assert bench("leaderboard", "--format", "csv")[0] == table
        bench("report", "--out", tmp / "report")
        assert bench("eval", "--run", rid, "--quiet")[0] == shown  # measured already: shown, nothing written
        _, err = bench("eval", "--run", rid, "--with", "kid", "--weights", "pretrained", "--quiet", code=2)
        assert "read-only" in error_line(err) and str(home / "results.sqlite") in error_line(err)
        _, err = bench("run", "--method", "original", "--artist", "monet", "--profile", "ci", "--seed", "7",
                       "--quiet", code=2)
        assert str(home) in error_line(err)
        assert tree_digest(home) == before


def test_a_full_disk_is_one_line_and_the_run_resumes_from_its_last_good_checkpoint(world, monkeypatch, caplog):
    import torch

    src, tmp = world["home"], world["tmp"]
    with tmpfs(tmp / "mnt", "5m") as mnt:  # the 5 MB home: the second ci checkpoint does not fit
        home = mnt / "home"
        home.mkdir()
        shutil.copy(src / "results.sqlite", home / "results.sqlite")
        (home / "cache").symlink_to((src / "cache").resolve())
        monkeypatch.setenv("ARTSHIFT_HOME", str(home))
        monkeypatch.setenv("ARTSHIFT_WEIGHTS", str(home / "weights"))
        args = ["run", "--method", "cyclegan", "--artist", "monet", "--profile", "ci", "--seed", "5", "--quiet"]
        _, err = bench(*args, code=2)
        line = error_line(err)
        rd = next((home / "runs" / "cyclegan" / "monet").iterdir())
        assert "No space left on device" in line and str(rd / "checkpoints") in line and "MB" in line, err
        assert not (rd / "DONE").exists() and not list(rd.rglob(".*tmp*"))
        assert torch.load(rd / "checkpoints" / "last.pt", weights_only=True)["iteration"] == 10  # the last good one
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        with caplog.at_level(logging.INFO, logger="artshift"):
            bench(*args)  # resumes, and finishes
        assert "resuming cyclegan from iteration 10" in caplog.text
        assert (rd / "DONE").exists()


def test_torch_zip_writer_failures_are_disk_full_errors_naming_the_folder(tmp_path):
    from benchmark.core.atomic import DiskFullError, atomic_path

    target = tmp_path / "cache" / "x.pt"
    with pytest.raises(DiskFullError, match=f"No space left on device in {tmp_path / 'cache'}"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4416 vs 4288")
    assert not target.exists() and not list(target.parent.iterdir())


# --- 4. runs that died --------------------------------------------------------------------------------

def _spawn(home: Path, root: Path, *args) -> subprocess.Popen:
    env = {**os.environ, "ARTSHIFT_HOME": str(home), "ARTSHIFT_WEIGHTS": str(home / "weights"),
           "ARTSHIFT_DATA": str(root), "ARTSHIFT_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "benchmark.cli", *map(str, args)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (Linux: the SigCgt mask in /proc/PID/status).

    Before that moment a SIGTERM kills the interpreter silently, whatever bench does; waiting for it
    instead of sleeping keeps the start-up case deterministic on a loaded machine."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


LONG = ["run", "--method", "cyclegan", "--artist", "monet", "--profile", "ci", "--seed", "9", "--set", "n_epochs=300",
        "--quiet"]


def test_a_killed_run_is_shown_as_interrupted_with_its_resume_command(world, tmp_path):
    import signal

    home, root = world["home"], world["root"]
    table, _ = bench("leaderboard", "--format", "csv")
    proc = _spawn(home, root, *LONG)
    # the home already holds a finished cyclegan run with its checkpoint: wait for a second one (the new run's),
    # so that the kill lands after the run is recorded as running, never in the instant its lock appears
    _wait_for(lambda: len(list((home / "runs" / "cyclegan" / "monet").glob("*/checkpoints/last.pt"))) > 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert list((home / "runs" / "cyclegan" / "monet").glob(".*.lock"))  # the dead holder's lock is left behind
    resume = "bench run --method cyclegan --artist monet --profile ci --seed 9 --set n_epochs=300"
    out, err = bench("leaderboard", "--format", "csv")  # exit 0: the finished runs are printed
    assert out == table and "was interrupted" in err and resume in err
    # a home whose only run was killed: no error either, the resume command instead
    lone = tmp_path / "lone"
    lone.mkdir()
    from benchmark.core.store import Store

    old = Store(home / "results.sqlite", read_only=True)
    killed = [r for r in old.find_runs(method="cyclegan", artist="monet", profile="ci", seed=9)]
    assert killed and killed[0]["status"] == "running"
    new = Store(lone / "results.sqlite")
    r = killed[0]
    new.start_run(r["run_id"], kind="run", method="cyclegan", artist="monet", profile="ci", seed=9,
                  spec_json=r["spec_json"], run_dir=r["run_dir"], data_fingerprint=r["data_fingerprint"])
    out, _ = bench("leaderboard", "--home", lone)
    assert "No finished runs yet" in out and resume in out


@pytest.mark.parametrize("when", ["start-up", "training"])
def test_sigterm_prints_how_to_resume(world, when):
    import signal

    home, root = world["home"], world["root"]
    proc = _spawn(home, root, *LONG)
    if when == "training":
        _wait_for(lambda: len(list((home / "runs" / "cyclegan" / "monet").glob(
            "*/checkpoints/last.pt"))) > 1, proc)
    else:  # as soon as bench's handler is installed (its imports done), before the run has started
        _wait_for(lambda: _catches(proc.pid, signal.SIGTERM), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1 and "run the same command again to resume" in lines[0], err[-2000:]
    if when == "training":
        assert "SIGTERM: training stopped after iteration" in lines[0]
        rd = next(p for p in (home / "runs" / "cyclegan" / "monet").iterdir()
                  if p.is_dir() and json.loads((p / "spec.json").read_text())["spec"]["seed"] == 9)
        assert json.loads((rd / "status.json").read_text())["status"] == "interrupted"


def test_done_is_the_single_commit_point_and_the_store_follows_it(world, monkeypatch):
    from benchmark.core.store import Store
    from benchmark.pipeline import runner

    home, root = world["home"], world["root"]

    def killed(self, *a, **k):  # the process dies between DONE and the store's update
        raise SystemExit(137)

    monkeypatch.setattr(Store, "finish_run", killed)
    with pytest.raises(SystemExit):
        runner.execute("original", "monet", profile="ci", seed=4, data_root=root, home=home, progress=False)
    monkeypatch.undo()
    rd = next(p for p in (home / "runs" / "original" / "monet").iterdir()
              if p.is_dir() and json.loads((p / "spec.json").read_text())["spec"]["seed"] == 4)
    assert (rd / "DONE").exists() and json.loads((rd / "status.json").read_text())["status"] == "done"
    store = Store(home / "results.sqlite")
    assert store.run(rd.name)["status"] == "running"  # the index lags; the folder is committed
    res = runner.execute("original", "monet", profile="ci", seed=4, data_root=root, home=home, progress=False)
    assert res.reused and store.run(rd.name)["status"] == "done"  # indexed from the folder, nothing recomputed
    assert sorted((m["layer"], m["value"]) for m in res.metrics) == sorted(
        (m["layer"], m["value"]) for m in json.loads((rd / "metrics.json").read_text()))


# --- 5. validation before any work ----------------------------------------------------------------------

@pytest.mark.parametrize("method,setting,needle", [
    ("cyclegan", "norm=bogus", "norm='bogus' is not one of instance, batch, none"),
    ("ours", "bank_index=hnws", "did you mean 'hnsw'"),
    ("gatys", "pooling=mean", "pooling='mean' is not one of avg, max"),
    ("ours", "search_backend=cuda", "search_backend='cuda' is not one of auto, faiss, torch"),
])
def test_a_closed_choice_setting_is_checked_before_anything_is_created(method, setting, needle, tmp_path):
    home = tmp_path / "home"
    root = tiny_root(tmp_path / "data")
    before = tree_digest(root)
    _, err = bench("run", "--method", method, "--artist", "monet", "--profile", "ci", "--set", setting,
                   "--home", home, "--data-root", root, "--quiet", code=2)
    assert needle in error_line(err) and "--set" in err
    assert not (home / "results.sqlite").exists() and not (home / "runs").exists()  # no run, nothing recorded
    assert tree_digest(root) == before


# --- 7. provenance: a re-measurement against other photos ----------------------------------------------

def test_eval_against_other_photos_is_a_new_row_and_never_replaces_the_runs_own(world, tmp_path):
    from benchmark import data
    from benchmark.core.store import Store

    home, root = world["home"], world["root"]
    rid = run_dir(home, "cyclegan").name
    other = tmp_path / "other"
    shutil.copytree(root / "paintings", other / "paintings")
    shutil.copytree(root / "photos" / "train", other / "photos" / "train")
    photos = write_set(other / "photos" / "test", 4, 7)  # another reference set
    store = Store(home / "results.sqlite", read_only=True)
    own = sorted((m["metric"], m["layer"], m["value"]) for m in store.metrics_for(rid))
    rd = run_dir(home, "cyclegan")
    before = tree_digest(rd)
    bench("eval", "--run", rid, "--data-root", other, "--quiet")
    assert sorted((m["metric"], m["layer"], m["value"]) for m in store.metrics_for(rid)) == own  # untouched
    ref = data.fingerprint(photos)
    new = store.run(f"{rid}@ref-{ref[:12]}")
    assert new and new["data_fingerprint"] == ref and new["status"] == "done"
    measured = store.metrics_for(new["run_id"])
    assert measured and sorted((m["metric"], m["layer"]) for m in measured) == sorted(o[:2] for o in own)
    assert [m["value"] for m in measured] != [v for *_, v in own]  # really measured against the other photos
    assert tree_digest(rd) == before  # the run folder is not touched
    table, _ = bench("leaderboard", "--format", "csv")
    assert f"reference photos {ref[:12]}" in table
    bench("store", "rebuild")  # kept in <home>/evals: the rebuilt index has it too
    assert bench("leaderboard", "--format", "csv")[0] == table


@pytest.mark.parametrize("exc,needle", [
    (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4416 vs 4288"), "the disk is full"),
    (OSError(28, "No space left on device", "/somewhere/full/spec.json"), "the file system of /somewhere/full is full"),
])
def test_a_full_disk_outside_an_atomic_write_is_still_one_line(exc, needle, monkeypatch):
    from benchmark.pipeline import runner

    def fail(*a, **k):
        raise exc

    monkeypatch.setattr(runner, "execute", fail)
    _, err = bench("run", "--method", "original", "--artist", "monet", "--profile", "ci", code=2)
    assert needle in error_line(err) and "run the same command again" in err
