"""MUNIT (Huang, Liu, Belongie, Kautz, ECCV 2018) as a painting -> photo method.

Follows NVlabs/MUNIT (``trainer.py: MUNIT_Trainer``, ``networks.py``, ``train.py``,
``configs/edges2shoes_folder.yaml``) read with the ``fetch`` tool. A = paintings, B = photos.
Each domain has an ``AdaINGen`` (content encoder, 8-d style encoder, AdaIN decoder driven by an
MLP) and a 3-scale LSGAN ``MsImageDis``. Per iteration, as the reference's ``train.py``: the
learning rates step (StepLR, 0.5 every 100,000 iterations, stepped before the updates), then one
discriminator update, then one generator update, each drawing its own N(0, I) style codes:

    gen:  gan_w (D_a(x_ba) + D_b(x_ab)) + recon_x_w (|x_a' - x_a| + |x_b' - x_b|)
          + recon_s_w (|s_a~ - s_a| + |s_b~ - s_b|) + recon_c_w (|c_b~ - c_b| + |c_a~ - c_a|)
          + recon_x_cyc_w (|x_aba - x_a| + |x_bab - x_b|)
    dis:  gan_w (LSGAN(D_a; x_ba, x_a) + LSGAN(D_b; x_ab, x_b))

with the edges2shoes / summer2winter weights gan_w 1, recon_x_w 10, recon_s_w 1, recon_c_w 1,
vgg_w 0 (the domain-invariant VGG loss is not implemented; both configs switch it off) and
edges2shoes' recon_x_cyc_w 0. Adam lr 1e-4, betas (0.5, 0.999), weight decay 1e-4, kaiming init
for the generators and N(0, 0.02) for the discriminators, batch 1, 256 px crops, 1,000,000
iterations (``paper``).

Translation painting -> photo: ``gen_b.decode(content of gen_a, s)`` where the style code s is
``style=random``: N(0, I) drawn from a generator seeded by a hash of (run seed, painting pixels),
so each painting has one fixed code whatever its batch; or ``style=reference``: the style code of
a training photo (chosen by the same kind of hash) under gen_b's style encoder, as the reference's
``test.py --style``. The choice is a config field, so it is in spec.json and the run id.
docs/methods/munit.md lists every difference from the reference and why.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from baselines.adain import style_photo_for
from baselines.cyclegan import PRECISIONS, UnpairedGAN
from baselines.gatys import _image_hash
from baselines.munit_networks import (
    INITS,
    AdaINGen,
    MsImageDis,
    dis_loss,
    gen_loss,
    recon_criterion,
    weights_init,
)
from baselines.networks import pad_to_multiple
from benchmark.core.errors import ArtshiftError
from benchmark.core.method import RunContext, TrainData
from benchmark.core.profiles import check_config, check_profile

STYLES = ("random", "reference")


@dataclass
class MUNITFamilyConfig:
    """Data, optimisation and network settings MUNIT and UNIT share; defaults are the references'."""

    load_size: int = 256  # new_size (the references resize the shorter side; see the docs page)
    crop_size: int = 256  # crop_image_height / width
    flip: bool = True  # the training loaders' RandomHorizontalFlip
    batch_size: int = 1
    epoch_size: int | None = None  # orders the paintings only; None: max(#paintings, #photos) // batch
    max_iter: int = 1_000_000
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 1e-4
    step_size: int = 100_000  # lr_policy step
    gamma: float = 0.5
    init: str = "kaiming"  # generators; discriminators always N(0, 0.02) as the references
    gan_w: float = 1.0
    recon_x_w: float = 10.0
    gen_dim: int = 64
    n_downsample: int = 2
    n_res: int = 4
    activ: str = "relu"
    pad_type: str = "reflect"
    dis_dim: int = 64
    dis_norm: str = "none"
    dis_activ: str = "lrelu"
    dis_n_layer: int = 4
    num_scales: int = 3
    dis_pad_type: str = "reflect"
    checkpoint_every: int = 10_000  # snapshot_save_iter
    precision: str = "fp32"
    channels_last: bool = False

    RANGES: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "load_size": (8, None), "crop_size": (8, None), "batch_size": (1, None), "epoch_size": (1, None),
        "max_iter": (1, None), "lr": (1e-12, 1.0), "beta1": (0, 0.999999), "beta2": (0, 0.999999),
        "weight_decay": (0, None), "step_size": (1, None), "gamma": (0, 1), "gan_w": (0, None),
        "recon_x_w": (0, None), "gen_dim": (1, None), "n_downsample": (0, None), "n_res": (0, None),
        "dis_dim": (1, None), "dis_n_layer": (1, None), "num_scales": (1, None), "checkpoint_every": (1, None)}

    def check(self) -> list[str]:
        problems = []
        if self.crop_size > self.load_size:
            problems.append(f"crop_size={self.crop_size} is larger than load_size={self.load_size}")
        if self.crop_size % (2 ** self.n_downsample):
            problems.append(f"crop_size={self.crop_size} is not a multiple of 2^n_downsample={2 ** self.n_downsample}")
        if self.init not in INITS:
            problems.append(f"init={self.init!r} is not one of {', '.join(INITS)}")
        for key, allowed in (("activ", ("relu", "lrelu", "tanh")), ("dis_activ", ("relu", "lrelu", "tanh")),
                             ("pad_type", ("reflect", "zero")), ("dis_pad_type", ("reflect", "zero")),
                             ("dis_norm", ("none", "in", "ln"))):
            if getattr(self, key) not in allowed:
                problems.append(f"{key}={getattr(self, key)!r} is not one of {', '.join(allowed)}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision={self.precision!r} is not one of {', '.join(PRECISIONS)}")
        # the coarsest discriminator scale must keep >= 2 px before its last reflection-padded conv
        smallest = self.crop_size / 2 ** (self.num_scales - 1) / 2 ** (self.dis_n_layer - 1)
        if smallest < 2:
            problems.append(f"crop_size={self.crop_size} is too small for num_scales={self.num_scales} x "
                            f"dis_n_layer={self.dis_n_layer} (the coarsest scale would shrink below 2 px)")
        return problems


