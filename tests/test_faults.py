"""Faults of a harness that many runs share: signals, weights that turn NaN, a corrupt last
checkpoint, stores that would record a run as done without its rows (issue 10, faults 2/3/7/9)."""

from __future__ import annotations

import logging
import os
import signal

import pytest
import torch
from helpers_methods import assert_states_equal, tiny_data, tiny_run
from test_cyclegan import make

from benchmark.core.errors import ArtshiftError
from benchmark.core.store import MetricRow, Store
from benchmark.pipeline.training import CHECKPOINT, RunInterrupted, TrainingDiverged, previous, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("tiny"))


def _signal_at(method, iteration, sig):
    real = method.train_step

    def step(batch, it):
        out = real(batch, it)
        if it == iteration:
            os.kill(os.getpid(), sig)  # arrives mid-run, as a preemption or Ctrl-C would
        return out

    method.train_step = step


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_the_finished_iteration_and_resume_is_exact(tmp_path, home, data, sig):
    straight = make(checkpoint_every=8)
    train(straight, data, tiny_run(tmp_path / "a", home, seed=2, deterministic=True))
    run = tiny_run(tmp_path / "b", home, seed=2, deterministic=True)
    stopped = make(checkpoint_every=8)
    _signal_at(stopped, 5, sig)
    with pytest.raises(RunInterrupted, match="after iteration 6 of 20"):
        train(stopped, data, run)
    assert torch.load(run.checkpoint_dir / CHECKPOINT, weights_only=True)["iteration"] == 6  # not 0: no work lost
    assert signal.getsignal(sig) in (signal.default_int_handler, signal.SIG_DFL)  # handlers restored
    resumed = make(checkpoint_every=8)
    assert train(resumed, data, run) == 20
    assert_states_equal(straight.state_dict(), resumed.state_dict())


def test_non_finite_weights_are_never_checkpointed(tmp_path, home, data):
    run = tiny_run(tmp_path / "r", home)
    train(make(checkpoint_every=5), data, run, stop_after=10)
    ckpt = run.checkpoint_dir / CHECKPOINT
    method = make(checkpoint_every=5)
    real = method.train_step

    def poisoning_step(batch, it):  # finite losses, but the step leaves a NaN in a weight
        out = real(batch, it)
        if it == 14:  # the last step before the checkpoint at 15
            with torch.no_grad():
                next(method.G_B.parameters()).view(-1)[0] = float("nan")
        return out

    method.train_step = poisoning_step
    with pytest.raises(TrainingDiverged, match="by iteration 15: non-finite values in G_B"):
        train(method, data, run)
    assert torch.load(ckpt, weights_only=True)["iteration"] == 10
    assert torch.load(previous(ckpt), weights_only=True)["iteration"] == 5  # the one before is kept too


def test_a_corrupt_last_checkpoint_resumes_from_the_previous_one(tmp_path, home, data, caplog):
    run = tiny_run(tmp_path / "r", home)
    train(make(checkpoint_every=5), data, run, stop_after=10)
    ckpt = run.checkpoint_dir / CHECKPOINT
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # a truncated file (e.g. a full disk)
    with caplog.at_level(logging.WARNING, logger="artshift.run"):
        assert train(make(checkpoint_every=5), data, run) == 20
    assert "resuming from" in caplog.text and "last.prev.pt" in caplog.text


def _row(value, layer="inception:2048"):
    return MetricRow("fid", layer, "FID-2048", value, 10, 10, "random-init:x", "clean", "fid-1")


