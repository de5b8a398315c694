"""Network blocks of MUNIT (Huang et al. 2018) and UNIT (Liu et al. 2017), written after the layout
of the references' shared ``networks.py`` (NVlabs/MUNIT; mingyuliutw/UNIT at its HEAD uses the
same file), so that the modules, their order and their parameter counts are the references'.

- ``Conv2dBlock``: padding (reflect / zero) + conv (with bias) + norm (none / in / ln / adain) +
  activation (relu / lrelu 0.2 / tanh / none);
- ``LayerNorm``: the references' own, per image over C, H, W with the *unbiased* std and eps added
  to the std (not the variance), scale initialised U(0, 1), shift 0;
- ``AdaptiveInstanceNorm2d``: instance norm whose per-image scale and shift come from the MLP (the
  references assign them as attributes and run ``F.batch_norm`` over a [1, B*C, H, W] view; here
  they are passed explicitly, ``instance_norm(x) * std + mean``: the same function);
- ``StyleEncoder`` (global pooling, style_dim code), ``ContentEncoder`` (downsampling + residual
  blocks, instance norm), ``Decoder`` (AdaIN or IN residual blocks, nearest x2 upsampling + 5x5
  conv with layer norm, 7x7 conv + tanh), ``MLP``, ``MsImageDis`` (multi-scale LSGAN PatchGANs,
  3x3 average pooling between scales), ``AdaINGen`` (MUNIT) and ``VAEGen`` (UNIT);
- ``weights_init``: the references' ``weights_init`` (kaiming fan-in normal or N(0, 0.02) on conv
  and linear weights, zero biases), drawing from a generator so a seed fixes it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("none", "in", "ln", "adain")
ACTIVATIONS = ("relu", "lrelu", "tanh", "none")
PADS = ("reflect", "zero")


class LayerNorm(nn.Module):
    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.gamma = nn.Parameter(torch.empty(num_features).uniform_())
        self.beta = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        shape = [-1] + [1] * (x.dim() - 1)
        mean, std = flat.mean(1).view(*shape), flat.std(1).view(*shape)
        x = (x - mean) / (std + self.eps)
        return x * self.gamma.view(1, -1, *[1] * (x.dim() - 2)) + self.beta.view(1, -1, *[1] * (x.dim() - 2))


class AdaptiveInstanceNorm2d(nn.Module):
    """Instance norm (biased variance, eps 1e-5) with a per-image scale/shift set by ``assign``."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.mean: torch.Tensor | None = None  # [B, C]
        self.std: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is None or self.std is None:
            raise RuntimeError("AdaIN parameters were not assigned before the decoder ran")
        y = F.instance_norm(x, eps=self.eps)
        return y * self.std[:, :, None, None] + self.mean[:, :, None, None]


class Conv2dBlock(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int = 0, norm: str = "none",
                 activation: str = "relu", pad_type: str = "zero"):
        super().__init__()
        if pad_type not in PADS or norm not in NORMS or activation not in ACTIVATIONS:
            raise ValueError(f"bad Conv2dBlock settings: pad {pad_type}, norm {norm}, activation {activation}")
        self.pad: nn.Module = nn.ReflectionPad2d(padding) if pad_type == "reflect" else nn.ZeroPad2d(padding)
        self.conv = nn.Conv2d(cin, cout, kernel, stride, bias=True)
        self.norm: nn.Module | None = {"in": lambda: nn.InstanceNorm2d(cout), "ln": lambda: LayerNorm(cout),
                                       "adain": lambda: AdaptiveInstanceNorm2d(cout), "none": lambda: None}[norm]()
        self.activation: nn.Module | None = {"relu": lambda: nn.ReLU(inplace=True),
                                             "lrelu": lambda: nn.LeakyReLU(0.2, inplace=True),
                                             "tanh": lambda: nn.Tanh(), "none": lambda: None}[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pad(x))
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class ResBlock(nn.Module):
    def __init__(self, dim: int, norm: str = "in", activation: str = "relu", pad_type: str = "zero"):
        super().__init__()
        self.model = nn.Sequential(Conv2dBlock(dim, dim, 3, 1, 1, norm, activation, pad_type),
                                   Conv2dBlock(dim, dim, 3, 1, 1, norm, "none", pad_type))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.model(x)