@dataclass
class MUNITConfig(MUNITFamilyConfig):
    style_dim: int = 8
    mlp_dim: int = 256
    recon_s_w: float = 1.0
    recon_c_w: float = 1.0
    recon_x_cyc_w: float = 0.0  # edges2shoes; summer2winter uses 10
    style: str = "random"  # translation: random (seeded per painting) | reference (a training photo's code)

    RANGES: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "style_dim": (1, None), "mlp_dim": (1, None), "recon_s_w": (0, None), "recon_c_w": (0, None),
        "recon_x_cyc_w": (0, None)}

    def check(self) -> list[str]:
        problems = super().check()
        if self.style not in STYLES:
            problems.append(f"style={self.style!r} is not one of {', '.join(STYLES)}")
        return problems


# Settings per profile on top of the dataclass defaults (the references' exactly, at ``paper``).
NETWORK_SMALL = dict(gen_dim=16, mlp_dim=64, n_res=2, dis_dim=16, dis_n_layer=3)
PROFILE_SETTINGS: dict[str, dict[str, Any]] = {
    # seconds: 32 px crops, narrow networks, 2-layer discriminators, 10 iterations
    "ci": dict(load_size=36, crop_size=32, gen_dim=8, mlp_dim=16, n_res=1, dis_dim=8, dis_n_layer=2,
               max_iter=10, checkpoint_every=5),
    # minutes on 2 CPU cores: 64 px crops of 72 px images, a quarter-width network
    "smoke": dict(load_size=72, crop_size=64, **NETWORK_SMALL, max_iter=1500, checkpoint_every=500),
    # about an hour on one GPU: the references' networks and crops, the first 2% of the schedule
    "quick": dict(max_iter=20_000, checkpoint_every=5000),
    "paper": dict(),
}
# not tuned for cpu yet (issue 24 tuned the core GANs): smoke's settings, so the profile runs
PROFILE_SETTINGS["cpu"] = PROFILE_SETTINGS["smoke"]


def seeded_normal(seed: int, image: torch.Tensor, shape: tuple[int, ...], salt: bytes = b"munit-style") -> torch.Tensor:
    """N(0, 1) of ``shape`` from a generator seeded by a hash of (salt, seed, image pixels)."""
    digest = hashlib.sha256(salt + int(seed).to_bytes(8, "little", signed=True) + _image_hash(image)).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") % 2**63)
    return torch.randn(shape, generator=gen)


