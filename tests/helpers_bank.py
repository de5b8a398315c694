"""Generated photo sets and label masks for the memory-bank tests (no dataset needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_photos(folder: Path, n: int = 12, size: int = 24, seed: int = 0, prefix: str = "photo") -> list[Path]:
    """Smooth random images (blurred noise + gradients) so patches are not all alike."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        base = rng.uniform(0, 255, size=(3,))
        grad = rng.uniform(-120, 120, size=(3, 2))
        img = base[:, None, None] + grad[:, 0, None, None] * yy + grad[:, 1, None, None] * xx
        img = img + rng.normal(0, 25, size=(3, size, size))
        arr = np.clip(img.transpose(1, 2, 0), 0, 255).astype(np.uint8)
        p = folder / f"{prefix}_{i:03d}.png"
        Image.fromarray(arr, "RGB").save(p)
        paths.append(p)
    return paths


def make_masks(folder: Path, photos: list[Path], size: int, labels=(0, 1, 2), seed: int = 0,
               skip: tuple[int, ...] = ()) -> Path:
    """Label maps named <stem>.png: horizontal bands of the given labels (random band heights)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(photos):
        if i in skip:
            continue
        cuts = np.sort(rng.integers(size // 5, size - size // 5, size=len(labels) - 1))
        lab = np.zeros((size, size), dtype=np.uint8)
        edges = [0, *cuts.tolist(), size]
        for c, (a, b) in zip(labels, zip(edges[:-1], edges[1:])):
            lab[a:b] = c
        Image.fromarray(lab, "L").save(folder / f"{Path(p).stem}.png")
    return folder
