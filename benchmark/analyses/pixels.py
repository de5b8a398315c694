"""The labelled images as the downstream classifiers see them: uint8 pixels resized to a square."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmark import data


def load_pixels(paths_: Sequence[Path], size: int) -> torch.Tensor:
    """uint8 [n, 3, size, size]: each image resized (antialiased) to a square, as the classifier sees it."""
    out = np.empty((len(paths_), size, size, 3), dtype=np.uint8)
    for i, p in enumerate(paths_):
        out[i] = np.asarray(data.load_image(Path(p)).resize((size, size), Image.Resampling.BILINEAR))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
