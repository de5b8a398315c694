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

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from benchmark import data
from benchmark.core import paths as bpaths
from benchmark.core import registry
from benchmark.core.atomic import atomic_path
from benchmark.core.errors import ArtshiftError
from benchmark.data import fingerprint
from benchmark.features import weights as wts

log = logging.getLogger("artshift.features")

CALIBRATION_PHOTOS = 200  # photos/train files (sorted, first N) that calibrate random-init extractors
CALIBRATION_MAX = 200  # photos used to re-estimate BatchNorm statistics of a random-init network


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


@contextlib.contextmanager
def no_tf32(device: torch.device) -> Iterator[None]:
    """Full float32 convolutions and matrix products on CUDA, for every extractor.

    PyTorch lets cuDNN convolutions run in TF32 by default; on an H100 that moved the deep
    random-init features by 10-30% of their range from the CPU's (full float32: <1e-3), and
    features must not depend on the GPU's math mode.
    """
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def is_random_init(extractor_id: str) -> bool:
    """Whether rows with ``extractor_id`` come from a random-init network (every other id names real weights)."""
    return str(extractor_id).startswith("random-init")


def layer_id(network: str, layer: str | int) -> str:
    return f"{network}:{layer}"


def split_layer(layer: str) -> tuple[str, str]:
    """``"vgg19:relu4_2" -> ("vgg19", "relu4_2")``."""
    network, sep, name = str(layer).partition(":")
    if not sep or not network or not name:
        raise ArtshiftError(f"bad layer id {layer!r}", hint="layer ids look like 'inception:2048' or 'vgg19:relu4_2'")
    return network, name


def unknown_resize_mode(mode: str, known: Sequence[str]) -> ArtshiftError:
    return ArtshiftError(f"unknown resize mode {mode!r} (known: {', '.join(known)})")


def check_resize_mode(mode: str, known: Sequence[str]) -> str:
    if mode not in known:
        raise unknown_resize_mode(mode, known)
    return mode


def load_strict(net: torch.nn.Module, state_dict: dict[str, torch.Tensor], what: str, hint: str, *,
                assign: bool = False) -> torch.nn.Module:
    """``net`` with ``state_dict`` loaded strictly, or one line saying which weights do not fit."""
    try:
        net.load_state_dict(state_dict, strict=True, assign=assign)
    except (RuntimeError, TypeError, ValueError, KeyError) as exc:
        raise ArtshiftError(f"weights do not fit {what}: {str(exc).splitlines()[0]}", hint=hint) from None
    return net


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
    create = registry.extractors.get(name)
    kwargs = dict(weights=weights, home=home, calibration_paths=list(calibration_paths), seed=seed, device=device,
                  allow_download=allow_download, progress=progress)
    if resize_mode is not None:
        kwargs["resize_mode"] = resize_mode
    return create(**kwargs)


# --- shared by every extractor: which weights, and the calibrated random-init cache ----------

def resolve_pretrained(weights_name: str, title: str, weights: str, *, home: Path | None, allow_download: bool,
                       progress: bool, how: str = "") -> tuple[Path, str] | None:
    """(verified file, ``pretrained:<sha256[:12]>``), or None when a random-init network is to be used.

    ``auto`` falls back to random-init (with a warning) only when the file is absent and cannot
    be downloaded; a present but corrupt or mismatching file is an error in every mode.
    """
    if weights not in ("auto", "pretrained", "random"):
        raise ArtshiftError(f"unknown {title} weights {weights!r} (use auto, pretrained or random)")
    if weights == "random":
        return None
    present = wts.path_of(weights_name, home).is_file()
    try:
        path = wts.resolve(weights_name, allow_download=allow_download, home=home, progress=progress)
    except wts.ChecksumError:
        raise
    except ArtshiftError as exc:
        if weights == "pretrained" or present:
            raise
        log.warning("pretrained %s weights unavailable (%s); using a RANDOM-INIT %s calibrated on photos. Its "
                    "metric values are not comparable with published ones and are labelled [random-init].%s",
                    title, str(exc).splitlines()[0], title, f" To get the real network: {how}" if how else "")
        return None
    return path, f"pretrained:{wts.verify(weights_name, home)[:12]}"


def calibration_photos(domain: data.Domain) -> list[Path]:
    """Photos that calibrate a random-init extractor.

    The first ``CALIBRATION_PHOTOS`` training photos (as before), except for labelled domains
    (PACS), whose files are listed class by class: there all training photos are handed over
    and the extractor takes an evenly spaced subset, so every class is represented.
    """
    if domain.labels:
        return list(domain.photos_train)
    return list(domain.photos_train[:CALIBRATION_PHOTOS])


def calibration_subset(paths: Sequence[Path], n: int = CALIBRATION_MAX) -> list[Path]:
    """Deterministic (name-sorted, evenly spaced) subset of at most ``n`` photos."""
    ps = sorted((Path(p) for p in paths), key=lambda p: (p.name, str(p)))
    if len(ps) <= n:
        return ps
    idx = np.linspace(0, len(ps) - 1, n).round().astype(int)
    return [ps[i] for i in idx]


def cached_calibration(name: str, version: int, seed: int, calibration_paths: Sequence[Path], home: Path | None,
                       build: Callable[[list[Path]], dict[str, torch.Tensor]], *, title: str,
                       weights_name: str) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict of a calibrated random-init network and the calibration set's fingerprint.

    Calibrating takes from seconds (Inception) to minutes (VGG-19 at 224 px on a CPU), so the
    result is cached in ``<home>/cache/extractors`` by network, procedure version, seed and the
    calibration set's content; a corrupt cache file is rebuilt, never fatal.
    """
    if not calibration_paths:
        raise ArtshiftError(f"a random-init {title} extractor needs calibration photos and none were given",
                            hint="pass calibration_paths (e.g. the first 200 files of photos/train), or install "
                                 f"the pretrained weights: `bench weights fetch {weights_name}`")
    cal = calibration_subset(calibration_paths)
    cal_fp = fingerprint(cal)
    cache = bpaths.home(home) / "cache" / "extractors" / f"{name}-random-v{version}-seed{seed}-cal{cal_fp}.pt"
    if cache.is_file():
        try:
            return torch.load(cache, map_location="cpu", weights_only=True), cal_fp
        except Exception as exc:  # a corrupt cache is rebuilt, not fatal
            log.warning("ignoring unreadable extractor cache %s (%s): recalibrating", cache, exc)
    log.info("calibrating a random-init %s (seed %d) on %d photos", title, seed, len(cal))
    sd = {k: v.detach().contiguous() for k, v in build(cal).items()}
    with atomic_path(cache) as tmp:
        torch.save(sd, tmp)
    return sd, cal_fp


def random_init_id(state_hash: str, cal_fp: str) -> str:
    return f"random-init:sd-{state_hash[:6]}:cal-{cal_fp[:6]}"
