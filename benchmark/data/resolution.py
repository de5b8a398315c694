"""One effective resolution per table: the translate size of each profile.

Why it exists: at the smoke profile the generators were trained on 64 px crops and applied to
256 px paintings, Gatys optimised at 128 px and was upsampled, and "original" stayed native,
so the table ranked blur as much as translation. The policy makes every set in one table
carry the same resampling:

- each profile has one translate side (the shorter side, in pixels): ``ci`` 32 and ``smoke``
  64, the training crop size, as the CycleGAN reference tests at its crop size;
- every method, "original" included, translates the painting resized (bicubic, aspect kept) to
  that side, and the harness resizes the output back to the painting's size (bicubic);
- the reference photos go through the same down-up resize before any feature is extracted.

``quick`` and ``paper`` have no side: everything is native (the 256 px releases), as published.
Whatever the side, a painting whose longer side would exceed ``MAX_TRANSLATE_SIDE`` is
translated at that limit and resized back (a 6000 px scan would otherwise need tens of GB in a
ResNet generator, or hours of Gatys). The side is part of a run's spec, so changing it is a
new run id, and it is written to ``spec.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from benchmark import data
from benchmark.core.atomic import atomic_path
from benchmark.core.download import sha256_file
from benchmark.core.errors import ArtshiftError

log = logging.getLogger("artshift.resolution")

TRANSLATE_SIDE: dict[str, int | None] = {"ci": 32, "smoke": 64, "cpu": 64, "quick": None, "paper": None}
MAX_TRANSLATE_SIDE = 1024
RESAMPLE = Image.Resampling.BICUBIC  # PIL's, which low-pass filters when it downscales


def side_for(profile: str) -> int | None:
    """The profile's translate side (None: native size)."""
    return TRANSLATE_SIDE.get(profile)


def work_size(width: int, height: int, side: int | None = None, max_side: int | None = None) -> tuple[int, int]:
    """The size an image of ``width x height`` is translated at: shorter side ``side`` (None: its
    own), then, if the longer side exceeds ``max_side`` (default ``MAX_TRANSLATE_SIDE``), scaled down to it."""
    max_side = MAX_TRANSLATE_SIDE if max_side is None else max_side
    w, h = width, height
    if side is not None and min(w, h) != side:
        scale = side / min(w, h)
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
    if max(w, h) > max_side:
        scale = max_side / max(w, h)
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
    return w, h


def down_up(img: Image.Image, side: int | None, max_side: int | None = None) -> Image.Image:
    """What the policy does to an image that is not translated (a reference photo, "original"):
    resized to the translate size and back to its own (the image itself when they are equal)."""
    size = work_size(img.width, img.height, side, max_side)
    if size == img.size:
        return img
    return img.resize(size, RESAMPLE).resize(img.size, RESAMPLE)


def describe(side: int | None) -> dict[str, Any]:
    """The policy as recorded in a run's ``spec.json``."""
    return {"side": side, "max_side": MAX_TRANSLATE_SIDE, "resample": "bicubic (PIL), aspect ratio kept",
            "policy": ("native size" if side is None else
                       f"shorter side {side} px, output resized back to the painting's size; the reference "
                       "photos resized down and up the same way"),
            "larger": "longer side above max_side: downscaled, translated, resized back"}


def common_side(made_at: Sequence[tuple[str, int | None]], default: int | None) -> int | None:
    """The one translate size of the runs compared (``(label, side)`` each), which the photos
    (and the paintings standing for "original") are then resized to; ``default`` when there are
    none. Runs made at different sizes are not comparable: one error naming them."""
    sides: dict[int | None, list[str]] = {}
    for label, side in made_at:
        sides.setdefault(side, []).append(label)
    if len(sides) > 1:
        listed = "; ".join(f"{'native' if k is None else f'{k} px'}: {', '.join(v)}" for k, v in sides.items())
        raise ArtshiftError(f"the runs were translated at different sizes ({listed}), so they are not comparable",
                            hint="pass runs made at one size (one profile, made by the same artshift version), "
                                 "or re-run the older ones")
    return next(iter(sides)) if sides else default


def reference_copies(paths: Sequence[Path], side: int | None, cache_dir: Path, *,
                     skip_bad: bool = False) -> list[Path]:
    """The reference images as the policy sees them: ``paths`` themselves at native size, else
    their down-up copies (PNG, cached under ``cache_dir`` by content and side, written atomically).

    A copy's statistics are then cached like any image set's (by content), so native and
    down-up references never share a cache entry. Unreadable files raise ``BadImageError``, or
    are left out with ``skip_bad``, as feature extraction would do.
    """
    if side is None:
        return [Path(p) for p in paths]
    folder = Path(cache_dir) / f"side{side}-max{MAX_TRANSLATE_SIDE}"
    folder.mkdir(parents=True, exist_ok=True)
    out, bad = [], []
    for p in paths:
        dst = folder / f"{sha256_file(Path(p))[:32]}.png"
        if not dst.is_file():
            try:
                img = data.load_image(Path(p))
            except data.BadImageError:
                if not skip_bad:
                    raise
                bad.append(p)
                continue
            with atomic_path(dst, suffix=".tmp.png") as tmp:
                down_up(img, side).save(tmp, format="PNG")
        out.append(dst)
    if bad:
        log.warning("left out %d unreadable reference images: %s", len(bad), ", ".join(map(str, bad)))
    return out
