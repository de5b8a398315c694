"""Fast feed-forward style transfer (Johnson, Alahi, Fei-Fei, ECCV 2016) with instance
normalisation (Ulyanov et al. 2016), as a painting -> photo method.

Conventions follow the authors' code, jcjohnson/fast-neural-style (``train.lua``,
``fast_neural_style/models.lua``), with its defaults where the paper and code agree:

- transformation network ``c9s1-32, d64, d128, 5 x R128, u64, u32, c9s1-3`` with instance norm
  (affine, ``-use_instance_norm 1``), ReLU, a 40-pixel reflection pad at the start and residual
  blocks of unpadded 3x3 convolutions whose skip is shaved by 2 pixels (``-padding_type
  reflect-start``), learned (transposed-conv) upsampling, tanh output. Output size = input size
  for sides that are multiples of 4;
- perceptual loss on a frozen VGG: feature reconstruction at relu2_2 (the paper's choice for
  style transfer; the code's default layer is relu3_3), style reconstruction at relu1_2, relu2_2,
  relu3_3, relu4_3 (Gram / (C H W), MSE), weights 1 and 5 (the code's ``-content_weights 1.0``
  ``-style_weights 5.0``), total variation 1e-6 (``-tv_strength``), Adam lr 1e-3, batch 4,
  40,000 iterations on 256 x 256 content images.

This suite's choice of style target (``style_image=""``, every profile's default): the Gram
matrices averaged over a fixed sample of ``style_photos`` training photos (evenly spaced over
the sorted list, like Gatys' rescaling photos), so the network maps paintings to the photo
domain's texture statistics rather than one picture's. ``--set style_image=PATH`` trains on one
image, the paper's setting; a path that is not an image is a one-line error when the setting is
read. The VGG-19 policy (weights, random-init label, mean-activation rescaling) is Gatys' and
AdaIN's (``baselines.style_vgg``). docs/methods/johnson.md lists every difference from the
reference and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from baselines.cyclegan import PRECISIONS, UnpairedGAN, _epoch_permutation
from baselines.gatys import _to_float, gram
from baselines.networks import pad_to_multiple
from baselines.style_vgg import (
    WEIGHTS,
    activation_scales,
    apply_scales_,
    calibration_photos,
    load_vgg19,
    scaled_id,
)
from benchmark.core.errors import ArtshiftError
from benchmark.core.method import RunContext, TrainData
from benchmark.core.profiles import check_config, check_profile
from benchmark.data import BadImageError, load_image
from benchmark.features.vgg import VGG19_LAYERS


@dataclass
class JohnsonConfig:
    """Defaults are the reference's (the ``paper`` profile), with this suite's style target."""

    load_size: int = 256  # content images resized to load x load (the reference's 256 x 256 HDF5 set) ...
    crop_size: int = 256  # ... and cropped (= load: no crop, as the reference)
    flip: bool = False
    batch_size: int = 4
    epoch_size: int | None = None  # orders the paintings; None: #paintings // batch_size
    max_iter: int = 40_000
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    ngf: int = 32
    n_res: int = 5
    content_layers: tuple[str, ...] = ("relu2_2",)
    style_layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
    content_weight: float = 1.0
    style_weight: float = 5.0
    tv_weight: float = 1e-6  # in the reference's units: 0-255 pixels (see tv_loss)
    style_image: str = ""  # "" = the photo domain (mean Gram of style_photos photos); a path = one image
    style_photos: int = 64
    style_size: int = 256  # style image(s) scaled so the longer side is this (-style_image_size)
    weights: str = "pretrained"
    random_init_seed: int = 0
    allow_download: bool = False
    normalise: bool = True
    normalise_photos: int = 64
    normalise_size: int = 224
    checkpoint_every: int = 1000  # the reference's -checkpoint_every
    precision: str = "fp32"
    channels_last: bool = False

    RANGES: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "load_size": (16, None), "crop_size": (16, None), "batch_size": (1, None), "epoch_size": (1, None),
        "max_iter": (1, None), "lr": (1e-12, 1.0), "beta1": (0, 0.999999), "beta2": (0, 0.999999), "ngf": (1, None),
        "n_res": (0, None), "content_weight": (0, None), "style_weight": (0, None), "tv_weight": (0, None),
        "style_photos": (1, None), "style_size": (16, None), "normalise_photos": (1, None),
        "normalise_size": (32, None), "checkpoint_every": (1, None)}

    def check(self) -> list[str]:
        problems = []
        if self.crop_size > self.load_size:
            problems.append(f"crop_size={self.crop_size} is larger than load_size={self.load_size}")
        if self.weights not in WEIGHTS:
            problems.append(f"weights={self.weights!r} is not one of {', '.join(WEIGHTS)}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision={self.precision!r} is not one of {', '.join(PRECISIONS)}")
        bad = [name for name in (*self.content_layers, *self.style_layers) if name not in VGG19_LAYERS
               or name == "pool5"]
        if bad:
            problems.append(f"unknown VGG-19 layer(s) {', '.join(bad)} (e.g. relu2_2)")
        if not self.content_layers or not self.style_layers:
            problems.append("content_layers and style_layers need at least one layer each")
        if self.style_image:
            try:
                load_image(Path(self.style_image), min_side=1)
            except BadImageError as exc:
                problems.append(f"style_image={self.style_image!r} is not an image ({exc.problem})")
        return problems


PROFILE_SETTINGS: dict[str, dict[str, Any]] = {
    # seconds: a narrow network with 2 residual blocks on 32 px paintings, 10 iterations of batch 2
    "ci": dict(load_size=32, crop_size=32, batch_size=2, max_iter=10, ngf=8, n_res=2, style_photos=4, style_size=32,
               weights="auto", normalise_photos=4, normalise_size=32, checkpoint_every=5),
    # minutes on 2 CPU cores: the reference's network on 64 px paintings (144 px after its 40 px
    # start pad), batch 4; an iteration cost 4.2x a CycleGAN smoke iteration (1 thread, alternating
    # in one process), so 450 of them ~ 1900 CycleGAN smoke iterations
    "smoke": dict(load_size=64, crop_size=64, batch_size=4, max_iter=450, style_photos=32, style_size=64,
                  weights="auto", normalise_photos=16, normalise_size=128, checkpoint_every=150),
    # about an hour on one GPU: the reference's sizes, a quarter of its iterations
    "quick": dict(max_iter=10_000),
    "paper": dict(),
}
# not tuned for cpu yet (issue 24 tuned the core GANs): smoke's settings, so the profile runs
PROFILE_SETTINGS["cpu"] = PROFILE_SETTINGS["smoke"]


# --- the transformation network ------------------------------------------------------------------
def _pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """Reflection pad by ``p``, or replication where the image is too small to reflect."""
    if p == 0:
        return x
    return F.pad(x, (p, p, p, p), mode="reflect" if p < min(x.shape[-2:]) else "replicate")


class ValidResBlock(nn.Module):
    """``build_res_block`` with reflect-start padding: two unpadded 3x3 convs with instance norm and
    ReLU between; the skip is shaved by 2 pixels per side to match (``ShaveImage(2)``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim, affine=True), nn.ReLU(True),
                                  nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., 2:-2, 2:-2] + self.body(x)


