"""Network blocks shared by CycleGAN, CUT/FastCUT and the memory-bank CycleGAN ("ours").

One module so that every GAN method in the benchmark trains the same architecture (Zhu et
al. 2017, from Johnson et al.'s style-transfer network) and differences in the results come
from the losses, not from the plumbing. Nothing else may keep a copy of these classes.

Two variants of the generator and the PatchGAN, chosen by ``antialias``:

- plain (``antialias=False``, CycleGAN's and ours' reference, pytorch-CycleGAN-and-pix2pix):
  stride-2 convolutions down, stride-2 transposed convolutions up;
- anti-aliased (``antialias=True``, the default of the CUT repository, Zhang 2019 "Making
  convolutional networks shift-invariant again"): each stride-2 conv becomes a stride-1 conv
  (then norm, activation) followed by ``BlurDownsample`` (3x3 binomial blur, stride 2), and
  each transposed conv becomes ``BlurUpsample`` (4x4 binomial transposed blur) followed by a
  stride-1 3x3 conv, norm, ReLU.

Generator API (``ResnetGenerator``), fully convolutional, so a model trained on 64 px crops
translates 256 px images (sides must be multiples of 4; ``pad_to_multiple`` helps):

- ``G(x)`` -> translated image in [-1, 1].
- ``G.encode(x, layers)`` -> ``list[Tensor]``: encoder features at the named taps, in the
  order asked; stops after the deepest one, so it costs only the encoder.
- ``G.forward_with_features(x, layers)`` -> ``(output, list[Tensor])``: the translation and
  the taps from the same forward pass (CUT needs both for the fake image).
- ``G.taps`` (``generator_taps(n_blocks)``): the valid tap names, shallow to deep:
  ``"pad"`` (the input after the first 3 px reflection pad), ``"stem"`` (7x7 conv block,
  after ReLU, ngf channels, full resolution), ``"down1_conv"`` / ``"down2_conv"`` (the first
  convolution of each downsampling step, *before* its norm: at the input's resolution of that
  step when anti-aliased, already halved when plain), ``"down1"`` / ``"down2"`` (the whole
  step: 2 ngf at 1/2, 4 ngf at 1/4 resolution), ``"res1"`` ... ``"res<n>"`` (residual block
  outputs, 4 ngf at 1/4 resolution).
- ``G.receptive_field(tap)``: the tap's receptive field in input pixels, from the module list.

``CUT_NCE_LAYERS`` = pad, down1_conv, down2_conv, res1, res5: the CUT repository's
``--nce_layers 0,4,8,12,16`` of its default (anti-aliased, 9-block) generator, whose module
list is pad, conv7, norm, ReLU (0-3), conv, norm, ReLU, blur-pool (4-7, first down step),
the same (8-11), residual blocks (12-20). Receptive fields: 1, 9, 15, 35, 99 px anti-aliased,
1, 9, 13, 29, 93 px plain. It needs ``n_blocks >= 5``.

Attribute layout (stable, checkpoints depend on it): ``pad``, ``stem``, ``down1``,
``down2``, ``blocks`` (``nn.Sequential`` of ``ResnetBlock``), ``up1``, ``up2``, ``head``;
the plain variant's state-dict keys are those of every earlier version of this module.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("instance", "batch", "none")
INIT_TYPES = ("normal", "xavier")
CUT_NCE_LAYERS = ("pad", "down1_conv", "down2_conv", "res1", "res5")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """Instance norm without affine parameters or running stats, as the reference uses."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r} (known: {', '.join(NORMS)})")


