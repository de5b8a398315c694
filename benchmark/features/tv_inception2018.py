"""``inception-tv2018``: the Inception that a 2018 pytorch-fid most likely measured Tomei et al.'s FIDs with.

Why a second Inception: the paper (ECCV-W 2018) reports FIDs at 64/192/768/2048 dims, which
only pytorch-fid offered then, and before 2019-05-27 (pytorch-fid f64228c) pytorch-fid built
its network from torchvision's ImageNet Inception-v3 classifier, not from the TF FID graph (see
/work/shared/reference/tomei2018.md). Reproducing the paper's numbers needs that network and its
input pipeline, so this module rebuilds them: torchvision ``Inception3`` with the
``inception_v3_google-0cc3c7bd.pth`` weights (``benchmark.features.weights`` name ``inception-v3``), the
four pytorch-fid blocks (64 = up to maxpool1, 192 = up to maxpool2, 768 = up to Mixed_6e,
2048 = up to the final average pool; the first three globally average-pooled), a bilinear resize
to 299 x 299 (``align_corners=False``) of the [0, 1] image, and then the per-channel map
``x * (std / 0.5) + (mean - 0.5) / 0.5`` with torchvision's ImageNet mean/std: the 2018
normalisation step, which re-expresses ImageNet normalisation for the [-1, 1] input Google's
weights expect, applied to [0, 1] input.

Without the weight file the network is initialised from a seed as the FID Inception's fallback
(He-normal convolutions, BatchNorms 0.5 z + 0.5) with its BatchNorm statistics re-estimated on
the calibration photos, like every other extractor here, and says so in its id and the ``[random-init]`` tag of every metric.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import inception as tvi

from benchmark.data import load_image
from benchmark.features.extractor import (
    cached_calibration,
    check_layers,
    check_resize_mode,
    load_strict,
    no_tf32,
    random_init_id,
    resolve_pretrained,
)
from benchmark.features.inception import _state_dict_hash, init_random_, load_weights_file
from benchmark.features.tv_features import calibrate_batchnorm_
from benchmark.features.vgg import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger("artshift.features")

NAME = "inception-tv2018"
WEIGHTS_NAME = "inception-v3"  # key in benchmark.features.weights.KNOWN
DIMS = (64, 192, 768, 2048)
LAYER_IDS = tuple(f"{NAME}:{d}" for d in DIMS)
INPUT_SIZE = 299
RESIZE_MODES = ("pytorch-fid-2018",)
CALIBRATION_BATCH = 25
CALIBRATION_VERSION = 2  # bump when the random init or the calibration procedure changes

_SCALE = torch.tensor([s / 0.5 for s in IMAGENET_STD]).view(3, 1, 1)
_SHIFT = torch.tensor([(m - 0.5) / 0.5 for m in IMAGENET_MEAN]).view(3, 1, 1)


def preprocess(img: np.ndarray, mode: str = "pytorch-fid-2018") -> torch.Tensor:
    """One RGB uint8 image (H x W x 3) -> 3 x 299 x 299 float32 input, as the 2018 pytorch-fid built it."""
    check_resize_mode(mode, RESIZE_MODES)
    x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
    x = F.interpolate(x[None], size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)[0]
    return x * _SCALE + _SHIFT


def build_inception3() -> tvi.Inception3:
    """torchvision's Inception-v3 as ``inception_v3(pretrained=True)`` built it (aux head kept so the file loads)."""
    return tvi.Inception3(num_classes=1000, aux_logits=True, transform_input=False, init_weights=False)


class Blocks(nn.Module):
    """The 2018 pytorch-fid ``InceptionV3``: four blocks of a torchvision Inception3, pooled per block."""

    def __init__(self, net: tvi.Inception3):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, dims: Sequence[int] = DIMS) -> dict[int, torch.Tensor]:
        n, last, out = self.net, max(dims), {}
        x = F.max_pool2d(n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x))), kernel_size=3, stride=2)
        out[64] = x.mean((2, 3))
        if last > 64:
            x = F.max_pool2d(n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)
            out[192] = x.mean((2, 3))
        if last > 192:
            for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                         "Mixed_6e"):
                x = getattr(n, name)(x)
            out[768] = x.mean((2, 3))
        if last > 768:
            for name in ("Mixed_7a", "Mixed_7b", "Mixed_7c"):
                x = getattr(n, name)(x)
            out[2048] = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return {d: out[d] for d in dims}


