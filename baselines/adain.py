"""AdaIN arbitrary style transfer (Huang & Belongie, ICCV 2017) as a painting -> photo method.

The painting is the *content*, a real photo the *style*: the photo plays the role the paper's
style-transfer row gives it (as in ``gatys``). Conventions follow naoto0804/pytorch-AdaIN, the
PyTorch port the field uses:

- encoder: VGG-19 up to relu4_1, frozen, reflection-padded convolutions, max pooling; its
  weights come from Gatys' policy (``baselines.style_vgg``: ImageNet file, or a labelled
  random-init network), rescaled to mean activation 1 on training photos like the reference's
  ``vgg_normalised`` (Gatys' normalised VGG);
- AdaIN: ``(f_c - mean(f_c)) / std(f_c) * std(f_s) + mean(f_s)`` per channel, std from the
  unbiased variance plus eps 1e-5 (the reference's ``calc_mean_std``);
- decoder: the encoder mirrored (conv 512->256, 3 nearest x2 upsamplings, 9 reflection-padded
  3x3 convolutions with ReLU, no normalisation, no output activation), PyTorch's default init;
- loss: content = MSE(relu4_1 of the output, AdaIN target t), style = sum over relu1_1,
  relu2_1, relu3_1, relu4_1 of MSE(means) + MSE(stds) against the style photo, total =
  content + 10 x style; Adam on the decoder only, lr 1e-4 / (1 + 5e-5 x iteration), batch 8,
  160,000 iterations, images resized to 512 x 512 then randomly cropped to 256 (``paper``).

Translation: one forward pass per painting with a training photo chosen by a hash of (run seed,
painting pixels), so the choice is reproducible and independent of batching; the photo is
resized to the painting's shorter side (the reference's equal ``content_size`` /
``style_size``); ``alpha`` in [0, 1] blends the AdaIN target with the painting's own features
(1 = full transfer, the reference's default). docs/methods/adain.md lists every difference
from the reference and why.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from baselines.cyclegan import PRECISIONS, UnpairedGAN
from baselines.gatys import _image_hash, _resize_short, _to_float
from baselines.networks import pad_to_multiple
from baselines.style_vgg import (
    WEIGHTS,
    activation_scales,
    apply_scales_,
    calibration_photos,
    load_vgg19,
    scaled_id,
    use_reflection_padding_,
)
from benchmark.core.errors import ArtshiftError
from benchmark.core.method import RunContext, TrainData
from benchmark.core.profiles import check_config, check_profile
from benchmark.data import BadImageError, load_image

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
CONTENT_LAYER = "relu4_1"


@dataclass
class AdaINConfig:
    """Defaults are the reference's (the ``paper`` profile)."""

    load_size: int = 512  # training images resized to load x load (the reference's Resize((512, 512)))
    crop_size: int = 256  # ... then randomly cropped
    flip: bool = False  # the reference does not flip
    batch_size: int = 8
    epoch_size: int | None = None  # only orders the paintings (the schedule is max_iter); None: the data's size
    max_iter: int = 160_000
    lr: float = 1e-4
    lr_decay: float = 5e-5  # lr / (1 + lr_decay * iteration)
    beta1: float = 0.9  # torch's Adam defaults, as the reference
    beta2: float = 0.999
    content_weight: float = 1.0
    style_weight: float = 10.0
    alpha: float = 1.0  # translation only: 1 = full AdaIN target, 0 = the painting's own features
    weights: str = "pretrained"  # VGG-19: pretrained | random (labelled) | auto (ci/smoke), as gatys
    random_init_seed: int = 0
    allow_download: bool = False
    normalise: bool = True  # mean-activation rescaling (the reference's vgg_normalised)
    normalise_photos: int = 64
    normalise_size: int = 224
    vgg_padding: str = "reflect"  # the reference's VGG pads by reflection; "zeros" = torchvision's
    checkpoint_every: int = 10_000  # the reference's save_model_interval
    precision: str = "fp32"  # decoder forward under autocast (the frozen VGG stays float32)
    channels_last: bool = False

    RANGES: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "load_size": (16, None), "crop_size": (16, None), "batch_size": (1, None), "epoch_size": (1, None),
        "max_iter": (1, None), "lr": (1e-12, 1.0), "lr_decay": (0, None), "beta1": (0, 0.999999),
        "beta2": (0, 0.999999), "content_weight": (0, None), "style_weight": (0, None), "alpha": (0, 1),
        "normalise_photos": (1, None), "normalise_size": (32, None), "checkpoint_every": (1, None)}

    def check(self) -> list[str]:
        problems = []
        if self.crop_size > self.load_size:
            problems.append(f"crop_size={self.crop_size} is larger than load_size={self.load_size}")
        if self.weights not in WEIGHTS:
            problems.append(f"weights={self.weights!r} is not one of {', '.join(WEIGHTS)}")
        if self.vgg_padding not in ("reflect", "zeros"):
            problems.append(f"vgg_padding={self.vgg_padding!r} is not one of reflect, zeros")
        if self.precision not in PRECISIONS:
            problems.append(f"precision={self.precision!r} is not one of {', '.join(PRECISIONS)}")
        return problems


