"""Torch threads for a job that may share the machine's cores with other bench jobs (issue 25 §7).

Why: measured on the project's 2-core machine (docs/benchmarks.md, `benchmarks/omp_pair.py`),
two training jobs at 2 threads each fall to 24-26% of a solo job's speed (OpenMP threads spin
against each other), while at 1 thread each they keep 64-68%. OMP_WAIT_POLICY=PASSIVE rescues
the pair (50%) but makes a solo job 2.9x slower, so it is not used. Hence: every bench job
registers itself in a per-user folder of this machine, and takes ``cores // (bench jobs alive)``
threads (at least 1), re-checked every few seconds while it trains, so a solo job keeps every
core and two jobs split them as soon as the second one starts, and get them back when it ends.

Only bench jobs are counted (other programs are not visible here). A thread count the user
chose wins and is never changed: ``--threads N``, ``ARTSHIFT_THREADS``, or ``OMP_NUM_THREADS``
in the environment (as sweeps set per cell).
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from pathlib import Path

import torch

from benchmark.core.locks import pid_alive

log = logging.getLogger("artshift.threads")

CHECK_EVERY_S = 5.0


def jobs_dir() -> Path:
    """Machine-wide (per user): jobs in other homes compete for the same cores."""
    return Path(os.environ.get("ARTSHIFT_JOBS_DIR") or Path(tempfile.gettempdir()) / f"artshift-jobs-{os.getuid()}")


def machine_cpus() -> int:
    """The cores this process may run on (a cgroup / taskset limit counts, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def chosen_threads(threads: int | None = None) -> int | None:
    """The user's own thread count, if any: ``threads`` (``--threads``), ``ARTSHIFT_THREADS``, or
    ``OMP_NUM_THREADS`` (torch already starts with it)."""
    if threads is not None:
        return threads
    for var in ("ARTSHIFT_THREADS", "OMP_NUM_THREADS"):
        text = os.environ.get(var, "").strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
    return None


def live_jobs(folder: Path | None = None) -> int:
    """Bench jobs alive on this machine (this one included once registered); dead entries removed."""
    folder = folder or jobs_dir()
    n = 0
    try:
        entries = list(folder.iterdir())
    except OSError:
        return 0
    for entry in entries:
        host, _, pid = entry.name.rpartition("-")
        if host != socket.gethostname() or not pid.isdigit():
            continue
        if pid_alive(int(pid)):
            n += 1
        else:  # a killed job: its entry goes, so it stops taking a share
            entry.unlink(missing_ok=True)
    return n


class CpuShare:
    """``with CpuShare(threads): ...`` around a job; ``rebalance()`` inside its loops (cheap: it
    looks at the folder at most every ``CHECK_EVERY_S`` seconds)."""

    active: CpuShare | None = None

    def __init__(self, threads: int | None = None, *, cpus: int | None = None):
        self.fixed = chosen_threads(threads)
        self.cpus = cpus or machine_cpus()
        self.entry = jobs_dir() / f"{socket.gethostname()}-{os.getpid()}"
        self._checked = 0.0
        self._outer: CpuShare | None = None
        self._registered = False
        self._before = 1

    def __enter__(self) -> CpuShare:
        self._outer, CpuShare.active = CpuShare.active, self
        self._before = torch.get_num_threads()  # restored on exit: the caller's process lives on
        if self.fixed is not None:
            torch.set_num_threads(self.fixed)
            return self
        try:
            self.entry.parent.mkdir(parents=True, exist_ok=True)
            self.entry.touch()
            self._registered = True
        except OSError as exc:  # an unwritable temp folder: run with torch's default, say so once
            log.warning("cannot register in %s (%s): threads are not shared with other bench jobs", self.entry.parent, exc)
        self.rebalance(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        CpuShare.active = self._outer
        torch.set_num_threads(self._before)
        if self._registered and (self._outer is None or not self._outer._registered):
            self.entry.unlink(missing_ok=True)

    def rebalance(self, force: bool = False) -> int:
        """Set torch's threads to this job's share now; returns the thread count."""
        if self.fixed is not None or not self._registered:
            return torch.get_num_threads()
        now = time.monotonic()
        if not force and now - self._checked < CHECK_EVERY_S:
            return torch.get_num_threads()
        self._checked = now
        jobs = max(1, live_jobs(self.entry.parent))
        want = max(1, self.cpus // jobs)
        if want != torch.get_num_threads():
            log.info("%d bench job(s) on %d cores: %d torch thread(s) for this one", jobs, self.cpus, want)
            torch.set_num_threads(want)
        return want


def rebalance() -> None:
    """Re-check the active job's share (a no-op outside ``CpuShare``)."""
    if CpuShare.active is not None:
        CpuShare.active.rebalance()