class TV2018InceptionExtractor:
    """Callable feature extractor: preprocessed batch -> {layer id: float32 [B, dims]}."""

    name = NAME
    layers = LAYER_IDS
    widths = dict(zip(LAYER_IDS, DIMS, strict=True))

    def __init__(self, state_dict: dict[str, torch.Tensor], *, id: str, display_tag: str = "",
                 resize_mode: str = "pytorch-fid-2018", device: str | torch.device = "cpu"):
        check_resize_mode(resize_mode, RESIZE_MODES)
        net = build_inception3()
        load_strict(net, state_dict, "torchvision's Inception-v3",
                    f"expected {WEIGHTS_NAME} (inception_v3_google-0cc3c7bd.pth): `bench weights fetch {WEIGHTS_NAME}`")
        self.device = torch.device(device)
        self.blocks = Blocks(net.eval().requires_grad_(False)).eval().to(self.device)
        self.id = id
        self.display_tag = display_tag
        self.resize_mode = resize_mode

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.blocks.net.state_dict().items()}

    def preprocess(self, img: np.ndarray) -> torch.Tensor:
        return preprocess(img, self.resize_mode)

    def __call__(self, batch: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        wanted = check_layers(self, layers)
        dims = [self.widths[k] for k in wanted]
        with torch.inference_mode(), no_tf32(self.device):
            out = self.blocks(batch.to(self.device, torch.float32), dims)
        return {k: out[d].float() for k, d in zip(wanted, dims, strict=True)}

    def __repr__(self) -> str:
        return f"TV2018InceptionExtractor(id={self.id!r}, resize_mode={self.resize_mode!r})"


def random_inception3(seed: int) -> tvi.Inception3:
    """Seeded He-normal convolutions and BatchNorms that output 0.5 z + 0.5, as the FID Inception's fallback.

    torchvision's own init (truncated normal, std 0.1, BatchNorm 1 z + 0) cuts half the ReLUs at
    every layer; after the 2048-dim pool a few photos then dominate the features, and FIDs between
    two halves of one photo set varied by thousands from draw to draw.
    """
    return init_random_(build_inception3(), seed)


def calibrated_random(seed: int, paths: Sequence[Path], progress: bool = False) -> dict[str, torch.Tensor]:
    """``random_inception3(seed)`` with its BatchNorm statistics re-estimated on ``paths``."""
    net = random_inception3(seed)
    images = [preprocess(np.asarray(load_image(p))) for p in paths]
    batches = [torch.stack(images[s:s + CALIBRATION_BATCH]) for s in range(0, len(images), CALIBRATION_BATCH)]
    blocks = Blocks(net)
    calibrate_batchnorm_(blocks, batches, progress)  # the aux head never runs: its BatchNorms keep init stats
    return net.state_dict()


def get_extractor(weights: str = "auto", resize_mode: str = "pytorch-fid-2018", home: Path | None = None,
                  calibration_paths: Sequence[Path] | None = None, seed: int = 0,
                  device: str | torch.device = "cpu", allow_download: bool = True,
                  progress: bool = False) -> TV2018InceptionExtractor:
    """``pretrained`` (the torchvision file), ``random`` (calibrated) or ``auto`` (as the FID Inception)."""
    check_resize_mode(resize_mode, RESIZE_MODES)
    found = resolve_pretrained(WEIGHTS_NAME, "torchvision Inception-v3", weights, home=home,
                               allow_download=allow_download, progress=progress)
    if found is not None:
        return TV2018InceptionExtractor(load_weights_file(found[0]), id=found[1], display_tag="",
                                        resize_mode=resize_mode, device=device)
    sd, cal_fp = cached_calibration(NAME, CALIBRATION_VERSION, seed, calibration_paths or [], home,
                                    lambda cal: calibrated_random(seed, cal, progress),
                                    title="torchvision Inception-v3", weights_name=WEIGHTS_NAME)
    return TV2018InceptionExtractor(sd, id=random_init_id(_state_dict_hash(sd), cal_fp), display_tag="random-init",
                                    resize_mode=resize_mode, device=device)


def create(**kwargs) -> TV2018InceptionExtractor:
    """Registry entry point (``benchmark.features.extractor.make("inception-tv2018", ...)``)."""
    return get_extractor(**kwargs)