PROFILE_SETTINGS: dict[str, dict[str, Any]] = {
    # seconds: 32 px crops of 48 px images, 10 iterations of batch 2
    "ci": dict(load_size=48, crop_size=32, batch_size=2, max_iter=10, weights="auto", normalise_photos=4,
               normalise_size=32, checkpoint_every=5),
    # minutes on 2 CPU cores: the reference's resize-to-2x-then-crop at 64 px crops, batch 4; an
    # iteration cost 3.8x a CycleGAN smoke iteration (1 thread, alternating in one process,
    # docs/methods/adain.md), so 500 of them ~ 1900 CycleGAN smoke iterations
    "smoke": dict(load_size=128, crop_size=64, batch_size=4, max_iter=500, weights="auto", normalise_photos=16,
                  normalise_size=128, checkpoint_every=250),
    # about an hour on one GPU: the reference's sizes, a tenth of its iterations
    "quick": dict(max_iter=16_000, checkpoint_every=2000),
    "paper": dict(),
}
# not tuned for cpu yet (issue 24 tuned the core GANs): smoke's settings, so the profile runs
PROFILE_SETTINGS["cpu"] = PROFILE_SETTINGS["smoke"]


def calc_mean_std(feat: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean and std (unbiased variance + eps, then sqrt): [N, C, 1, 1] each."""
    n, c = feat.shape[:2]
    flat = feat.reshape(n, c, -1)
    return flat.mean(dim=2).view(n, c, 1, 1), (flat.var(dim=2) + eps).sqrt().view(n, c, 1, 1)


def adaptive_instance_norm(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """AdaIN(x, y) = sigma(y) (x - mu(x)) / sigma(x) + mu(y), per image and channel."""
    c_mean, c_std = calc_mean_std(content)
    s_mean, s_std = calc_mean_std(style)
    return (content - c_mean) / c_std * s_std + s_mean


def make_decoder() -> nn.Sequential:
    """The reference's ``net.decoder``, module for module (so its parameter count and order match)."""
    def conv(cin: int, cout: int, relu: bool = True) -> list[nn.Module]:
        return [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(cin, cout, (3, 3))] + ([nn.ReLU()] if relu else [])

    up = [nn.Upsample(scale_factor=2, mode="nearest")]
    return nn.Sequential(*conv(512, 256), *up, *conv(256, 256), *conv(256, 256), *conv(256, 256), *conv(256, 128),
                         *up, *conv(128, 128), *conv(128, 64), *up, *conv(64, 64), *conv(64, 3, relu=False))


def style_loss(out_feats: dict[str, torch.Tensor], style_feats: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over the style layers of MSE(means) + MSE(stds) (the reference's ``calc_style_loss``)."""
    total = torch.zeros((), device=next(iter(out_feats.values())).device)
    for k in STYLE_LAYERS:
        om, os_ = calc_mean_std(out_feats[k])
        sm, ss = calc_mean_std(style_feats[k])
        total = total + F.mse_loss(om, sm) + F.mse_loss(os_, ss)
    return total


def choose_photo(seed: int, image: torch.Tensor, n: int) -> int:
    """Index of the style photo for one painting [3, H, W]: a hash of (seed, pixels), as gatys' random policy."""
    digest = hashlib.sha256(int(seed).to_bytes(8, "little", signed=True) + _image_hash(image)).digest()
    return int.from_bytes(digest[:8], "little") % n


def style_photo_for(who: str, photo_paths: list, seed: int, image: torch.Tensor, short: int,
                    device: torch.device | str) -> torch.Tensor:
    """The training photo chosen for one painting (``choose_photo``), resized to shorter side
    ``short``: [1, 3, h, w] in [-1, 1]. An unreadable photo passes the choice on to the next one,
    so one bad file never stops a translation."""
    n = len(photo_paths)
    first = choose_photo(seed, image, n)
    for k in range(n):
        try:
            photo = load_image(photo_paths[(first + k) % n])
        except BadImageError:
            continue
        return _resize_short(_to_float([photo]).to(device), short)
    raise ArtshiftError(f"{who}: none of the {n} training photos is readable")


class AdaIN(UnpairedGAN):
    name = "adain"
    config_class: ClassVar[type] = AdaINConfig

    @classmethod
    def default_config(cls, profile: str) -> AdaINConfig:
        return cls.config_class(**PROFILE_SETTINGS[check_profile(profile)])

    def __init__(self, config: AdaINConfig | None = None, device: torch.device | str = "cpu"):
        super().__init__(check_config(config or AdaINConfig()), device)
        c = self.config
        self.checkpoint_every = int(c.checkpoint_every)
        self.decoder = make_decoder().to(self.device)
        self.init_networks(torch.Generator().manual_seed(0))
        self.init_precision()
        self.opt = torch.optim.Adam(self.decoder.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
        # set by setup(): the frozen encoder, its id, the style photos and the seed that picks them
        self.vgg: Any = None
        self.weights_id: str | None = None
        self.base_weights_id: str | None = None
        self.scales: dict[int, torch.Tensor] | None = None
        self._scaled = False
        self.photo_paths: list[Path] = []
        self.seed = 0

    # --- set-up ---------------------------------------------------------------------------
    def networks(self) -> dict[str, nn.Module]:
        return {"decoder": self.decoder}

    def init_networks(self, generator: torch.Generator) -> None:
        """PyTorch's default conv init (the reference keeps it), drawn from ``generator``."""
        with torch.no_grad():
            for m in self.decoder.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                    bound = 1 / math.sqrt(m.weight[0].numel())
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)

    def total_iterations(self) -> int:
        return int(self.config.max_iter)

    def lr_at(self, iteration: int) -> float:
        return self.config.lr / (1.0 + self.config.lr_decay * iteration)

    def load_network(self, home: Path | None, log) -> None:
        if self.vgg is None:
            c = self.config
            vgg, wid = load_vgg19(self.name, c.weights, c.random_init_seed, c.allow_download, home, log, CONTENT_LAYER)
            if c.vgg_padding == "reflect":
                use_reflection_padding_(vgg)
            self.vgg, self.base_weights_id, self.weights_id = vgg.to(self.device), wid, wid
            self._scaled = False

    def _apply_scales(self, scales: dict[int, torch.Tensor] | None) -> None:
        if self._scaled:
            return
        if scales:
            apply_scales_(self.vgg, scales)
        assert self.base_weights_id is not None
        self.scales, self.weights_id, self._scaled = scales, scaled_id(self.base_weights_id, scales), True

    def setup(self, data: TrainData, run: RunContext) -> None:
        super().setup(data, run)
        self.seed = int(run.seed)
        self.photo_paths = sorted(Path(p) for p in data.photos)
        if not self.photo_paths:
            raise ArtshiftError(f"{self.name}: no training photos to take the style from",
                                hint="check the photo training split of the data root")
        self.load_network(run.home, run.log)

    def prepare_extra(self, data: TrainData, run: RunContext) -> None:
        c = self.config
        if not self._scaled:
            scales = None
            if c.normalise:
                paths = calibration_photos(list(data.photos), c.normalise_photos)
                scales = activation_scales(self.name, self.vgg, paths, c.normalise_size, data.skip_bad_images, run.log)
            self._apply_scales(scales)
        run.log.info("%s: VGG-19 encoder %s", self.name, self.weights_id)

    def fit(self, data: TrainData, run: RunContext) -> None:
        super().fit(data, run)
        (run.run_dir / "weights_id.txt").write_text(f"vgg19 {self.weights_id}\n")

    # --- training -------------------------------------------------------------------------
    def losses(self, content: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
        """The reference's ``Net.forward`` (alpha 1): weighted content and style losses."""
        c = self.config
        with torch.no_grad():
            style_feats = self.vgg(style, STYLE_LAYERS)
            content_feat = self.vgg(content, (CONTENT_LAYER,))[CONTENT_LAYER]
            t = adaptive_instance_norm(content_feat, style_feats[CONTENT_LAYER])
        g = self.net(self.decoder, t)
        g_feats = self.vgg(g, STYLE_LAYERS)
        loss_c = F.mse_loss(g_feats[CONTENT_LAYER], t)
        loss_s = style_loss(g_feats, style_feats)
        return {"content": c.content_weight * loss_c, "style": c.style_weight * loss_s}

    def train_step(self, batch: dict[str, torch.Tensor], iteration: int) -> dict[str, torch.Tensor]:
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(iteration)
        self.decoder.train()
        self.opt.zero_grad(set_to_none=True)
        losses = self.losses(batch["A"], batch["B"])
        self.backward(losses["content"] + losses["style"])
        self.step(self.opt)
        self.scaler.update()
        return {k: v.detach() for k, v in losses.items()}

    # --- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"decoder": self.decoder.state_dict(), "opt": self.opt.state_dict(),
                                 "vgg_scales": dict(self.scales or {}), "vgg_id": self.base_weights_id}
        state.update(self.precision_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decoder.load_state_dict(state["decoder"])
        self.opt.load_state_dict(state["opt"])
        if self.vgg is not None:
            if state.get("vgg_id") != self.base_weights_id:
                raise ValueError(f"the checkpoint was trained with VGG {state.get('vgg_id')}, "
                                 f"this run loads {self.base_weights_id}")
            self._apply_scales({int(k): v for k, v in state["vgg_scales"].items()} or None)
        self.load_precision_state(state)

    # --- inference ------------------------------------------------------------------------
    def style_photo(self, image: torch.Tensor, short: int) -> torch.Tensor:
        """The style photo for one painting, resized to shorter side ``short``: [1, 3, h, w] in [-1, 1]."""
        return style_photo_for(self.name, self.photo_paths, self.seed, image, short, self.device)

    @torch.no_grad()
    def stylise(self, content: torch.Tensor, style: torch.Tensor, alpha: float | None = None) -> torch.Tensor:
        """One forward pass: [1, 3, H, W] painting and a style photo -> [1, 3, H, W] in [-1, 1]."""
        alpha = self.config.alpha if alpha is None else alpha
        x, (h, w) = pad_to_multiple(content, 8)
        s, _ = pad_to_multiple(style, 8)
        cf = self.vgg(x, (CONTENT_LAYER,))[CONTENT_LAYER]
        sf = self.vgg(s, (CONTENT_LAYER,))[CONTENT_LAYER]
        t = alpha * adaptive_instance_norm(cf, sf) + (1 - alpha) * cf
        return self.net(self.decoder, t)[..., :h, :w].clamp(-1, 1)

    @torch.no_grad()
    def translate(self, images: torch.Tensor) -> torch.Tensor:
        if self.vgg is None or not self._scaled or not self.photo_paths:
            raise ArtshiftError(f"{self.name}: translate() called before fit() loaded the encoder and decoder")
        self.decoder.eval()
        out = torch.empty_like(images)
        for i, image in enumerate(images):
            content = image[None].to(self.device, torch.float32)
            style = self.style_photo(image, min(image.shape[-2:]))
            out[i] = self.stylise(content, style)[0].to(out.device, out.dtype)
        return out