class _InstanceNormFunction(torch.autograd.Function):
    """Instance norm with the fused backward rstd * (g - mean(g) - xhat * mean(g * xhat)),
    written with reductions and elementwise ops (correct in any memory layout). The one
    formula keeps float32 gradients as accurate as torch's kernel; autograd through
    ``var_mean`` instead sums three large, cancelling terms (1e-3 relative error measured)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, eps: float) -> torch.Tensor:
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        var, mean = torch.var_mean(xf, dim=(2, 3), correction=0, keepdim=True)
        rstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(x, mean, rstd)  # x, not the output: a ReLU(inplace) follows
        return ((xf - mean) * rstd).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, mean, rstd = ctx.saved_tensors
        xhat = ((x.float() if x.dtype != mean.dtype else x) - mean) * rstd
        g = grad.to(mean.dtype)
        dx = rstd * (g - g.mean(dim=(2, 3), keepdim=True) - xhat * (g * xhat).mean(dim=(2, 3), keepdim=True))
        return dx.to(x.dtype), None


class LayoutSafeInstanceNorm(nn.Module):
    """Instance norm (no affine parameters, no running stats) with its own backward: the same
    function as ``nn.InstanceNorm2d``, for networks that run channels_last.

    Why: with torch 2.14 on the CPU, ``nn.InstanceNorm2d``'s backward returns wrong input
    gradients when the incoming gradient has channels-last strides and the batch holds one
    image (every profile here): the losses match, the weight gradients do not
    (``tests/test_precision.py``). ``F.group_norm`` with one group per channel is wrong in that
    layout too. The statistics are taken in float32 under autocast. No parameters or buffers:
    state dicts are unchanged.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.channels = channels
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _InstanceNormFunction.apply(x, self.eps)

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}"


def use_layout_safe_norms_(net: nn.Module) -> nn.Module:
    """Replace, in place, every parameter-free ``nn.InstanceNorm2d`` of ``net`` by ``LayoutSafeInstanceNorm``."""
    for name, child in net.named_children():
        if isinstance(child, nn.InstanceNorm2d) and not child.affine and not child.track_running_stats:
            setattr(net, name, LayoutSafeInstanceNorm(child.num_features, child.eps))
        else:
            use_layout_safe_norms_(child)
    return net


def _conv_bias(norm: str) -> bool:
    # a bias before batch norm is cancelled by its mean subtraction; instance norm without
    # affine parameters keeps the reference's bias (its use_bias rule)
    return norm != "batch"


# --- padding -------------------------------------------------------------------------------------
def reflection_pad(x: torch.Tensor, padding: tuple[int, int, int, int]) -> torch.Tensor:
    """Reflection padding (left, right, top, bottom) of the last two dims from flipped slices.

    Only slicing, ``flip`` and ``cat``, whose backward passes are deterministic on every
    device; CUDA's ``reflection_pad2d_backward`` accumulates with atomics and has no
    deterministic kernel, so ``torch.use_deterministic_algorithms(True)`` refuses it.
    """
    left, right, top, bottom = padding
    h, w = x.shape[-2:]
    if max(left, right) >= w or max(top, bottom) >= h or min(padding) < 0:
        raise ValueError(f"reflection padding {padding} needs each pad < the dimension it pads ({h}x{w})")
    if left or right:
        parts = [x[..., 1:left + 1].flip(-1)] if left else []
        parts.append(x)
        if right:
            parts.append(x[..., w - 1 - right:w - 1].flip(-1))
        x = torch.cat(parts, dim=-1)
    if top or bottom:
        parts = [x[..., 1:top + 1, :].flip(-2)] if top else []
        parts.append(x)
        if bottom:
            parts.append(x[..., h - 1 - bottom:h - 1, :].flip(-2))
        x = torch.cat(parts, dim=-2)
    return x