class TransformNet(nn.Module):
    """c9s1-ngf, d2ngf, d4ngf, n_res x R4ngf, u2ngf, u ngf, c9s1-3, tanh (``models.lua``)."""

    def __init__(self, ngf: int = 32, n_res: int = 5):
        super().__init__()
        self.start_pad = 8 * n_res  # each block shaves 2 px per side at quarter resolution: 40 for 5 blocks
        def block(conv: nn.Module, dim: int) -> list[nn.Module]:
            return [conv, nn.InstanceNorm2d(dim, affine=True), nn.ReLU(True)]

        self.model = nn.Sequential(
            *block(nn.Conv2d(3, ngf, 9, 1, 4), ngf),
            *block(nn.Conv2d(ngf, 2 * ngf, 3, 2, 1), 2 * ngf),
            *block(nn.Conv2d(2 * ngf, 4 * ngf, 3, 2, 1), 4 * ngf),
            *[ValidResBlock(4 * ngf) for _ in range(n_res)],
            *block(nn.ConvTranspose2d(4 * ngf, 2 * ngf, 3, 2, 1, output_padding=1), 2 * ngf),
            *block(nn.ConvTranspose2d(2 * ngf, ngf, 3, 2, 1, output_padding=1), ngf),
            nn.Conv2d(ngf, 3, 9, 1, 4), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(_pad(x, self.start_pad))


@torch.no_grad()
def init_torch7_(net: nn.Module, generator: torch.Generator) -> None:
    """Torch7's defaults, which the reference keeps: conv and full-conv weights and biases
    U(-1/sqrt(k k cin), +), instance-norm scales U(0, 1) and shifts 0 (``InstanceNormalization``)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            cin = m.in_channels
            stdv = 1.0 / math.sqrt(m.kernel_size[0] * m.kernel_size[1] * cin)
            m.weight.uniform_(-stdv, stdv, generator=generator)
            m.bias.uniform_(-stdv, stdv, generator=generator)
        elif isinstance(m, nn.InstanceNorm2d) and m.affine:
            m.weight.uniform_(0.0, 1.0, generator=generator)
            m.bias.zero_()


# --- losses ---------------------------------------------------------------------------------------
def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """The reference's ``TotalVariation`` as a loss in its pixel units (0-255): its backward is the
    gradient of 1/2 sum over the top-left (H-1) x (W-1) window of (x[i,j] - x[i,j+1])^2 +
    (x[i,j] - x[i+1,j])^2, summed over the batch; artshift's pixels in [-1, 1] are 127.5 of them."""
    x = x * 127.5
    dx = x[..., :-1, :-1] - x[..., :-1, 1:]
    dy = x[..., :-1, :-1] - x[..., 1:, :-1]
    return 0.5 * (dx.pow(2).sum() + dy.pow(2).sum())


def content_loss(out: dict[str, torch.Tensor], target: dict[str, torch.Tensor], layers) -> torch.Tensor:
    """Sum over layers of MSE(features) (``ContentLoss`` with ``nn.MSECriterion``)."""
    return sum((F.mse_loss(out[k], target[k]) for k in layers), torch.zeros(()))


def style_loss(out: dict[str, torch.Tensor], target_grams: dict[str, torch.Tensor], layers) -> torch.Tensor:
    """Sum over layers of MSE(Gram / (C H W), target Gram) (``StyleLoss``, ``GramMatrix``), the
    target broadcast over the batch."""
    total = torch.zeros(())
    for k in layers:
        g = gram(out[k])
        total = total + F.mse_loss(g, target_grams[k].expand_as(g))
    return total


def _scale_longer(image: torch.Tensor, size: int) -> torch.Tensor:
    """``image.scale(img, size)``: the longer side becomes ``size``, aspect kept."""
    h, w = image.shape[-2:]
    s = size / max(h, w)
    return F.interpolate(image, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear",
                         align_corners=False, antialias=True)


class Johnson(UnpairedGAN):
    name = "johnson"
    config_class: ClassVar[type] = JohnsonConfig

    @classmethod
    def default_config(cls, profile: str) -> JohnsonConfig:
        return cls.config_class(**PROFILE_SETTINGS[check_profile(profile)])

    @classmethod
    def label_tags(cls, config: JohnsonConfig) -> tuple[str, ...]:
        """The style target is always named: the photo-domain mean is this suite's choice, not the paper's."""
        if config.style_image:
            return (f"style image {Path(config.style_image).name}",)
        return (f"style: mean Gram of {config.style_photos} photos",)

    def __init__(self, config: JohnsonConfig | None = None, device: torch.device | str = "cpu"):
        super().__init__(check_config(config or JohnsonConfig()), device)
        c = self.config
        self.checkpoint_every = int(c.checkpoint_every)
        self.net_T = TransformNet(c.ngf, c.n_res).to(self.device)
        self.init_networks(torch.Generator().manual_seed(0))
        self.init_precision()
        self.opt = torch.optim.Adam(self.net_T.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
        self.layers = tuple(dict.fromkeys((*c.content_layers, *c.style_layers)))
        self.vgg: Any = None
        self.weights_id: str | None = None
        self.base_weights_id: str | None = None
        self.scales: dict[int, torch.Tensor] | None = None
        self.target_grams: dict[str, torch.Tensor] | None = None
        self.style_sources: list[str] = []

    def networks(self) -> dict[str, nn.Module]:
        return {"T": self.net_T}

    def init_networks(self, generator: torch.Generator) -> None:
        init_torch7_(self.net_T, generator)

    def total_iterations(self) -> int:
        return int(self.config.max_iter)

    def lr_at(self, iteration: int) -> float:
        return self.config.lr  # the reference's default -lr_decay_every -1: constant

    def setup(self, data: TrainData, run: RunContext) -> None:
        # the content set is the paintings alone: one epoch = #paintings / batch
        self._sizes = (len(data.paintings), len(data.paintings))
        self.init_networks(torch.Generator().manual_seed(int(run.seed)))
        if self.vgg is None:
            c = self.config
            deepest = max(self.layers, key=lambda k: VGG19_LAYERS[k])
            vgg, wid = load_vgg19(self.name, c.weights, c.random_init_seed, c.allow_download, run.home, run.log,
                                  deepest)
            self.vgg, self.base_weights_id, self.weights_id = vgg.to(self.device), wid, wid

    def _apply_scales(self, scales: dict[int, torch.Tensor] | None) -> None:
        if scales:
            apply_scales_(self.vgg, scales)
        assert self.base_weights_id is not None
        self.scales, self.weights_id = scales, scaled_id(self.base_weights_id, scales)

    def prepare(self, data: TrainData, run: RunContext) -> None:
        """Load the paintings (content); rescale the VGG and take the style Grams unless a
        checkpoint brought them."""
        c = self.config
        self.paintings = self._load(data.paintings, data.skip_bad_images, "paintings", run)
        run.log.info("%s: %d paintings at %d px", self.name, len(self.paintings), c.load_size)
        if self.target_grams is None:
            scales = None
            if c.normalise:
                paths = calibration_photos(list(data.photos), c.normalise_photos)
                scales = activation_scales(self.name, self.vgg, paths, c.normalise_size, data.skip_bad_images, run.log)
            self._apply_scales(scales)
            self.target_grams, self.style_sources = self._style_grams(data, run)
        run.log.info("%s: VGG-19 %s; style target from %d image(s)", self.name, self.weights_id,
                     len(self.style_sources))

    def _style_grams(self, data: TrainData, run: RunContext) -> tuple[dict[str, torch.Tensor], list[str]]:
        c = self.config
        paths = [Path(c.style_image)] if c.style_image else calibration_photos(list(data.photos), c.style_photos)
        sums: dict[str, torch.Tensor] = {}
        used = []
        for p in paths:
            try:
                img = load_image(p, min_side=1)
            except BadImageError:
                if c.style_image or not data.skip_bad_images:
                    raise
                run.log.warning("%s: skipping bad style photo %s", self.name, p)
                continue
            x = _scale_longer(_to_float([img]).to(self.device), c.style_size)
            with torch.no_grad():
                feats = self.vgg(x, tuple(c.style_layers))
            for k in c.style_layers:
                g = gram(feats[k]).double()
                sums[k] = sums[k] + g if k in sums else g
            used.append(str(p))
        if not used:
            raise ArtshiftError(f"{self.name}: no readable style photo")
        return {k: (v / len(used)).float() for k, v in sums.items()}, used

    def batch(self, seed: int, iteration: int) -> dict[str, torch.Tensor]:
        """Painting crops of one iteration: a pure function of (seed, iteration)."""
        if self.paintings is None:
            raise RuntimeError("batch() before prepare(): training images are not loaded")
        bs = self.config.batch_size
        epoch, pos = divmod(iteration, self.epoch_size)
        order = _epoch_permutation(seed, epoch, self.epoch_size * bs)
        idx = [int(order[pos * bs + j]) % len(self.paintings) for j in range(bs)]
        rng = np.random.default_rng([seed % 2**63, iteration, 0x1A5])
        return {"A": self._augment(self.paintings, idx, rng)}

    def losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        assert self.target_grams is not None
        with torch.no_grad():
            target = self.vgg(x, tuple(c.content_layers))
        out = self.net(self.net_T, x)
        feats = self.vgg(out, self.layers)
        return {"content": c.content_weight * content_loss(feats, target, c.content_layers),
                "style": c.style_weight * style_loss(feats, self.target_grams, c.style_layers),
                "tv": c.tv_weight * tv_loss(out)}

    def train_step(self, batch: dict[str, torch.Tensor], iteration: int) -> dict[str, torch.Tensor]:
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(iteration)
        self.net_T.train()
        self.opt.zero_grad(set_to_none=True)
        losses = self.losses(batch["A"])
        self.backward(losses["content"] + losses["style"] + losses["tv"])
        self.step(self.opt)
        self.scaler.update()
        return {k: v.detach() for k, v in losses.items()}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"T": self.net_T.state_dict(), "opt": self.opt.state_dict(),
                                 "vgg_scales": dict(self.scales or {}), "vgg_id": self.base_weights_id,
                                 "target_grams": dict(self.target_grams or {}), "style_sources": list(self.style_sources)}
        state.update(self.precision_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net_T.load_state_dict(state["T"])
        self.opt.load_state_dict(state["opt"])
        if self.vgg is not None and self.target_grams is None:
            if state.get("vgg_id") != self.base_weights_id:
                raise ValueError(f"the checkpoint was trained with VGG {state.get('vgg_id')}, "
                                 f"this run loads {self.base_weights_id}")
            self._apply_scales({int(k): v for k, v in state["vgg_scales"].items()} or None)
            self.target_grams = dict(state["target_grams"])
            self.style_sources = list(state["style_sources"])
        self.load_precision_state(state)

    def fit(self, data: TrainData, run: RunContext) -> None:
        super().fit(data, run)
        (run.run_dir / "weights_id.txt").write_text(f"vgg19 {self.weights_id}\n")

    @torch.no_grad()
    def translate(self, images: torch.Tensor) -> torch.Tensor:
        """One forward pass of the transformation network at the images' own size (padded to 4)."""
        was = self.net_T.training
        self.net_T.eval()
        try:
            x, (h, w) = pad_to_multiple(images.to(self.device, torch.float32), 4)
            out = self.net(self.net_T, x)[..., :h, :w]
        finally:
            self.net_T.train(was)
        return out.clamp(-1, 1).to(images.device)
