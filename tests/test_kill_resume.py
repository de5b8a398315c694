"""Kill and resume, for real: SIGKILL a training process at seeded points (one of them between a
checkpoint's temporary write and its rename), resume each time, and compare the final weights
bit for bit with an uninterrupted run (CPU, deterministic algorithms)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers_methods import assert_states_equal

from benchmark.pipeline.training import CHECKPOINT

pytestmark = pytest.mark.slow
WORKER = Path(__file__).with_name("helpers_killworker.py")
REPO = Path(__file__).resolve().parents[1]
KILL_SEED = 20261126


def _start(method, data, run_dir, home, *extra):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(WORKER), method, str(data), str(run_dir), str(home), "3", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def _run_until(proc, marker: str) -> None:
    """Read the child's progress until ``marker``, then SIGKILL it; fail if it ended first."""
    for line in proc.stdout:
        if line.strip() == marker:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            return
    proc.wait(timeout=60)
    pytest.fail(f"the worker ended before {marker!r}: {proc.stderr.read()[-3000:]}")


def _finish(proc) -> None:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0 and "finished 20" in out, err[-3000:]


@pytest.mark.parametrize("method", ["cyclegan", "ours", "cut"])
def test_sigkill_at_seeded_points_then_resume_is_bit_identical(method, tmp_path, home):
    data = tmp_path / "data"
    _finish(_start(method, data, tmp_path / "straight", home))

    kills = sorted(random.Random(f"{KILL_SEED}-{method}").sample(range(2, 19), 3))
    print(f"{method}: SIGKILL after iterations {kills} (seed {KILL_SEED}) and once before a checkpoint rename")
    run_dir = tmp_path / "killed"
    for it in kills:
        _run_until(_start(method, data, run_dir, home), f"iter {it}")
    # the last kill lands between a checkpoint's temporary write and its rename
    _run_until(_start(method, data, run_dir, home, "--pause-before-rename"), "rename")
    # last.pt is still the previous, complete checkpoint (a leftover temporary file is never read)
    assert torch.load(run_dir / "checkpoints" / CHECKPOINT, weights_only=True)["iteration"] < 20
    _finish(_start(method, data, run_dir, home))

    a = torch.load(tmp_path / "straight" / "checkpoints" / CHECKPOINT, weights_only=True)
    b = torch.load(run_dir / "checkpoints" / CHECKPOINT, weights_only=True)
    assert a["iteration"] == b["iteration"] == 20
    assert_states_equal(a["method"], b["method"])
    # and byte for byte: checkpoints are serialised in memory, so the same state has the same sha256
    straight, killed = (p / "checkpoints" / CHECKPOINT for p in (tmp_path / "straight", run_dir))
    assert straight.read_bytes() == killed.read_bytes()
