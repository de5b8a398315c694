"""UNIT (Liu, Breuel, Kautz, NIPS 2017) as a painting -> photo method.

Follows mingyuliutw/UNIT at its HEAD (``trainer.py: UNIT_Trainer``, ``networks.py: VAEGen``,
``configs/unit_summer2winter_yosemite256_folder.yaml``; the code NVlabs/MUNIT also ships), read
with the ``fetch`` tool. A = paintings, B = photos. Each domain has a ``VAEGen`` (content encoder
with instance norm, IN-residual decoder) whose code is a Gaussian with mean = the encoder's output
and unit variance; the shared latent space is imposed through the losses (that code has no shared
layers between the two auto-encoders). Per iteration, as the reference's ``train.py``: the
learning rates step, one discriminator update, one generator update:

    gen:  gan_w (D_a(x_ba) + D_b(x_ab)) + recon_x_w (|x_a' - x_a| + |x_b' - x_b|)
          + recon_kl_w (mean h_a^2 + mean h_b^2) + recon_x_cyc_w (|x_aba - x_a| + |x_bab - x_b|)
          + recon_kl_cyc_w (mean h_a~^2 + mean h_b~^2)

with x_a' = G_a(h_a + n_a), x_ba = G_a(h_b + n_b), x_ab = G_b(h_a + n_a), h~ the re-encodings of
x_ab / x_ba, n ~ N(0, I), and the config's weights gan_w 1, recon_x_w 10, recon_kl_w 0.01,
recon_x_cyc_w 10, recon_kl_cyc_w 0.01, vgg_w 0 (not implemented). Optimiser, schedule,
discriminators, data and init are MUNIT's (``baselines.munit.MUNITFamily``). Translation:
``G_b.decode(h_a)`` with the mean code (no noise), as the reference's ``test.py``.
docs/methods/unit.md lists every difference from the reference and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from baselines.munit import MUNIT, MUNITFamily, MUNITFamilyConfig
from baselines.munit_networks import VAEGen, dis_loss, gen_loss, recon_criterion


@dataclass
class UNITConfig(MUNITFamilyConfig):
    recon_kl_w: float = 0.01
    recon_x_cyc_w: float = 10.0
    recon_kl_cyc_w: float = 0.01

    RANGES: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "recon_kl_w": (0, None), "recon_x_cyc_w": (0, None), "recon_kl_cyc_w": (0, None)}


# the same compute budgets as MUNIT's profiles, minus its style-only settings
PROFILE_SETTINGS: dict[str, dict[str, Any]] = {
    profile: {k: v for k, v in settings.items() if k not in ("mlp_dim", "style_dim")}
    for profile, settings in MUNIT.PROFILE_SETTINGS.items()}


def kl(h: torch.Tensor) -> torch.Tensor:
    """The reference's ``__compute_kl``: mean(mu^2), the KL to N(0, I) of a unit-variance Gaussian up to constants."""
    return torch.mean(h.pow(2))


class UNIT(MUNITFamily):
    name = "unit"
    config_class: ClassVar[type] = UNITConfig
    PROFILE_SETTINGS = PROFILE_SETTINGS

    def make_generator(self) -> nn.Module:
        c = self.config
        return VAEGen(3, c.gen_dim, c.n_downsample, c.n_res, c.activ, c.pad_type)

    def encode(self, gen: VAEGen, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self.autocast():
            h = gen.enc(self.as_input(x)).float()
        return h, torch.randn_like(h)

    def decode(self, gen: VAEGen, h: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return gen.dec(self.as_input(h)).float()

    def dis(self, module: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        with self.autocast():
            return [o.float() for o in module(self.as_input(x))]

    def dis_losses(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            h_a, n_a = self.encode(self.gen_a, x_a)
            h_b, n_b = self.encode(self.gen_b, x_b)
            x_ba = self.decode(self.gen_a, h_b + n_b)
            x_ab = self.decode(self.gen_b, h_a + n_a)
        return {"D_a": dis_loss(self.dis(self.dis_a, x_ba), self.dis(self.dis_a, x_a)),
                "D_b": dis_loss(self.dis(self.dis_b, x_ab), self.dis(self.dis_b, x_b))}

    def gen_losses(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        h_a, n_a = self.encode(self.gen_a, x_a)
        h_b, n_b = self.encode(self.gen_b, x_b)
        x_a_recon = self.decode(self.gen_a, h_a + n_a)
        x_b_recon = self.decode(self.gen_b, h_b + n_b)
        x_ba = self.decode(self.gen_a, h_b + n_b)
        x_ab = self.decode(self.gen_b, h_a + n_a)
        h_b_recon, n_b_recon = self.encode(self.gen_a, x_ba)
        h_a_recon, n_a_recon = self.encode(self.gen_b, x_ab)
        losses = {
            "adv_a": c.gan_w * gen_loss(self.dis(self.dis_a, x_ba)),
            "adv_b": c.gan_w * gen_loss(self.dis(self.dis_b, x_ab)),
            "recon_x_a": c.recon_x_w * recon_criterion(x_a_recon, x_a),
            "recon_x_b": c.recon_x_w * recon_criterion(x_b_recon, x_b),
            "kl_a": c.recon_kl_w * kl(h_a),
            "kl_b": c.recon_kl_w * kl(h_b),
            "kl_cyc_aba": c.recon_kl_cyc_w * kl(h_a_recon),
            "kl_cyc_bab": c.recon_kl_cyc_w * kl(h_b_recon),
        }
        if c.recon_x_cyc_w > 0:  # the reference always computes them (and fails at weight 0)
            losses["cyc_x_a"] = c.recon_x_cyc_w * recon_criterion(self.decode(self.gen_a, h_a_recon + n_a_recon), x_a)
            losses["cyc_x_b"] = c.recon_x_cyc_w * recon_criterion(self.decode(self.gen_b, h_b_recon + n_b_recon), x_b)
        return losses

    def translate_one(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            h_a = self.gen_a.enc(self.as_input(x))
            return self.gen_b.dec(h_a).float()
