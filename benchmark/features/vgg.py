"""The VGG-19 convolutional stack shared by Gatys style transfer and the VGG-19 feature extractor.

One place for the layer table, the seeded random init and the loading of torchvision's
ImageNet file, so a ``random-init`` or ``pretrained`` VGG means the same network wherever it
appears. Random convolutions use fan-in Kaiming scaling: torchvision's fan-out init shrinks the
activations each time the channel count doubles, which leaves the deep layers ~1e-4 of the
shallow ones (Gram matrices and pooled features then ignore them).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from benchmark.features import weights as weight_files

# Indices of the ReLU outputs in torchvision's ``vgg19().features`` (config "E").
VGG19_LAYERS = {
    "relu1_1": 1, "relu1_2": 3, "relu2_1": 6, "relu2_2": 8,
    "relu3_1": 11, "relu3_2": 13, "relu3_3": 15, "relu3_4": 17,
    "relu4_1": 20, "relu4_2": 22, "relu4_3": 24, "relu4_4": 26,
    "relu5_1": 29, "relu5_2": 31, "relu5_3": 33, "relu5_4": 35, "pool5": 36,
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_NAME = "vgg19"  # key in benchmark.features.weights.KNOWN


class VGGFeatures(nn.Module):
    """VGG-19 ``features`` truncated after the deepest layer asked for; returns named ReLU outputs.

    Takes images in [-1, 1] and applies the ImageNet mean/std normalisation the weights expect.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, features: nn.Sequential):
        super().__init__()
        for m in features:
            if isinstance(m, nn.ReLU):
                m.inplace = False  # the returned activations must not be overwritten later
        self.features = features
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        wanted = {VGG19_LAYERS[name]: name for name in layers}
        last = max(wanted)
        x = ((images + 1) / 2 - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        for i, module in enumerate(self.features):
            x = module(x)
            if i in wanted:
                out[wanted[i]] = x
            if i == last:
                break
        return out


def _vgg19_layers() -> nn.Sequential:
    from torchvision.models.vgg import cfgs, make_layers

    return make_layers(cfgs["E"], batch_norm=False)


def _state_hash(module: nn.Module) -> str:
    h = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def kaiming_fan_in_(modules: Iterable[nn.Module], generator: torch.Generator) -> None:
    """He-normal (fan-in, ReLU gain) weights and zero biases for every conv/linear, in order."""
    with torch.no_grad():
        for m in modules:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.zero_()


def random_vgg19(seed: int) -> tuple[VGGFeatures, str]:
    """A seeded random-init VGG-19 stack and its id ``random-init:seed<N>:sd-<hash>``."""
    features = _vgg19_layers()
    kaiming_fan_in_(features, torch.Generator().manual_seed(seed))
    return VGGFeatures(features), f"random-init:seed{seed}:sd-{_state_hash(features)}"


def pretrained_vgg19(allow_download: bool = False, home: Path | None = None) -> tuple[VGGFeatures, str]:
    """ImageNet VGG-19 stack from the sha256-verified torchvision file, and ``pretrained:<sha256[:12]>``.

    A missing or corrupt file raises ``benchmark.features.weights``' ArtshiftError, whose hint names
    ``bench weights fetch vgg19``.
    """
    path = weight_files.resolve(WEIGHTS_NAME, allow_download=allow_download, home=home)
    digest = weight_files.verify(WEIGHTS_NAME, home)  # cached: the file was just verified
    state = torch.load(path, map_location="cpu", weights_only=True)
    features = _vgg19_layers()
    features.load_state_dict({k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")})
    return VGGFeatures(features), f"pretrained:{digest[:12]}"
