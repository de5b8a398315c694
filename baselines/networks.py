"""Network blocks shared by CycleGAN, CUT/FastCUT and the memory-bank CycleGAN ("ours").

One module so that every GAN method in the benchmark trains the same architecture (Zhu et
al. 2017, from Johnson et al.'s style-transfer network) and differences in the results come
from the losses, not from the plumbing. Nothing else may keep a copy of these classes.

Generator API (``ResnetGenerator``), fully convolutional, so a model trained on 64 px crops
translates 256 px images (sides must be multiples of 4; ``pad_to_multiple`` helps):

- ``G(x)`` -> translated image in [-1, 1].
- ``G.encode(x, layers)`` -> ``list[Tensor]``: encoder features at the named taps, in the
  order asked; stops after the deepest one, so it costs only the encoder.
- ``G.forward_with_features(x, layers)`` -> ``(output, list[Tensor])``: the translation and
  the taps from the same forward pass (CUT needs both for the fake image).
- ``G.taps``: the valid tap names, shallow to deep:
  ``"pad"`` (the input after the first 3 px reflection pad), ``"stem"`` (7x7 conv block,
  after ReLU, ngf channels, full resolution), ``"down1"`` / ``"down2"`` (the stride-2 conv
  blocks after ReLU: 2 ngf at 1/2, 4 ngf at 1/4 resolution), ``"res1"`` ... ``"res<n>"``
  (residual block outputs, 4 ngf at 1/4 resolution).

``CUT_NCE_LAYERS`` = pad, stem, down1, down2, res1: by meaning, the five taps the CUT paper
lists as layers 0, 4, 8, 12, 16. The CUT repository's default generator has anti-aliased
downsampling (conv + norm + ReLU + blur-pool per step), so there index 4 is the first
downsampling conv (pre-norm), 8 the second, 12 res1 and 16 res5; ``("pad", "down1",
"down2", "res1", "res5")`` is the closer equivalent of that module-index choice when a
method wants it (needs ``n_blocks >= 5``).

Attribute layout (stable, checkpoints depend on it): ``pad``, ``stem``, ``down1``,
``down2``, ``blocks`` (``nn.Sequential`` of ``ResnetBlock``), ``up1``, ``up2``, ``head``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("instance", "batch", "none")
CUT_NCE_LAYERS = ("pad", "stem", "down1", "down2", "res1")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """Instance norm without affine parameters or running stats, as the reference uses."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r} (known: {', '.join(NORMS)})")


def _conv_bias(norm: str) -> bool:
    # a bias before batch norm is cancelled by its mean subtraction; instance norm without
    # affine parameters keeps the reference's bias (its use_bias rule)
    return norm != "batch"


class ResnetBlock(nn.Module):
    """Two 3x3 reflection-padded convs with a skip connection (optional dropout between)."""

    def __init__(self, channels: int, norm: str = "instance", use_dropout: bool = False):
        super().__init__()
        bias = _conv_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias),
                                   norm_layer(norm, channels), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), norm_layer(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """c7s1-ngf, d2ngf, d4ngf, n x R4ngf, u2ngf, u ngf, c7s1-3 + tanh (Zhu et al. 2017, appendix)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance", use_dropout: bool = False):
        super().__init__()
        if n_blocks < 0:
            raise ValueError("n_blocks must be >= 0")
        bias = _conv_bias(norm)
        self.n_blocks = n_blocks
        self.pad = nn.ReflectionPad2d(3)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, ngf, 7, bias=bias), norm_layer(norm, ngf), nn.ReLU(True))
        self.down1 = _down(ngf, ngf * 2, norm, bias)
        self.down2 = _down(ngf * 2, ngf * 4, norm, bias)
        self.blocks = nn.Sequential(*[ResnetBlock(ngf * 4, norm, use_dropout) for _ in range(n_blocks)])
        self.up1 = _up(ngf * 4, ngf * 2, norm, bias)
        self.up2 = _up(ngf * 2, ngf, norm, bias)
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh())

    @property
    def taps(self) -> tuple[str, ...]:
        return ("pad", "stem", "down1", "down2") + tuple(f"res{i + 1}" for i in range(self.n_blocks))

    def _encoder_stages(self):
        yield "pad", self.pad
        yield "stem", self.stem
        yield "down1", self.down1
        yield "down2", self.down2
        for i, block in enumerate(self.blocks):
            yield f"res{i + 1}", block

    def _check_layers(self, layers: Sequence[str]) -> None:
        unknown = [name for name in layers if name not in self.taps]
        if unknown:
            raise ValueError(f"unknown generator tap(s) {unknown} (known: {', '.join(self.taps)})")

    def _run_encoder(self, x: torch.Tensor, layers: Sequence[str], stop_early: bool):
        self._check_layers(layers)
        wanted = set(layers)
        found: dict[str, torch.Tensor] = {}
        for name, stage in self._encoder_stages():
            x = stage(x)
            if name in wanted:
                found[name] = x
                if stop_early and len(found) == len(wanted):
                    break
        return x, [found[name] for name in layers]

    def encode(self, x: torch.Tensor, layers: Sequence[str]) -> list[torch.Tensor]:
        """Encoder features at ``layers`` (tap names, see module docstring), in that order."""
        return self._run_encoder(x, layers, stop_early=True)[1]

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(self.up2(self.up1(h)))

    def forward_with_features(self, x: torch.Tensor, layers: Sequence[str]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The translation and the encoder taps of one forward pass."""
        h, feats = self._run_encoder(x, layers, stop_early=False)
        return self.decode(h), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.down2(self.down1(self.stem(self.pad(x)))))
        return self.decode(h)


