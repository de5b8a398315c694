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