class ReflectionPad(nn.Module):
    """Drop-in for ``nn.ReflectionPad2d`` that stays usable under deterministic algorithms.

    With torch's deterministic mode on it pads with ``reflection_pad`` (flipped slices);
    otherwise with torch's own kernel. Both give the same values; their float32 gradients
    differ in the last bit (they sum the up to four contributions of a border pixel in a
    different order), so the fast kernel is kept where it is allowed and runs made without
    ``--deterministic`` compute exactly what they computed before. No parameters or buffers:
    swapping it for ``nn.ReflectionPad2d`` leaves every state-dict key where it was.
    """

    def __init__(self, padding: int | tuple[int, int, int, int]):
        super().__init__()
        sides = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
        if len(sides) != 4:
            raise ValueError(f"padding must be an int or (left, right, top, bottom), got {padding!r}")
        self.padding: tuple[int, int, int, int] = (int(sides[0]), int(sides[1]), int(sides[2]), int(sides[3]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.are_deterministic_algorithms_enabled():
            return reflection_pad(x, self.padding)
        return F.pad(x, self.padding, mode="reflect")

    def extra_repr(self) -> str:
        return f"{self.padding}"


# --- anti-aliased resampling (Zhang 2019), as the CUT repository defines it -----------------------
def binomial_filter(size: int) -> torch.Tensor:
    """``size`` x ``size`` outer product of row ``size - 1`` of Pascal's triangle, summing to 1.

    Size 3: [1, 2, 1] x [1, 2, 1] / 16; size 4: [1, 3, 3, 1] x [1, 3, 3, 1] / 64 (float64).
    """
    if size < 1:
        raise ValueError("filter size must be >= 1")
    row = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=torch.float64)
    grid = row[:, None] * row[None, :]
    return grid / grid.sum()


class BlurDownsample(nn.Module):
    """Reflection pad 1, depthwise 3x3 binomial blur, stride 2: halves H and W (rounding up).

    Low-pass before subsampling so that a one-pixel shift of the input does not alias into
    a different feature map; the filter is a fixed non-persistent buffer (a formula, not
    state), so checkpoints hold only learned tensors.
    """

    kernel_size = 3
    stride = 2
    filt: torch.Tensor

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.pad = ReflectionPad(1)
        filt = binomial_filter(self.kernel_size).float()[None, None].repeat(channels, 1, 1, 1)
        self.register_buffer("filt", filt, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.filt, stride=self.stride, groups=self.channels)


class BlurUpsample(nn.Module):
    """Replication pad 1, depthwise transposed 4x4 binomial filter (x4 gain), stride 2: doubles H, W.

    The CUT repository's ``Upsample``: ``conv_transpose2d(pad, filt, stride 2, padding 2)``
    cropped by one pixel on every side (its ``[1:, 1:]`` then ``[:-1, :-1]``). The gain 4 =
    stride squared keeps a constant image constant.
    """

    kernel_size = 4
    stride = 2
    filt: torch.Tensor

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        filt = (binomial_filter(self.kernel_size) * self.stride ** 2).float()[None, None].repeat(channels, 1, 1, 1)
        self.register_buffer("filt", filt, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # replication pad: torch's backward for it is deterministic on CUDA
        y = F.conv_transpose2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.filt, stride=self.stride,
                               padding=2, groups=self.channels)
        return y[..., 1:-1, 1:-1]


# --- generator -----------------------------------------------------------------------------------
class ResnetBlock(nn.Module):
    """Two 3x3 reflection-padded convs with a skip connection (optional dropout between)."""

    def __init__(self, channels: int, norm: str = "instance", use_dropout: bool = False):
        super().__init__()
        bias = _conv_bias(norm)
        layers: list[nn.Module] = [ReflectionPad(1), nn.Conv2d(channels, channels, 3, bias=bias),
                                   norm_layer(norm, channels), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [ReflectionPad(1), nn.Conv2d(channels, channels, 3, bias=bias), norm_layer(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def generator_taps(n_blocks: int) -> tuple[str, ...]:
    """Tap names of a ``ResnetGenerator`` with ``n_blocks`` residual blocks, shallow to deep."""
    return ("pad", "stem", "down1_conv", "down1", "down2_conv", "down2") + tuple(f"res{i + 1}" for i in range(n_blocks))


RESIDUAL_EPS = 1e-3  # inputs are clamped to +-(1 - eps) before atanh: 0.13 of a uint8 level at most


class ResnetGenerator(nn.Module):
    """c7s1-ngf, d2ngf, d4ngf, n x R4ngf, u2ngf, u ngf, c7s1-3 + tanh (Zhu et al. 2017, appendix)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance", use_dropout: bool = False, antialias: bool = False,
                 residual: bool = False):
        super().__init__()
        if n_blocks < 0:
            raise ValueError("n_blocks must be >= 0")
        if residual and in_channels != out_channels:
            raise ValueError("a residual generator needs as many output channels as input channels")
        bias = _conv_bias(norm)
        self.n_blocks = n_blocks
        self.antialias = antialias
        self.pad = ReflectionPad(3)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, ngf, 7, bias=bias), norm_layer(norm, ngf), nn.ReLU(True))
        self.down1 = _down(ngf, ngf * 2, norm, bias, antialias)
        self.down2 = _down(ngf * 2, ngf * 4, norm, bias, antialias)
        self.blocks = nn.Sequential(*[ResnetBlock(ngf * 4, norm, use_dropout) for _ in range(n_blocks)])
        self.up1 = _up(ngf * 4, ngf * 2, norm, bias, antialias)
        self.up2 = _up(ngf * 2, ngf, norm, bias, antialias)
        self.residual = residual
        # residual: the head predicts a change in tanh's pre-image space; see ``start_at_identity_``
        self.head = nn.Sequential(ReflectionPad(3), nn.Conv2d(ngf, out_channels, 7),
                                  *(() if residual else (nn.Tanh(),)))

    def start_at_identity_(self) -> ResnetGenerator:
        """Zero the residual head, so that the untrained generator returns its input (to 1e-3).

        Why: at a CPU budget the plain generator spends its whole schedule relearning to draw the
        painting it was given (docs/results.md, section 1); a residual one starts from the
        untouched painting and only learns the change that the losses ask for. Call it after the
        weight init, which would otherwise draw the head at random.
        """
        if not self.residual:
            raise ValueError("start_at_identity_ needs a generator built with residual=True")
        conv = self.head[1]
        with torch.no_grad():
            conv.weight.zero_()
            conv.bias.zero_()
        return self

    def _finish(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not self.residual:
            return y
        # tanh(atanh(x) + change): smooth, inside (-1, 1) for any change, exactly x for change 0
        return torch.tanh(torch.atanh(x.clamp(-1 + RESIDUAL_EPS, 1 - RESIDUAL_EPS)) + y)

    @property
    def taps(self) -> tuple[str, ...]:
        return generator_taps(self.n_blocks)

    def _encoder_stages(self) -> Iterator[tuple[str, Sequence[nn.Module]]]:
        """(tap name, modules from the previous tap to this one): the encoder, in order."""
        yield "pad", [self.pad]
        yield "stem", [self.stem]
        for name, step in (("down1", self.down1), ("down2", self.down2)):
            yield f"{name}_conv", [step[0]]
            yield name, list(step)[1:]
        for i, block in enumerate(self.blocks):
            yield f"res{i + 1}", [block]

    def _check_layers(self, layers: Sequence[str]) -> None:
        unknown = [name for name in layers if name not in self.taps]
        if unknown:
            raise ValueError(f"unknown generator tap(s) {unknown} (known: {', '.join(self.taps)})")

    def _run_encoder(self, x: torch.Tensor, layers: Sequence[str], stop_early: bool):
        self._check_layers(layers)
        wanted = set(layers)
        found: dict[str, torch.Tensor] = {}
        for name, modules in self._encoder_stages():
            for module in modules:
                x = module(x)
            if name in wanted:
                found[name] = x
                if stop_early and len(found) == len(wanted):
                    break
        return x, [found[name] for name in layers]

    def encode(self, x: torch.Tensor, layers: Sequence[str]) -> list[torch.Tensor]:
        """Encoder features at ``layers`` (tap names, see module docstring), in that order."""
        return self._run_encoder(x, layers, stop_early=True)[1]

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """The head's output: the image, or for a residual generator the change to add to it."""
        return self.head(self.up2(self.up1(h)))

    def forward_with_features(self, x: torch.Tensor, layers: Sequence[str]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The translation and the encoder taps of one forward pass."""
        h, feats = self._run_encoder(x, layers, stop_early=False)
        return self._finish(x, self.decode(h)), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.down2(self.down1(self.stem(self.pad(x)))))
        return self._finish(x, self.decode(h))

    def receptive_field(self, tap: str) -> int:
        """Input pixels (per side) that one feature of ``tap`` depends on through its convolutions.

        Counted from the module list like the CUT paper's numbers; instance norm's statistics
        (which see the whole image) are left out, as there.
        """
        self._check_layers([tap])
        modules: list[nn.Module] = []
        for name, stage in self._encoder_stages():
            modules += stage
            if name == tap:
                break
        return _receptive_field(modules)


def _down(cin: int, cout: int, norm: str, bias: bool, antialias: bool) -> nn.Sequential:
    if antialias:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=1, padding=1, bias=bias), norm_layer(norm, cout),
                             nn.ReLU(True), BlurDownsample(cout))
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=bias), norm_layer(norm, cout), nn.ReLU(True))


def _up(cin: int, cout: int, norm: str, bias: bool, antialias: bool) -> nn.Sequential:
    if antialias:
        return nn.Sequential(BlurUpsample(cin), nn.Conv2d(cin, cout, 3, stride=1, padding=1, bias=bias),
                             norm_layer(norm, cout), nn.ReLU(True))
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=bias),
                         norm_layer(norm, cout), nn.ReLU(True))


# --- discriminator -------------------------------------------------------------------------------
class PatchDiscriminator(nn.Module):
    """PatchGAN: with n_layers=3 each output logit sees 70x70 input pixels (84x84 anti-aliased)."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 antialias: bool = False):
        super().__init__()
        bias = _conv_bias(norm)
        self.antialias = antialias
        if antialias:
            layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=1, padding=1), nn.LeakyReLU(0.2, True),
                                       BlurDownsample(ndf)]
        else:
            layers = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            downsample = n < n_layers  # the last feature layer keeps the resolution
            stride = 2 if downsample and not antialias else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=bias),
                       norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2, True)]
            if downsample and antialias:
                layers.append(BlurDownsample(ndf * mult))
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _receptive_field(modules: Sequence[nn.Module]) -> int:
    """Receptive field of a chain of modules: 1 + sum (kernel - 1) x (product of earlier strides)."""
    rf, jump = 1, 1

    def visit(m: nn.Module) -> None:
        nonlocal rf, jump
        if isinstance(m, (nn.Conv2d, BlurDownsample)):
            kernel = m.kernel_size if isinstance(m, BlurDownsample) else m.kernel_size[0]
            stride = m.stride if isinstance(m, BlurDownsample) else m.stride[0]
            rf += (kernel - 1) * jump
            jump *= stride
        elif isinstance(m, (nn.ConvTranspose2d, BlurUpsample)):
            raise ValueError("receptive fields are counted on encoders only (no upsampling)")
        elif isinstance(m, (nn.Sequential, ResnetBlock)):
            for child in m.children():
                visit(child)

    for m in modules:
        visit(m)
    return rf