def _down(cin: int, cout: int, norm: str, bias: bool) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=bias), norm_layer(norm, cout), nn.ReLU(True))


def _up(cin: int, cout: int, norm: str, bias: bool) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=bias),
                         norm_layer(norm, cout), nn.ReLU(True))


class PatchDiscriminator(nn.Module):
    """PatchGAN: with n_layers=3 each output logit sees a 70x70 receptive field of the input."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance"):
        super().__init__()
        bias = _conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1  # the last feature layer keeps the resolution
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=bias),
                       norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def receptive_field(net: PatchDiscriminator) -> int:
    """Receptive field (pixels) of one output of a PatchDiscriminator; 70 for the default."""
    rf, jump = 1, 1
    for m in net.model:
        if isinstance(m, nn.Conv2d):
            rf += (m.kernel_size[0] - 1) * jump
            jump *= m.stride[0]
    return rf


@torch.no_grad()
def init_weights(net: nn.Module, gain: float = 0.02, generator: torch.Generator | None = None) -> nn.Module:
    """N(0, gain) conv/linear weights, zero biases, N(1, gain) batch-norm scales (reference init).

    Values are drawn on the CPU from ``generator`` (or the global generator) and copied in, so
    the same seed gives the same weights on any device.
    """
    def normal(t: torch.Tensor, mean: float) -> None:
        t.copy_(torch.randn(t.shape, generator=generator, dtype=torch.float32) * gain + mean)

    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            normal(m.weight, 0.0)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            normal(m.weight, 1.0)
            m.bias.zero_()
    return net


def lsgan_loss(prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Least-squares GAN loss: mean squared distance of the logits to 1 (real) or 0 (fake)."""
    target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
    return F.mse_loss(prediction, target)


def set_requires_grad(nets: Sequence[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


def pad_to_multiple(x: torch.Tensor, multiple: int = 4) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflection-pad H and W up to a multiple (the generator halves them twice); returns (x, (H, W))."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


class ImagePool:
    """History of generated images fed to the discriminators (Shrivastava et al. 2017).

    Until ``size`` images are stored each new image is stored and returned; afterwards each one
    is, with probability 1/2, swapped with a random stored image (which is returned instead).
    The coin flips use torch's global RNG, which the training loop reseeds every iteration, and
    the stored images and count are in ``state_dict``, so a resumed run draws the same history.
    """

    def __init__(self, size: int = 50):
        self.size = int(size)
        self.images: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size <= 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif float(torch.rand(())) > 0.5:
                i = int(torch.randint(0, self.size, ()))
                old = self.images[i].to(image.device)
                self.images[i] = image.clone()
                out.append(old)
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "count": len(self.images), "images": [t.detach().cpu() for t in self.images]}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        if int(state["size"]) != self.size:
            raise ValueError(f"image pool size mismatch: checkpoint {state['size']}, configured {self.size}")
        self.images = [t.to(device) for t in state["images"]]
        if len(self.images) != int(state["count"]):
            raise ValueError("image pool checkpoint is inconsistent (count != stored images)")
