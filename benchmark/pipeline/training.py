"""The training loop shared by every iterative method (CycleGAN, CUT/FastCUT, ours).

Why one loop: checkpointing, exact resume, NaN detection and progress are the same for all
GAN-style methods, and getting them right once is what makes ``bench run`` resumable.

Exact resume without saving RNG state: every iteration reseeds Python, NumPy and torch from
``(seed, iteration)`` and draws its batch from a pure function of ``(seed, iteration)``, so
iteration ``i`` does the same work whether or not the process was restarted before it.
Anything else with state (networks, optimisers, schedulers, image pools) is in the
method's ``state_dict``, which must hold only tensors and plain Python values so it loads
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import abc
import hashlib
import io
import logging
import math
import os
import random
import signal
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.core.atomic import DiskFullError, atomic_path, disk_full
from benchmark.core.errors import ArtshiftError
from benchmark.core.method import Method, RunContext, TrainData

CHECKPOINT = "last.pt"


class TrainingDiverged(ArtshiftError):
    """A loss or a weight became NaN or infinite; the last good checkpoint is kept."""


class RunInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM (Ctrl-C, a cluster preemption) stopped training at an iteration boundary,
    after a checkpoint of the last finished iteration was written."""


class _StopSignals:
    """Turn SIGINT/SIGTERM into a flag that the loop checks between iterations.

    Why: an exception raised in the middle of an optimiser step leaves the networks half
    updated, so the only consistent state to save is the one at an iteration boundary. A second
    Ctrl-C while the checkpoint is written stops at once. Only the main thread can install
    handlers; elsewhere (e.g. a worker thread) signals keep their default behaviour.
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def iteration_seed(seed: int, iteration: int) -> int:
    return (seed * 1_000_003 + iteration * 7_919 + 17) % 2**63


def set_deterministic(flag: bool) -> None:
    if flag:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(flag, warn_only=False)
    torch.backends.cudnn.benchmark = not flag


def serialise(obj: Any) -> bytes:
    """``torch.save`` into memory: the same state gives the same bytes (a file's name would end up
    inside the zip, so a temporary name made two equal checkpoints differ)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_atomic(obj: Any, path: Path) -> None:
    """Serialise in memory, write to a temporary file in the same folder, fsync, then rename over
    the target (a full disk leaves the old file and says which folder is full)."""
    with atomic_path(path, fsync=True) as tmp:
        tmp.write_bytes(serialise(obj))


def previous(path: Path) -> Path:
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def readable(path: Path) -> bool:
    """Whether ``path`` is a whole torch checkpoint: its zip directory and every record's CRC check out."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, RuntimeError):
        return False


def save_checkpoint(obj: Any, path: Path) -> None:
    """Write ``obj`` to ``path`` atomically, keeping the checkpoint it replaces as ``<name>.prev.pt``
    (a hard link: no copy), so a checkpoint that turns out bad never leaves the run without a good one.

    The new file is read back and must load (same sha256 as the bytes serialised, a whole zip,
    ``torch.load`` of it works) before it becomes ``path``; the file it replaces becomes the
    previous one only when it is itself readable, so a damaged ``last.pt`` never overwrites a
    good ``last.prev.pt``.
    """
    payload = serialise(obj)
    digest = hashlib.sha256(payload).hexdigest()
    with atomic_path(path, fsync=True) as tmp:
        try:
            tmp.write_bytes(payload)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        except OSError as exc:
            if disk_full(exc):
                raise DiskFullError(path, len(payload), exc.strerror) from None
            raise
        back = hashlib.sha256(tmp.read_bytes()).hexdigest()
        try:
            torch.load(tmp, map_location="cpu", weights_only=True, mmap=True)
            loads = back == digest and readable(tmp)
        except Exception:  # noqa: BLE001 - any failure to load is the answer
            loads = False
        if not loads:
            raise ArtshiftError(f"checkpoint {path} did not read back after writing it (sha256 {back[:12]}, wrote "
                                f"{digest[:12]}); the previous checkpoint is kept",
                                hint=f"check the disk holding {path.parent}, then run the same command again")
        if path.exists():
            if readable(path):
                link = path.with_name(f".{previous(path).name}.{os.getpid()}.tmp")
                link.unlink(missing_ok=True)
                os.link(path, link)
                os.replace(link, previous(path))
            else:
                logging.getLogger("artshift.run").warning(
                    "checkpoint %s is unreadable: not keeping it as %s (that one stays)", path, previous(path).name)


def load_checkpoint(path: Path, *, fallback: bool = True) -> dict[str, Any]:
    """The checkpoint at ``path``; when it cannot be read, its previous one (``fallback``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        prev = previous(path)
        if fallback and prev.exists():
            logging.getLogger("artshift.run").warning("cannot read checkpoint %s (%s): resuming from %s", path,
                                                      str(exc).splitlines()[0], prev)
            try:
                return torch.load(prev, map_location="cpu", weights_only=True)
            except Exception:
                pass
        raise ArtshiftError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0] if str(exc) else exc}",
                            hint="delete it to restart training from the previous checkpoint or from scratch") from exc