def test_done_needs_rows_written_in_the_same_transaction(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    store.start_run("a", kind="run", method="m", artist="monet", profile="ci", seed=0, spec_json="{}", run_dir=None,
                    data_fingerprint="x")
    with pytest.raises(ArtshiftError, match="no metric rows"):
        store.finish_run("a", "done", rows=[])
    with pytest.raises(ArtshiftError, match="non-finite"):
        store.finish_run("a", "done", rows=[_row(1.0), _row(float("nan"), "inception:768")])
    assert store.run("a")["status"] == "running" and store.metrics_for("a") == []  # nothing half-written
    store.finish_run("a", "done", rows=[_row(1.0)])
    assert store.run("a")["status"] == "done" and len(store.metrics_for("a")) == 1
    store.delete_metrics("a")
    assert store.metrics_for("a") == []


def test_an_artist_that_exists_only_under_the_data_root_can_be_run(tmp_path, home):
    from helpers_methods import write_set

    from benchmark.pipeline import runner

    root = tmp_path / "data"
    for split, seed in (("paintings/hokusai/train", 0), ("paintings/hokusai/test", 1), ("photos/train", 2),
                        ("photos/test", 3)):
        write_set(root / split, 3, seed)
    spec = runner._resolve_run("original", "hokusai", "ci", 0, {}, root, home, False)[3]
    assert spec.artist == "hokusai"
    with pytest.raises(ArtshiftError, match="unknown artist 'hokusay'"):
        runner._resolve_run("original", "hokusay", "ci", 0, {}, root, home, False)


@pytest.mark.parametrize("override,message", [
    ("checkpoint_every=0", "checkpoint_every=0 is outside"), ("lr=nan", "lr=nan is not a finite number"),
    ("crop_size=-3", "crop_size=-3 is outside"), ("n_epochs=0", "nothing would be trained"),
])
def test_unusable_overrides_are_refused_before_any_work(override, message, tmp_path):
    from benchmark.pipeline import runner

    extra = {"n_epochs_decay": "0"} if override.startswith("n_epochs") else {}
    key, value = override.split("=")
    with pytest.raises(ArtshiftError, match=message):
        runner.make_spec("cyclegan", "monet", "ci", 0, {key: value, **extra}, "fp")


def test_a_read_only_results_file_can_be_read_by_a_user_who_cannot_write_it():
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    tmp_path = Path(tempfile.mkdtemp(prefix="artshift-ro-"))  # pytest's own tmp dirs are private (0700)
    try:
        _read_only_case(tmp_path, shutil, subprocess, sys)
    finally:
        for p in (tmp_path, tmp_path / "archive"):
            if p.exists():
                p.chmod(0o755)
        shutil.rmtree(tmp_path, ignore_errors=True)


def _read_only_case(tmp_path, shutil, subprocess, sys):
    folder = tmp_path / "archive"
    folder.mkdir()
    store = Store(folder / "results.sqlite")
    store.start_run("a", kind="run", method="m", artist="monet", profile="ci", seed=0, spec_json="{}", run_dir=None,
                    data_fingerprint="x")
    store.finish_run("a", "done", rows=[_row(42.0)])
    del store
    for extra in folder.glob("results.sqlite-*"):  # checkpointed: only the main file is archived
        extra.unlink()
    before = (folder / "results.sqlite").read_bytes()
    (folder / "results.sqlite").chmod(0o444)
    folder.chmod(0o555)
    tmp_path.chmod(0o755)
    for parent in tmp_path.parents:  # the unprivileged child must be able to reach the folder
        if parent == parent.parent:
            break
        if not (parent.stat().st_mode & 0o001):
            pytest.skip(f"{parent} is not traversable by other users")
    code = ("import sys; from benchmark.core.store import Store; "
            "df = Store(sys.argv[1], read_only=True).results(); print(len(df), float(df.value[0]))")
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to drop privileges for the child")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code,
                          str(folder / "results.sqlite")], capture_output=True, text=True, cwd=repo,
                         env={**os.environ, "PYTHONPATH": repo, "HOME": str(tmp_path)}, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["1", "42.0"]
    # a writer would have failed in the same child: the file is untouched
    folder.chmod(0o755)
    assert (folder / "results.sqlite").read_bytes() == before
    with pytest.raises(ArtshiftError, match="no results store"):
        Store(tmp_path / "missing.sqlite", read_only=True)


def _tiny_root(root):
    from helpers_methods import write_set

    for split, seed in (("paintings/monet/train", 0), ("paintings/monet/test", 1), ("photos/train", 2),
                        ("photos/test", 3)):
        write_set(root / split, 3, seed)
    return root


