"""The feature-extractor contract, and building a registered extractor by name.

Every number after ``translate`` is a function of some network's features, so the evaluation
path only ever sees this protocol: ``name`` (the registry entry), ``id`` (weights identity:
``pretrained:<sha256[:12]>`` or a ``random-init:...`` id that hashes the calibrated state),
``display_tag`` (``""`` for the standard pretrained weights, else e.g. ``"random-init"``, shown
in every metric name), ``layers`` as text ids (``inception:2048``, ``vgg19:relu4_2``,
``resnet152:layer3``) with their feature ``widths``, the extractor's own ``preprocess`` (one
uint8 H x W x 3 image -> float32 C x S x S network input, named by ``resize_mode``), and
``__call__(batch, layers)`` that returns every requested layer from one forward pass as
float32 ``[B, width]`` tensors (conv maps globally average-pooled).

Each registered extractor points at a ``create(**kwargs)`` function with the keyword
arguments of ``make`` below, so adding a network is one registry line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from benchmark.errors import ArtshiftError


@runtime_checkable
class FeatureExtractor(Protocol):
    name: str
    id: str
    display_tag: str
    resize_mode: str
    layers: tuple[str, ...]
    widths: dict[str, int]

    def preprocess(self, img: np.ndarray) -> torch.Tensor: ...

    def __call__(self, batch: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]: ...


def layer_id(network: str, layer: str | int) -> str:
    return f"{network}:{layer}"


def split_layer(layer: str) -> tuple[str, str]:
    """``"vgg19:relu4_2" -> ("vgg19", "relu4_2")``."""
    network, sep, name = str(layer).partition(":")
    if not sep or not network or not name:
        raise ArtshiftError(f"bad layer id {layer!r}", hint="layer ids look like 'inception:2048' or 'vgg19:relu4_2'")
    return network, name


def check_layers(extractor: FeatureExtractor, layers: Sequence[str] | None) -> tuple[str, ...]:
    """The requested layers (all when None), or an error naming the unknown ones and the known."""
    if layers is None:
        return tuple(extractor.layers)
    bad = [k for k in layers if k not in extractor.widths]
    if bad:
        raise ArtshiftError(f"unknown {extractor.name} layer(s) {', '.join(map(str, bad))} "
                            f"(known: {', '.join(extractor.layers)})")
    return tuple(layers)


def make(name: str, *, weights: str = "auto", resize_mode: str | None = None, home: Path | None = None,
         calibration_paths: Sequence[Path] = (), seed: int = 0, device: str | torch.device = "cpu",
         allow_download: bool = True, progress: bool = False) -> FeatureExtractor:
    """Build the registered extractor ``name`` with ``weights`` in {auto, pretrained, random}.

    ``auto``: the verified pretrained file when present or downloadable, else a random-init
    network calibrated on ``calibration_paths`` (labelled in its id and display tag).
    ``resize_mode`` None means the extractor's default.
    """
    from benchmark import registry

    create = registry.extractors.get(name)
    kwargs = dict(weights=weights, home=home, calibration_paths=list(calibration_paths), seed=seed, device=device,
                  allow_download=allow_download, progress=progress)
    if resize_mode is not None:
        kwargs["resize_mode"] = resize_mode
    return create(**kwargs)