class MUNITFamily(UnpairedGAN):
    """What MUNIT and UNIT share: two generators, two multi-scale discriminators, one Adam each for
    the generators and the discriminators, the step learning rate, dis-then-gen updates."""

    @classmethod
    def default_config(cls, profile: str) -> Any:
        return cls.config_class(**cls.PROFILE_SETTINGS[check_profile(profile)])

    config_class: ClassVar[type]
    PROFILE_SETTINGS: ClassVar[dict[str, dict[str, Any]]]

    def __init__(self, config: Any, device: torch.device | str = "cpu"):
        super().__init__(check_config(config), device)
        c = self.config
        self.checkpoint_every = int(c.checkpoint_every)
        self.gen_a, self.gen_b = self.make_generator().to(self.device), self.make_generator().to(self.device)
        self.dis_a, self.dis_b = (MsImageDis(3, c.dis_dim, c.dis_n_layer, c.dis_norm, c.dis_activ, c.num_scales,
                                             c.dis_pad_type).to(self.device) for _ in range(2))
        self.init_networks(torch.Generator().manual_seed(0))
        self.init_precision()
        betas = (c.beta1, c.beta2)
        self.gen_opt = torch.optim.Adam(list(self.gen_a.parameters()) + list(self.gen_b.parameters()), lr=c.lr,
                                        betas=betas, weight_decay=c.weight_decay)
        self.dis_opt = torch.optim.Adam(list(self.dis_a.parameters()) + list(self.dis_b.parameters()), lr=c.lr,
                                        betas=betas, weight_decay=c.weight_decay)
        self.photo_paths: list[Path] = []
        self.seed = 0

    def make_generator(self) -> nn.Module:
        raise NotImplementedError

    def networks(self) -> dict[str, nn.Module]:
        return {"gen_a": self.gen_a, "gen_b": self.gen_b, "dis_a": self.dis_a, "dis_b": self.dis_b}

    def init_networks(self, generator: torch.Generator) -> None:
        # the references: trainer.apply(weights_init(init)), then the discriminators again with 'gaussian'
        for net in (self.gen_a, self.gen_b):
            weights_init(net, self.config.init, generator)
        for net in (self.dis_a, self.dis_b):
            weights_init(net, "gaussian", generator)

    def setup(self, data: TrainData, run: RunContext) -> None:
        super().setup(data, run)
        self.seed = int(run.seed)
        self.photo_paths = sorted(Path(p) for p in data.photos)

    def total_iterations(self) -> int:
        return int(self.config.max_iter)

    def lr_at(self, iteration: int) -> float:
        """StepLR stepped once before every iteration (``train.py``): after i + 1 steps."""
        c = self.config
        return c.lr * c.gamma ** ((iteration + 1) // c.step_size)

    # --- training ---------------------------------------------------------------------------
    def dis_losses(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def gen_losses(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def train_step(self, batch: dict[str, torch.Tensor], iteration: int) -> dict[str, torch.Tensor]:
        lr = self.lr_at(iteration)
        for opt in (self.gen_opt, self.dis_opt):
            for group in opt.param_groups:
                group["lr"] = lr
        for net in self.networks().values():
            net.train()
        x_a, x_b = batch["A"], batch["B"]
        self.dis_opt.zero_grad(set_to_none=True)
        d = self.dis_losses(x_a, x_b)
        self.backward(self.config.gan_w * (d["D_a"] + d["D_b"]))
        self.step(self.dis_opt)
        self.gen_opt.zero_grad(set_to_none=True)
        g = self.gen_losses(x_a, x_b)
        self.backward(torch.stack([v.reshape(()) for v in g.values()]).sum())
        self.step(self.gen_opt)
        self.scaler.update()
        return {k: v.detach() for k, v in {**d, **g}.items()}

    # --- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {k: net.state_dict() for k, net in self.networks().items()}
        state["gen_opt"] = self.gen_opt.state_dict()
        state["dis_opt"] = self.dis_opt.state_dict()
        state.update(self.precision_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, net in self.networks().items():
            net.load_state_dict(state[key])
        self.gen_opt.load_state_dict(state["gen_opt"])
        self.dis_opt.load_state_dict(state["dis_opt"])
        self.load_precision_state(state)

    # --- inference --------------------------------------------------------------------------
    def translate_one(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def translate(self, images: torch.Tensor) -> torch.Tensor:
        """Paintings -> photos, one image at a time (each with its own style code), at any size."""
        if not self.photo_paths:
            raise ArtshiftError(f"{self.name}: translate() called before fit() loaded the run")
        for net in self.networks().values():
            net.eval()
        out = torch.empty_like(images)
        multiple = 2 ** self.config.n_downsample
        for i, image in enumerate(images):
            x, (h, w) = pad_to_multiple(image[None].to(self.device, torch.float32), multiple)
            out[i] = self.translate_one(x, image)[0, :, :h, :w].clamp(-1, 1).to(out.device, out.dtype)
        return out


class MUNIT(MUNITFamily):
    name = "munit"
    config_class: ClassVar[type] = MUNITConfig
    PROFILE_SETTINGS = PROFILE_SETTINGS

    @classmethod
    def label_tags(cls, config: MUNITConfig) -> tuple[str, ...]:
        return (f"style {config.style}",)

    def make_generator(self) -> nn.Module:
        c = self.config
        return AdaINGen(3, c.gen_dim, c.style_dim, c.n_downsample, c.n_res, c.activ, c.pad_type, c.mlp_dim)

    def random_styles(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (n, self.config.style_dim, 1, 1)
        return torch.randn(shape, device=self.device), torch.randn(shape, device=self.device)

    def dis_losses(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        s_a, s_b = self.random_styles(x_a.shape[0])
        with torch.no_grad():
            c_a, _ = self.gen_a.encode(x_a)
            c_b, _ = self.gen_b.encode(x_b)
            x_ba = self.net_decode(self.gen_a, c_b, s_a)
            x_ab = self.net_decode(self.gen_b, c_a, s_b)
        return {"D_a": dis_loss(self.net(self.dis_a, x_ba), self.net(self.dis_a, x_a)),
                "D_b": dis_loss(self.net(self.dis_b, x_ab), self.net(self.dis_b, x_b))}

    def net(self, module: nn.Module, x: torch.Tensor) -> Any:  # the discriminators return lists
        with self.autocast():
            out = module(self.as_input(x))
        return [o.float() for o in out] if isinstance(out, list) else out.float()

    def net_decode(self, gen: AdaINGen, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return gen.decode(content, style).float()

    def net_encode(self, gen: AdaINGen, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self.autocast():
            c, s = gen.encode(self.as_input(x))
        return c.float(), s.float()

    def gen_losses(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        s_a, s_b = self.random_styles(x_a.shape[0])
        c_a, s_a_prime = self.net_encode(self.gen_a, x_a)
        c_b, s_b_prime = self.net_encode(self.gen_b, x_b)
        x_a_recon = self.net_decode(self.gen_a, c_a, s_a_prime)
        x_b_recon = self.net_decode(self.gen_b, c_b, s_b_prime)
        x_ba = self.net_decode(self.gen_a, c_b, s_a)
        x_ab = self.net_decode(self.gen_b, c_a, s_b)
        c_b_recon, s_a_recon = self.net_encode(self.gen_a, x_ba)
        c_a_recon, s_b_recon = self.net_encode(self.gen_b, x_ab)
        losses = {
            "adv_a": c.gan_w * gen_loss(self.net(self.dis_a, x_ba)),
            "adv_b": c.gan_w * gen_loss(self.net(self.dis_b, x_ab)),
            "recon_x_a": c.recon_x_w * recon_criterion(x_a_recon, x_a),
            "recon_x_b": c.recon_x_w * recon_criterion(x_b_recon, x_b),
            "recon_s_a": c.recon_s_w * recon_criterion(s_a_recon, s_a),
            "recon_s_b": c.recon_s_w * recon_criterion(s_b_recon, s_b),
            "recon_c_a": c.recon_c_w * recon_criterion(c_a_recon, c_a),
            "recon_c_b": c.recon_c_w * recon_criterion(c_b_recon, c_b),
        }
        if c.recon_x_cyc_w > 0:
            x_aba = self.net_decode(self.gen_a, c_a_recon, s_a_prime)
            x_bab = self.net_decode(self.gen_b, c_b_recon, s_b_prime)
            losses["cyc_x_a"] = c.recon_x_cyc_w * recon_criterion(x_aba, x_a)
            losses["cyc_x_b"] = c.recon_x_cyc_w * recon_criterion(x_bab, x_b)
        return losses

    # --- inference --------------------------------------------------------------------------
    def style_code(self, image: torch.Tensor) -> torch.Tensor:
        """The photo style code [1, style_dim, 1, 1] for one painting (see the module docstring)."""
        c = self.config
        if c.style == "random":
            return seeded_normal(self.seed, image, (1, c.style_dim, 1, 1)).to(self.device)
        x = style_photo_for(self.name, self.photo_paths, self.seed, image, min(image.shape[-2:]), self.device)
        return self.net_encode(self.gen_b, x)[1]

    def translate_one(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        content, _ = self.net_encode(self.gen_a, x)
        return self.net_decode(self.gen_b, content, self.style_code(image))