def test_a_second_process_on_the_same_run_is_told_who_holds_it(tmp_path, home):
    import json
    import socket

    from benchmark.core.locks import RunLock
    from benchmark.pipeline import runner

    root = _tiny_root(tmp_path / "data")
    spec = runner._resolve_run("original", "monet", "ci", 0, {}, root, home, False)[3]
    lock_path = runner.run_dir_for(home, spec).parent / f".{spec.run_id}.lock"
    with RunLock(lock_path):  # another live process (this one, from the lock's point of view)
        with pytest.raises(ArtshiftError, match=f"in use by process {os.getpid()} on {socket.gethostname()}"):
            runner.execute("original", "monet", profile="ci", data_root=root, home=home, progress=False,
                           force=True)
        assert not runner.run_dir_for(home, spec).exists()  # --force deleted nothing under the live run
    # a lock left by a dead process on this host is taken over; the run then completes and unlocks
    lock_path.write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 12345, "started": 0}))
    res = runner.execute("original", "monet", profile="ci", data_root=root, home=home, progress=False)
    assert res.metrics and not lock_path.exists()


# --- corrupt caches are rebuilt with a warning, never a traceback ---------------------------------

def test_truncated_reference_stats_are_recomputed(tmp_path, caplog):
    from test_evaluate import TinyExtractor, _images

    from benchmark.features import extract as features

    ex, real = TinyExtractor(), _images(tmp_path / "real", 8, 0)
    first = features.reference_stats(ex, real, tmp_path / "cache", num_workers=0, progress=False)
    victim = sorted((tmp_path / "cache").glob("*.npz"))[0]
    victim.write_bytes(victim.read_bytes()[:50])
    with caplog.at_level(logging.WARNING, logger="artshift.features"):
        again = features.reference_stats(ex, real, tmp_path / "cache", num_workers=0, progress=False)
    assert "recomputing" in caplog.text
    for k in first:
        assert (again[k].mu == first[k].mu).all()


def test_a_corrupt_memory_bank_is_rebuilt(tmp_path, caplog):
    from helpers_bank import make_photos

    from methods.memory_bank import BankSpec, build_bank

    photos = make_photos(tmp_path / "photos", n=6, size=24)
    spec = BankSpec(image_size=24, scales=((8, 4),), index="flat")
    bank = build_bank(photos, spec, tmp_path, recall_queries=10)
    images = bank.root / "images.npy"
    images.write_bytes(images.read_bytes()[:64])
    with caplog.at_level(logging.WARNING, logger="artshift.bank"):
        again = build_bank(photos, spec, tmp_path, recall_queries=10)
    assert "rebuilding" in caplog.text and again.root == bank.root
    assert list(tmp_path.glob("banks/*.corrupt-*"))  # the bad copy is kept aside, not silently deleted


def test_a_painting_above_the_maximum_translate_size_is_downscaled_and_resized_back(tmp_path, monkeypatch, caplog):
    """Fault 6: a huge scan is translated at MAX_TRANSLATE_SIDE (longer side), the output has the
    painting's size, the log says which paintings were downscaled; smaller ones are untouched."""
    import logging

    import numpy as np
    from PIL import Image

    from baselines.original import Original
    from benchmark.data import resolution
    from benchmark.pipeline import runner

    monkeypatch.setattr(resolution, "MAX_TRANSLATE_SIDE", 16)
    rng = np.random.default_rng(0)
    big, small = tmp_path / "big.png", tmp_path / "small.png"
    Image.fromarray(rng.integers(0, 256, (20, 40, 3), dtype=np.uint8)).save(big)
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(small)
    method = Original(Original.default_config("ci"))
    with caplog.at_level(logging.WARNING, logger="artshift"):
        outs = runner.translate_all(method, [(big, "big.png"), (small, "small.png")], tmp_path / "out", 0, False,
                                    progress=False)
    with Image.open(big) as im:
        want = im.convert("RGB").resize((16, 8), Image.Resampling.BICUBIC).resize((40, 20), Image.Resampling.BICUBIC)
    got_big, got_small = (np.asarray(Image.open(o).convert("RGB")) for o in outs)
    assert got_big.shape == (20, 40, 3) and np.array_equal(got_big, np.asarray(want))
    assert np.array_equal(got_small, np.asarray(Image.open(small).convert("RGB")))  # under the limit: as is
    assert "big.png (40x20 -> 16x8)" in caplog.text and "small.png" not in caplog.text
    assert resolution.work_size(4000, 3000, max_side=1024) == (1024, 768)
    assert resolution.work_size(256, 256, max_side=1024) == (256, 256)