def receptive_field(net: PatchDiscriminator) -> int:
    """Receptive field (pixels) of one output of a PatchDiscriminator; 70 plain, 84 anti-aliased."""
    return _receptive_field(list(net.model))


# --- initialisation ------------------------------------------------------------------------------
def start_residual_generators_(nets: Iterator[nn.Module] | Sequence[nn.Module]) -> None:
    """Call after ``init_weights``: every residual generator among ``nets`` starts as the identity."""
    for net in nets:
        if isinstance(net, ResnetGenerator) and net.residual:
            net.start_at_identity_()


@torch.no_grad()
def init_weights(net: nn.Module, gain: float = 0.02, generator: torch.Generator | None = None,
                 init_type: str = "normal") -> nn.Module:
    """Conv/linear weights N(0, gain) (``normal``, CycleGAN) or xavier-normal with ``gain`` (CUT),
    zero biases, N(1, gain) batch-norm scales: the references' ``init_weights``.

    Xavier draws N(0, gain * sqrt(2 / (fan_in + fan_out))) with torch's fan rule, as
    ``nn.init.xavier_normal_`` does. Values are drawn on the CPU from ``generator`` (or the
    global generator) and copied in, so the same seed gives the same weights on any device.
    """
    if init_type not in INIT_TYPES:
        raise ValueError(f"unknown init_type {init_type!r} (known: {', '.join(INIT_TYPES)})")

    def normal(t: torch.Tensor, mean: float, std: float) -> None:
        t.copy_(torch.randn(t.shape, generator=generator, dtype=torch.float32) * std + mean)

    def std_of(w: torch.Tensor) -> float:
        if init_type == "normal":
            return gain
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)
        return gain * math.sqrt(2.0 / float(fan_in + fan_out))

    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            normal(m.weight, 0.0, std_of(m.weight))
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            normal(m.weight, 1.0, gain)
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
