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
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.errors import ArtshiftError
from benchmark.method import Method, RunContext, TrainData

CHECKPOINT = "last.pt"


class TrainingDiverged(ArtshiftError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


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


def save_atomic(obj: Any, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise ArtshiftError(f"cannot read checkpoint {path}: {exc}",
                            hint="delete it to restart training from the previous checkpoint or from scratch") from exc


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
    if ckpt.exists():
        state = load_checkpoint(ckpt)
        method.load_state_dict(state["method"])
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
            if done % method.checkpoint_every == 0 or done == end:
                save_atomic({"iteration": done, "method": method.state_dict()}, ckpt)
    finally:
        bar.close()
    return end
