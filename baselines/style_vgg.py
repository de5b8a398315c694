"""The frozen VGG-19 that the feed-forward style-transfer methods (``adain``, ``johnson``) share.

One policy with Gatys (``baselines.gatys``), reused rather than re-decided:

- ``weights="pretrained"``: torchvision's ImageNet VGG-19, sha256-checked through
  ``benchmark.features.weights`` (``gatys.pretrained_vgg19``: the same error and hint when missing);
- ``weights="random"``: the seeded fan-in Kaiming VGG-19 of ``benchmark.features.vgg.random_vgg19``,
  labelled ``random-init:seed<N>:sd-<hash>`` (a warning says it is not comparable);
- ``weights="auto"`` (ci/smoke): pretrained when present or downloadable, otherwise that
  random-init network with a warning; a present but corrupt file is an error, never a silent
  fallback.

With ``normalise`` the convolutions are rescaled to mean post-ReLU activation 1 on a fixed,
evenly spaced set of training photos (Gatys sec. 2; ``gatys.mean_activation_scales``), and the
id gains ``:meannorm-<hash>``. The rescaling factors are plain tensors, so a method stores them in
its checkpoint and a resumed or reloaded run applies the very same factors without reading a
photo. The stack is truncated after the deepest layer a method uses (the layers before it are
unchanged, so the id of the full network still names them).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from baselines.gatys import _to_float, apply_scales_, mean_activation_scales, pretrained_vgg19, scales_hash
from benchmark.core.errors import ArtshiftError
from benchmark.data import BadImageError, load_image, offline
from benchmark.features import weights as weight_files
from benchmark.features.vgg import VGG19_LAYERS, VGGFeatures, random_vgg19

WEIGHTS = ("pretrained", "random", "auto")


def load_vgg19(who: str, weights: str, random_init_seed: int, allow_download: bool, home: Path | None,
               log: logging.Logger | None, last_layer: str) -> tuple[VGGFeatures, str]:
    """The VGG-19 stack up to ``last_layer`` under Gatys' weight policy, and its id."""
    if weights not in WEIGHTS:
        raise ArtshiftError(f"{who}: unknown weights {weights!r}",
                            hint="use weights=pretrained (ImageNet VGG-19), weights=random (labelled) or weights=auto")
    if weights == "auto":
        try:
            vgg, wid = pretrained_vgg19(not offline(), home)
        except ArtshiftError as exc:
            if weight_files.path_of("vgg19", home).is_file():
                raise  # a present but corrupt file is an error, never a silent fallback
            vgg, wid = random_vgg19(random_init_seed)
            if log is not None:
                log.warning("%s: ImageNet VGG-19 unavailable (%s); using a RANDOM-INIT VGG-19 (%s). Its translations "
                            "are not comparable to the pretrained baseline", who, str(exc).splitlines()[0], wid)
    elif weights == "random":
        vgg, wid = random_vgg19(random_init_seed)
        if log is not None:
            log.warning("%s: random-init VGG-19 (%s) as asked (weights=random): its translations are not comparable "
                        "to the pretrained baseline", who, wid)
    else:
        vgg, wid = pretrained_vgg19(allow_download, home)
    last = VGG19_LAYERS[last_layer]
    out = VGGFeatures(nn.Sequential(*list(vgg.features)[:last + 1]))
    return out, wid


def use_reflection_padding_(vgg: VGGFeatures) -> None:
    """Every 3x3 convolution pads by reflection instead of zeros (the AdaIN reference's VGG)."""
    for m in vgg.features:
        if isinstance(m, nn.Conv2d):
            m.padding_mode = "reflect"


def calibration_photos(photos: list[Path], n: int) -> list[Path]:
    """``n`` evenly spaced photos of the sorted list, independent of the run seed (as Gatys)."""
    photos = sorted(Path(p) for p in photos)
    n = min(n, len(photos))
    return [photos[(i * len(photos)) // n] for i in range(n)] if n else []


def activation_scales(who: str, vgg: VGGFeatures, paths: list[Path], size: int, skip_bad: bool,
                      log: logging.Logger) -> dict[int, torch.Tensor]:
    """Gatys' mean-activation factors of ``vgg`` over ``paths`` resized to ``size`` x ``size``."""
    images = []
    for p in paths:
        try:
            img = load_image(p)
        except BadImageError:
            if not skip_bad:
                raise
            log.warning("%s: skipping bad photo %s", who, p)
            continue
        images.append(F.interpolate(_to_float([img]), size=(size, size), mode="bilinear", align_corners=False,
                                    antialias=True))
    if not images:
        raise ArtshiftError(f"{who}: no readable photo to normalise the VGG's activations on")
    log.info("%s: rescaling the VGG-19 to mean activation 1 on %d photos at %d px", who, len(images), size)
    return mean_activation_scales(vgg, torch.cat(images))


def scaled_id(base_id: str, scales: dict[int, torch.Tensor] | None) -> str:
    return f"{base_id}:meannorm-{scales_hash(scales)}" if scales else base_id


__all__ = ["WEIGHTS", "activation_scales", "apply_scales_", "calibration_photos", "load_vgg19", "scaled_id",
           "use_reflection_padding_"]
