"""Tiny generated painting/photo sets and run contexts for method tests (no real data needed)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmark.core.method import RunContext, TrainData


def smooth_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random colour gradient plus noise: structured enough to look like an image, never constant."""
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    base = rng.uniform(0, 255, 3)
    slope = rng.uniform(-120, 120, (2, 3))
    img = base + yy[..., None] * slope[0] + xx[..., None] * slope[1] + rng.normal(0, 20, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_set(folder: Path, n: int, seed: int, sizes: tuple[int, ...] = (32, 40, 48)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"{i:03d}.png"
        Image.fromarray(smooth_image(rng, sizes[i % len(sizes)])).save(path)
        paths.append(path)
    return paths


def tiny_data(root: Path, n_paintings: int = 6, n_photos: int = 6, seed: int = 0) -> TrainData:
    """~6 paintings and ~6 photos of 32-48 px as PNG files under ``root``."""
    return TrainData("cezanne", write_set(root / "paintings", n_paintings, seed),
                     write_set(root / "photos", n_photos, seed + 1))


def tiny_run(run_dir: Path, home: Path, seed: int = 0, deterministic: bool = False) -> RunContext:
    return RunContext(run_dir=run_dir, home=home, seed=seed, deterministic=deterministic,
                      device=torch.device("cpu"), progress=False, log=logging.getLogger("artshift.test"))


def painting_batch(seed: int = 0, size: int = 64, n: int = 2) -> torch.Tensor:
    """Paintings-like input for translate(): [n, 3, size, size] in [-1, 1]."""
    rng = np.random.default_rng(seed)
    arr = np.stack([smooth_image(rng, size) for _ in range(n)])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def flat_state(state, prefix=""):
    """Every tensor and scalar of a nested state dict, by dotted key."""
    out = {}
    if isinstance(state, dict):
        for k, v in state.items():
            out.update(flat_state(v, f"{prefix}{k}."))
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            out.update(flat_state(v, f"{prefix}{i}."))
    else:
        out[prefix.rstrip(".")] = state
    return out


def assert_states_equal(a, b):
    fa, fb = flat_state(a), flat_state(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        if torch.is_tensor(fa[k]):
            assert torch.equal(fa[k], fb[k]), f"{k} differs after resume"
        else:
            assert fa[k] == fb[k], f"{k} differs after resume"


def check_killed_run_resumes(make, data, tmp_path: Path, home: Path, seed: int, monkeypatch):
    """The exact-resume property every iterative method shares: a run killed after 6 of 10
    iterations and resumed ends with the same weights and final checkpoint as one trained
    straight through; refitting the finished run then loads it without ``prepare`` (no image is
    read). Returns (straight, the reloaded finished run) for each method's own checks."""
    import pytest

    from benchmark.pipeline.training import CHECKPOINT, train

    straight = make()
    assert train(straight, data, tiny_run(tmp_path / "a", home, seed=seed, deterministic=True)) == 10
    run = tiny_run(tmp_path / "b", home, seed=seed, deterministic=True)
    assert train(make(), data, run, stop_after=6) == 6
    resumed = make()
    assert train(resumed, data, run) == 10
    assert_states_equal(straight.state_dict(), resumed.state_dict())
    assert_states_equal(torch.load(tmp_path / "a" / "checkpoints" / CHECKPOINT, weights_only=True),
                        torch.load(run.checkpoint_dir / CHECKPOINT, weights_only=True))
    again = make()
    monkeypatch.setattr(again, "prepare", lambda *a: pytest.fail("prepare() called on a finished run"))
    again.fit(data, run)
    return straight, again, run