def res_blocks(n: int, dim: int, norm: str, activation: str, pad_type: str) -> nn.Sequential:
    return nn.Sequential(*[ResBlock(dim, norm, activation, pad_type) for _ in range(n)])


class StyleEncoder(nn.Module):
    def __init__(self, n_downsample: int, input_dim: int, dim: int, style_dim: int, norm: str, activ: str,
                 pad_type: str):
        super().__init__()
        layers: list[nn.Module] = [Conv2dBlock(input_dim, dim, 7, 1, 3, norm, activ, pad_type)]
        for _ in range(2):
            layers.append(Conv2dBlock(dim, 2 * dim, 4, 2, 1, norm, activ, pad_type))
            dim *= 2
        for _ in range(n_downsample - 2):
            layers.append(Conv2dBlock(dim, dim, 4, 2, 1, norm, activ, pad_type))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, style_dim, 1, 1, 0)]
        self.model = nn.Sequential(*layers)
        self.output_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ContentEncoder(nn.Module):
    def __init__(self, n_downsample: int, n_res: int, input_dim: int, dim: int, norm: str, activ: str,
                 pad_type: str):
        super().__init__()
        layers: list[nn.Module] = [Conv2dBlock(input_dim, dim, 7, 1, 3, norm, activ, pad_type)]
        for _ in range(n_downsample):
            layers.append(Conv2dBlock(dim, 2 * dim, 4, 2, 1, norm, activ, pad_type))
            dim *= 2
        layers.append(res_blocks(n_res, dim, norm, activ, pad_type))
        self.model = nn.Sequential(*layers)
        self.output_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Decoder(nn.Module):
    def __init__(self, n_upsample: int, n_res: int, dim: int, output_dim: int, res_norm: str = "adain",
                 activ: str = "relu", pad_type: str = "zero"):
        super().__init__()
        layers: list[nn.Module] = [res_blocks(n_res, dim, res_norm, activ, pad_type)]
        for _ in range(n_upsample):
            layers += [nn.Upsample(scale_factor=2), Conv2dBlock(dim, dim // 2, 5, 1, 2, "ln", activ, pad_type)]
            dim //= 2
        layers.append(Conv2dBlock(dim, output_dim, 7, 1, 3, "none", "tanh", pad_type))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MLP(nn.Module):
    def __init__(self, input_dim: int, output_dim: int, dim: int, n_blk: int, activ: str = "relu"):
        super().__init__()
        act = {"relu": lambda: nn.ReLU(inplace=True), "lrelu": lambda: nn.LeakyReLU(0.2, inplace=True),
               "tanh": lambda: nn.Tanh()}[activ]
        layers: list[nn.Module] = [nn.Linear(input_dim, dim), act()]
        for _ in range(n_blk - 2):
            layers += [nn.Linear(dim, dim), act()]
        layers.append(nn.Linear(dim, output_dim))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.reshape(x.shape[0], -1))


class AdaINGen(nn.Module):
    """MUNIT's auto-encoder for one domain: style encoder, content encoder, AdaIN decoder + MLP."""

    def __init__(self, input_dim: int = 3, dim: int = 64, style_dim: int = 8, n_downsample: int = 2, n_res: int = 4,
                 activ: str = "relu", pad_type: str = "reflect", mlp_dim: int = 256):
        super().__init__()
        self.style_dim = style_dim
        self.enc_style = StyleEncoder(4, input_dim, dim, style_dim, "none", activ, pad_type)
        self.enc_content = ContentEncoder(n_downsample, n_res, input_dim, dim, "in", activ, pad_type)
        self.dec = Decoder(n_downsample, n_res, self.enc_content.output_dim, input_dim, "adain", activ, pad_type)
        self.adain_layers = [m for m in self.dec.modules() if isinstance(m, AdaptiveInstanceNorm2d)]
        self.mlp = MLP(style_dim, sum(2 * m.num_features for m in self.adain_layers), mlp_dim, 3, activ)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(content code [B, C, H/4, W/4], style code [B, style_dim, 1, 1])."""
        return self.enc_content(images), self.enc_style(images)

    def decode(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        params = self.mlp(style)
        # the references' assign_adain_params order: per layer [mean (C), std (C)], layer after layer
        for m in self.adain_layers:
            m.mean = params[:, :m.num_features]
            m.std = params[:, m.num_features:2 * m.num_features]
            params = params[:, 2 * m.num_features:]
        try:
            return self.dec(content)
        finally:
            for m in self.adain_layers:
                m.mean = m.std = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(*self.encode(images))


class VAEGen(nn.Module):
    """UNIT's auto-encoder for one domain: content encoder and IN decoder (a VAE with unit variance)."""

    def __init__(self, input_dim: int = 3, dim: int = 64, n_downsample: int = 2, n_res: int = 4, activ: str = "relu",
                 pad_type: str = "reflect"):
        super().__init__()
        self.enc = ContentEncoder(n_downsample, n_res, input_dim, dim, "in", activ, pad_type)
        self.dec = Decoder(n_downsample, n_res, self.enc.output_dim, input_dim, "in", activ, pad_type)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hiddens, noise ~ N(0, 1) of their shape), as the references' ``encode``."""
        hiddens = self.enc(images)
        return hiddens, torch.randn_like(hiddens)

    def decode(self, hiddens: torch.Tensor) -> torch.Tensor:
        return self.dec(hiddens)


