"""torchvision VGG-19 and ResNet-152 behind the feature-extractor protocol.

FID on one Inception is one network's view of the images; the same distances on two other
ImageNet architectures show whether a ranking of methods depends on that choice. Every layer is
globally average-pooled: one vector per image whatever the input size, which the Gaussian fits
of FID/KID need, and a summary of *what* the network sees rather than *where* (translations move
textures, not the layout of a scene). Images are resized whole, without the usual ImageNet centre
crop, with the same 'clean' bicubic resize as the Inception, so the extractors differ only in the
network and a crop never hides the part of a painting a method changed.

Without the pretrained files (offline machines, CI) each network is randomly initialised from a
seed and calibrated on a fixed set of photos:

- ResNet-152 has BatchNorm. Left at their initial statistics, its activations grow by orders of
  magnitude through its depth; as for the Inception, the running statistics are re-estimated.
- VGG-19 has none, and its random channels have arbitrary scales, so a distance would weigh each
  channel by its luck at initialisation. Its channels are instead rescaled, layer by layer, to
  mean post-ReLU activation 1 over the calibration photos and positions: the normalisation Gatys
  et al. applied to their VGG. ReLU and max pooling commute with positive per-channel scales, so
  dividing a channel's weights and bias by its mean is exact given the earlier layers are done,
  and the activations can be kept between layers (within a memory budget) instead of recomputed:
  the calibration costs about one forward pass. fc6/fc7 channels are averaged over images only,
  so with few photos the rarely firing ones get large scales: calibrate on all 200.

Such an extractor says so in its ``id`` and in the display tag of every metric computed with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision import models as tvm

from benchmark.data import load_image
from benchmark.features.extractor import (
    cached_calibration,
    check_layers,
    check_resize_mode,
    layer_id,
    load_strict,
    no_tf32,
    random_init_id,
    resolve_pretrained,
    unknown_resize_mode,
)
from benchmark.features.inception import _state_dict_hash, load_weights_file, resize_clean
from benchmark.features.vgg import IMAGENET_MEAN, IMAGENET_STD, kaiming_fan_in_

log = logging.getLogger("artshift.features")

INPUT_SIZE = 224
RESIZE_MODES = ("clean",)
CALIBRATION_BATCH = 25
CALIBRATION_VERSION = 1  # bump when a random init or a calibration procedure changes
CALIBRATION_KEEP_BYTES = 1 << 30  # activations of the whole calibration set kept between VGG layers

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


# --- preprocessing: uint8 HxWx3 -> float32 3x224x224, ImageNet-normalised ---------------------

def preprocess(img: np.ndarray, mode: str = "clean") -> torch.Tensor:
    """One RGB uint8 image (H x W x 3), whole (no crop) -> 3 x 224 x 224 float32 network input."""
    if mode == "clean":
        return (torch.from_numpy(resize_clean(img, INPUT_SIZE)) / 255 - _MEAN) / _STD
    raise unknown_resize_mode(mode, RESIZE_MODES)


def _calibration_batches(paths: Sequence[Path], batch_size: int = CALIBRATION_BATCH) -> list[torch.Tensor]:
    images = [preprocess(np.asarray(load_image(p))) for p in paths]
    return [torch.stack(images[s:s + batch_size]).contiguous(memory_format=torch.channels_last)
            for s in range(0, len(images), batch_size)]


# --- random init + calibration ----------------------------------------------------------------

def _meta(build: Callable[..., nn.Module], **kwargs) -> nn.Module:
    """The architecture without initialising it (its tensors are replaced right after)."""
    with torch.device("meta"):
        return build(**kwargs)


def normalise_mean_activations_(net: tvm.VGG, batches: Sequence[torch.Tensor], progress: bool = False) -> tvm.VGG:
    """Gatys' normalisation: rescale each conv/linear followed by a ReLU, in network order, so that
    every output channel's mean post-ReLU activation over ``batches`` (and positions) is 1.

    Dead channels (mean 0) are left as they are.
    """
    normalise_stages_([*net.features, net.avgpool, nn.Flatten(1), *net.classifier], batches, progress)
    net.eval()
    return net


def normalise_stages_(stages: Sequence[nn.Module], batches: Sequence[torch.Tensor], progress: bool = False) -> None:
    """``normalise_mean_activations_`` on a plain chain of modules (also Gatys' convolutional stack alone)."""
    from tqdm.auto import tqdm

    stages = list(stages)
    for m in stages:
        m.eval()
    n_images = sum(len(b) for b in batches)
    cached, start = list(batches), 0  # activations of every batch at the input of stages[start]
    pairs = [i for i in range(len(stages) - 1)
             if isinstance(stages[i], (nn.Conv2d, nn.Linear)) and isinstance(stages[i + 1], nn.ReLU)]
    with torch.no_grad():
        for i in tqdm(pairs, desc="normalising VGG activations", disable=not progress, leave=False):
            layer = stages[i]
            head = nn.Sequential(*stages[start:i + 2])
            end = i + 2  # parameter-free stages that commute with the channel scales ride along
            while end < len(stages) and isinstance(stages[end], (nn.MaxPool2d, nn.Dropout)):
                end += 1
            tail = nn.Sequential(*stages[i + 2:end])
            sums = torch.zeros(layer.weight.shape[0], dtype=torch.float64)
            count = 0
            kept: list[torch.Tensor] | None = []
            for b in cached:
                y = head(b)
                dims = [d for d in range(y.ndim) if d != 1]
                sums += y.sum(dims, dtype=torch.float64)
                count += y.numel() // y.shape[1]
                if kept is not None:
                    z = tail(y)
                    if z.numel() // len(b) * z.element_size() * n_images <= CALIBRATION_KEEP_BYTES:
                        kept.append(z)
                    else:
                        kept = None
            mean = sums / count
            scale = torch.where(mean > 0, 1 / mean, torch.ones_like(mean)).to(layer.weight.dtype)
            layer.weight.mul_(scale.view(-1, *[1] * (layer.weight.ndim - 1)))
            layer.bias.mul_(scale)
            if kept is not None:
                cached = [z.mul_(scale.view(1, -1, *[1] * (z.ndim - 2))) for z in kept]
                start = end


def calibrate_batchnorm_(net: nn.Module, batches: Sequence[torch.Tensor], progress: bool = False) -> nn.Module:
    """Re-estimate every BatchNorm's running mean/var on ``batches`` (cumulative average, train mode)."""
    from tqdm.auto import tqdm

    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average over all calibration batches
    net.train()
    try:
        with torch.no_grad():
            for b in tqdm(batches, desc="calibrating BatchNorm", disable=not progress, leave=False):
                net(b)
    finally:
        for bn in bns:
            bn.momentum = 0.1
        net.eval()
    return net


def calibrated_random_vgg19(seed: int, batches: Sequence[torch.Tensor], progress: bool = False) -> nn.Module:
    """Fan-in Kaiming init (``features`` as ``benchmark.features.vgg.random_vgg19(seed)``), then Gatys-normalised."""
    net = _meta(tvm.vgg19, init_weights=False).to_empty(device="cpu")
    kaiming_fan_in_(net.modules(), torch.Generator().manual_seed(seed))
    return normalise_mean_activations_(net.to(memory_format=torch.channels_last), batches, progress)


def calibrated_random_resnet152(seed: int, batches: Sequence[torch.Tensor], progress: bool = False) -> nn.Module:
    """torchvision's default init from ``seed``, BatchNorm statistics re-estimated."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = tvm.resnet152()
    return calibrate_batchnorm_(net.to(memory_format=torch.channels_last), batches, progress)


# --- the networks -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Network:
    name: str  # registry name, layer-id prefix and benchmark.weights name
    title: str
    nodes: dict[str, tuple[str, int]]  # layer name -> (torchvision node, width)
    build: Callable[[], nn.Module]  # uninitialised architecture (meta tensors)
    random: Callable[[int, Sequence[torch.Tensor], bool], nn.Module]


VGG19 = Network(
    "vgg19", "VGG-19",
    {"relu1_1": ("features.1", 64), "relu2_1": ("features.6", 128), "relu3_1": ("features.11", 256),
     "relu4_1": ("features.20", 512), "relu4_2": ("features.22", 512), "relu5_1": ("features.29", 512),
     "fc7": ("classifier.4", 4096)},
    lambda: _meta(tvm.vgg19, init_weights=False), calibrated_random_vgg19)

RESNET152 = Network(
    "resnet152", "ResNet-152",
    {"stem": ("maxpool", 64), "layer1": ("layer1", 256), "layer2": ("layer2", 512), "layer3": ("layer3", 1024),
     "layer4": ("layer4", 2048)},
    lambda: _meta(tvm.resnet152), calibrated_random_resnet152)


class TorchvisionExtractor:
    """Callable feature extractor: preprocessed batch -> {layer id: float32 [B, width]}."""

    def __init__(self, network: Network, state_dict: dict[str, torch.Tensor], *, id: str, display_tag: str = "",
                 resize_mode: str = "clean", device: str | torch.device = "cpu"):
        check_resize_mode(resize_mode, RESIZE_MODES)
        net = network.build()
        load_strict(net, state_dict, f"torchvision's {network.title}",
                    f"expected the state dict of torchvision's {network.name} (ImageNet) file: "
                    f"`bench weights fetch {network.name}`", assign=True)
        for m in net.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False  # a returned activation must never be overwritten later in the graph
        self.device = torch.device(device)
        net = net.float().requires_grad_(False).eval().to(self.device)
        self.network = net.to(memory_format=torch.channels_last)
        self.name = network.name
        self.id = id
        self.display_tag = display_tag
        self.resize_mode = resize_mode
        self._nodes = {layer_id(network.name, k): node for k, (node, _) in network.nodes.items()}
        self.layers = tuple(self._nodes)
        self.widths = {layer_id(network.name, k): w for k, (_, w) in network.nodes.items()}
        self._graphs: dict[tuple[str, ...], nn.Module] = {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Weights in torchvision's layout (loads into ``torchvision.models.<name>()``)."""
        return {k: v.detach().cpu().clone().contiguous() for k, v in self.network.state_dict().items()}

    def preprocess(self, img: np.ndarray) -> torch.Tensor:
        return preprocess(img, self.resize_mode)

    def _graph(self, layers: tuple[str, ...]) -> nn.Module:
        """The network traced up to the deepest of ``layers`` (FX drops everything after it)."""
        key = tuple(k for k in self.layers if k in layers)
        if key not in self._graphs:
            from torchvision.models.feature_extraction import create_feature_extractor

            self._graphs[key] = create_feature_extractor(self.network, {self._nodes[k]: k for k in key}).eval()
        return self._graphs[key]

    def __call__(self, batch: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        wanted = check_layers(self, layers)
        with torch.inference_mode(), no_tf32(self.device):
            x = batch.to(self.device, torch.float32).contiguous(memory_format=torch.channels_last)
            out = self._graph(wanted)(x)
            return {k: (out[k].mean((2, 3)) if out[k].ndim == 4 else out[k]).float() for k in wanted}

    def __repr__(self) -> str:
        return f"TorchvisionExtractor(name={self.name!r}, id={self.id!r}, resize_mode={self.resize_mode!r})"


def get_extractor(network: Network, weights: str = "auto", resize_mode: str = "clean", home: Path | None = None,
                  calibration_paths: Sequence[Path] | None = None, seed: int = 0,
                  device: str | torch.device = "cpu", allow_download: bool = True,
                  progress: bool = False) -> TorchvisionExtractor:
    """``network`` with ``pretrained``, ``random`` (calibrated) or ``auto`` weights (as the FID Inception)."""
    check_resize_mode(resize_mode, RESIZE_MODES)
    found = resolve_pretrained(network.name, network.title, weights, home=home, allow_download=allow_download,
                               progress=progress)
    if found is not None:
        return TorchvisionExtractor(network, load_weights_file(found[0]), id=found[1], display_tag="",
                                    resize_mode=resize_mode, device=device)

    def build(cal: list[Path]) -> dict[str, torch.Tensor]:
        return network.random(seed, _calibration_batches(cal), progress).state_dict()

    sd, cal_fp = cached_calibration(network.name, CALIBRATION_VERSION, seed, calibration_paths or [], home, build,
                                    title=network.title, weights_name=network.name)
    return TorchvisionExtractor(network, sd, id=random_init_id(_state_dict_hash(sd), cal_fp),
                                display_tag="random-init", resize_mode=resize_mode, device=device)


def create_vgg19(**kwargs) -> TorchvisionExtractor:
    """Registry entry point (``benchmark.features.extractor.make`` arguments)."""
    return get_extractor(VGG19, **kwargs)


def create_resnet152(**kwargs) -> TorchvisionExtractor:
    """Registry entry point (``benchmark.features.extractor.make`` arguments)."""
    return get_extractor(RESNET152, **kwargs)
