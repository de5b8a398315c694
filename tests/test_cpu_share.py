"""Bench jobs on one machine split its cores (issue 25 §7): a solo job keeps every core, a second
job's arrival halves each one's torch threads, its end gives them back; a thread count the user
chose is never changed; a killed job's entry stops counting."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from benchmark.core import cpu_share
from benchmark.core.cpu_share import CpuShare


@pytest.fixture
def jobs(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTSHIFT_JOBS_DIR", str(tmp_path / "jobs"))
    monkeypatch.delenv("ARTSHIFT_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu_share, "CHECK_EVERY_S", 0.0)
    before = torch.get_num_threads()
    yield tmp_path / "jobs"
    torch.set_num_threads(before)


def _other_job(folder):
    """Another bench job: a process registered in the same folder, alive until killed."""
    code = ("import sys, time; from benchmark.core.cpu_share import CpuShare\n"
            "with CpuShare(cpus=2):\n    print('in', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, "ARTSHIFT_JOBS_DIR": str(folder)})
    assert proc.stdout.readline().strip() == "in"
    return proc


def test_two_jobs_split_the_cores_and_a_solo_job_gets_them_back(jobs):
    torch.set_num_threads(1)
    with CpuShare(cpus=2) as share:
        assert torch.get_num_threads() == 2 and cpu_share.live_jobs(jobs) == 1
        other = _other_job(jobs)
        try:
            assert share.rebalance() == 1 and torch.get_num_threads() == 1
        finally:
            other.kill()  # kill -9 style: no clean exit, its entry stays until someone looks
            other.wait()
        assert share.rebalance() == 2 and torch.get_num_threads() == 2
        assert len(list(jobs.iterdir())) == 1  # the dead job's entry was removed
    assert not any(jobs.iterdir())  # ours is gone once the job ends
    assert torch.get_num_threads() == 1  # and the process gets back the threads it had


def test_a_thread_count_the_user_chose_wins(jobs, monkeypatch):
    other = _other_job(jobs)
    try:
        with CpuShare(3, cpus=2) as share:
            assert torch.get_num_threads() == 3 and share.rebalance() == 3
        monkeypatch.setenv("ARTSHIFT_THREADS", "2")
        with CpuShare(cpus=2) as share:
            assert share.rebalance() == 2
        monkeypatch.delenv("ARTSHIFT_THREADS")
        with CpuShare(cpus=2) as share:  # nothing chosen: the share
            assert share.rebalance() == 1
    finally:
        other.kill()
        other.wait()


def test_training_rebalances_inside_its_loop(jobs, monkeypatch, tmp_path):
    """The train loop asks for its share every iteration (cheap: the folder is read at most every
    few seconds), so a job that started alone drops to its share when a second one arrives."""
    from helpers_methods import tiny_data, tiny_run

    from benchmark.core.registry import methods
    from benchmark.pipeline.training import train

    calls = []
    monkeypatch.setattr(cpu_share, "rebalance", lambda: calls.append(1))
    method = methods.get("cyclegan")(methods.get("cyclegan").default_config("ci"), "cpu")
    assert train(method, tiny_data(tmp_path / "data"), tiny_run(tmp_path / "run", tmp_path / "home")) == 20
    assert len(calls) == 20