def _non_finite(state: Any, prefix: str = "") -> list[str]:
    """Names of floating tensors in a (nested) state dict that hold NaN or inf."""
    if torch.is_tensor(state):
        return [prefix] if state.is_floating_point() and not bool(torch.isfinite(state).all()) else []
    if isinstance(state, dict):
        return [n for k, v in state.items() for n in _non_finite(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(state, (list, tuple)):
        return [n for i, v in enumerate(state) for n in _non_finite(v, f"{prefix}[{i}]")]
    return []


class IterativeMethod(Method):
    """A method trained by ``train_step`` over a fixed number of iterations.

    Subclasses build networks and optimisers in ``__init__`` and implement ``prepare``
    (load training images), ``batch`` (a pure function of seed and iteration),
    ``train_step`` (one optimisation step, returning its loss terms), ``state_dict`` /
    ``load_state_dict`` and ``total_iterations``.
    """

    checkpoint_every: int = 500

    def setup(self, data: TrainData, run: RunContext) -> None:
        """Cheap work before ``total_iterations`` and the checkpoint load (no image loading).

        Why: a schedule counted in epochs needs the training set's size, and initial weights
        must come from ``run.seed`` (the method is built before any seeding); a resumed run then
        overwrites them from the checkpoint. Called on every fit, even a finished one.
        """

    @abc.abstractmethod
    def prepare(self, data: TrainData, run: RunContext) -> None:
        """Load what training needs (images, banks). Called once per fit before the loop."""

    @abc.abstractmethod
    def total_iterations(self) -> int: ...

    @abc.abstractmethod
    def batch(self, seed: int, iteration: int) -> Any: ...

    @abc.abstractmethod
    def train_step(self, batch: Any, iteration: int) -> dict[str, torch.Tensor]: ...

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def fit(self, data: TrainData, run: RunContext) -> None:
        train(self, data, run)


def _check_finite(losses: dict[str, torch.Tensor], iteration: int, ckpt: Path) -> dict[str, float]:
    values = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in losses.items()}
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        terms = ", ".join(f"{k}={v}" for k, v in values.items())
        kept = f"last good checkpoint kept at {ckpt}" if ckpt.exists() else "no checkpoint had been written yet"
        raise TrainingDiverged(
            f"training diverged at iteration {iteration}: non-finite loss in {', '.join(bad)} ({terms}); {kept}",
            hint="lower the learning rate (--set lr=...) or change the seed, then run again to resume")
    return values


def _save(method: IterativeMethod, done: int, ckpt: Path) -> None:
    """Checkpoint after iteration ``done``, unless an optimiser step left non-finite weights."""
    state = method.state_dict()
    bad = _non_finite(state)
    if bad:
        kept = f"last good checkpoint kept at {ckpt}" if ckpt.exists() else "no checkpoint had been written yet"
        raise TrainingDiverged(f"training diverged by iteration {done}: non-finite values in {', '.join(bad[:3])}"
                               f"{' and more' if len(bad) > 3 else ''} (the losses were finite); {kept}",
                               hint="lower the learning rate (--set lr=...) or change the seed, then run again")
    save_checkpoint({"iteration": done, "method": state, "method_name": method.name}, ckpt)


def _restore(method: IterativeMethod, state: dict[str, Any], ckpt: Path) -> None:
    """Load a checkpoint into ``method``, or say plainly that it belongs to another method/config."""
    owner = state.get("method_name")
    if owner is not None and owner != method.name:
        raise ArtshiftError(f"checkpoint {ckpt} was written by {owner}, not {method.name}",
                            hint="the run folder was copied or mixed up: delete it, or re-run with --force")
    try:
        method.load_state_dict(state["method"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise ArtshiftError(f"checkpoint {ckpt} does not fit this {method.name} configuration "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})",
                            hint="it comes from another method or other settings: delete the run folder or "
                                 "re-run with --force") from None


def train(method: IterativeMethod, data: TrainData, run: RunContext,
          stop_after: int | None = None) -> int:
    """Run (or resume) ``method``'s training in ``run.run_dir``; returns the iterations done.

    ``stop_after`` ends the loop after that many iterations in this call (used by tests to
    simulate a killed run); the checkpoint then holds exactly that state.
    """
    set_deterministic(run.deterministic)
    ckpt = run.checkpoint_dir / CHECKPOINT
    method.setup(data, run)
    total = method.total_iterations()
    start = 0
    if run.read_only:  # a finished run: load its final state, never train or write
        if not ckpt.exists():
            raise ArtshiftError(f"finished run {run.run_dir} has no checkpoint {ckpt}")
        state = load_checkpoint(ckpt, fallback=False)
        _restore(method, state, ckpt)
        if int(state["iteration"]) < total:
            raise ArtshiftError(f"checkpoint {ckpt} holds iteration {int(state['iteration'])} of {total}, not the "
                                "finished run's final state")
        return int(state["iteration"])
    if ckpt.exists():
        state = load_checkpoint(ckpt)
        _restore(method, state, ckpt)
        start = int(state["iteration"])
        if start >= total:
            return start
        run.log.info("resuming %s from iteration %d of %d (%s)", method.name, start, total, ckpt)
    method.prepare(data, run)
    end = total if stop_after is None else min(total, start + stop_after)
    log_path = run.run_dir / "log.txt"
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=start, desc=f"train {method.name}", disable=not run.progress,
               dynamic_ncols=True, leave=False)
    t0 = time.perf_counter()
    try:
        with _StopSignals() as stop:
            for it in range(start, end):
                s = iteration_seed(run.seed, it)
                seed_everything(s)
                losses = method.train_step(method.batch(run.seed, it), it)
                values = _check_finite(losses, it, ckpt)
                done = it + 1
                bar.update(1)
                if done % 10 == 0 or done == end:
                    bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()}, refresh=False)
                if done % 100 == 0 or done == end:
                    with open(log_path, "a") as fh:
                        fh.write(f"iter {done}/{total} " + " ".join(f"{k}={v:.5f}" for k, v in values.items())
                                 + f" elapsed={time.perf_counter() - t0:.1f}s\n")
                if done % method.checkpoint_every == 0 or done == end or stop.received:
                    _save(method, done, ckpt)
                if stop.received:
                    raise RunInterrupted(f"{stop.received}: training stopped after iteration {done} of {total}; "
                                         f"checkpoint written to {ckpt}; run the same command again to resume")
    finally:
        bar.close()
    return end