class MsImageDis(nn.Module):
    """Multi-scale discriminator: ``num_scales`` PatchGANs on the image and its 3x3-avg-pooled halvings."""

    def __init__(self, input_dim: int = 3, dim: int = 64, n_layer: int = 4, norm: str = "none", activ: str = "lrelu",
                 num_scales: int = 3, pad_type: str = "reflect"):
        super().__init__()
        self.downsample = nn.AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)
        self.cnns = nn.ModuleList()
        for _ in range(num_scales):
            d = dim
            layers: list[nn.Module] = [Conv2dBlock(input_dim, d, 4, 2, 1, "none", activ, pad_type)]
            for _ in range(n_layer - 1):
                layers.append(Conv2dBlock(d, 2 * d, 4, 2, 1, norm, activ, pad_type))
                d *= 2
            layers.append(nn.Conv2d(d, 1, 1, 1, 0))
            self.cnns.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for model in self.cnns:
            outputs.append(model(x))
            x = self.downsample(x)
        return outputs


def dis_loss(outs_fake: list[torch.Tensor], outs_real: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN ``calc_dis_loss``: sum over scales of mean(fake^2) + mean((real - 1)^2)."""
    return sum((torch.mean(f ** 2) + torch.mean((r - 1) ** 2) for f, r in zip(outs_fake, outs_real, strict=True)),
               torch.zeros((), device=outs_fake[0].device))


def gen_loss(outs_fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN ``calc_gen_loss``: sum over scales of mean((fake - 1)^2)."""
    return sum((torch.mean((f - 1) ** 2) for f in outs_fake), torch.zeros((), device=outs_fake[0].device))


def recon_criterion(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean(torch.abs(x - target))


INITS = ("kaiming", "gaussian", "xavier")


@torch.no_grad()
def weights_init(net: nn.Module, init_type: str, generator: torch.Generator) -> None:
    """The references' ``weights_init`` on every Conv*/Linear module: kaiming-normal (fan-in, a=0),
    N(0, 0.02) (``gaussian``) or xavier-normal with gain sqrt 2; zero biases. Other parameters
    (LayerNorm's U(0, 1) scale) keep their construction-time values."""
    if init_type not in INITS:
        raise ValueError(f"unknown init {init_type!r}")
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            w = m.weight
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)
            std = {"kaiming": math.sqrt(2.0 / fan_in), "gaussian": 0.02,
                   "xavier": math.sqrt(2.0) * math.sqrt(2.0 / (fan_in + fan_out))}[init_type]
            w.copy_(torch.randn(w.shape, generator=generator) * std)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, LayerNorm):
            m.gamma.copy_(torch.rand(m.gamma.shape, generator=generator))
            m.beta.zero_()
