"""CUT and FastCUT (Park, Efros, Zhang, Zhu, ECCV 2020): one-sided painting -> photo translation.

Instead of CycleGAN's second generator and cycle loss, CUT keeps the content by *patchwise
contrastive learning* (PatchNCE): a patch of the generated photo, embedded by the generator's
own encoder and a small MLP head, must be closer to the embedding of the painting patch at the
same location than to the other patches of that painting. Losses per iteration (as the
reference ``cut_model.py`` computes them): LSGAN on the photo discriminator, PatchNCE on five
encoder taps (weight ``lambda_NCE``), and for CUT the same PatchNCE between a photo and the
generator's output for it ("identity NCE"), the two NCE terms averaged. FastCUT drops the
identity term, weighs PatchNCE x10 and feeds a horizontally flipped painting half of the time
while comparing against the unflipped one (flip equivariance). No image pool, Adam 2e-4
(0.5, 0.999) for generator, discriminator and heads, CycleGAN's linear decay rule.

Choices made where the reference leaves room (documented so they can be checked):

- Encoder taps: ``networks.CUT_NCE_LAYERS`` = the input, the first and the second
  downsampling convolution (before their norms), residual blocks 1 and 5: the reference's
  ``--nce_layers 0,4,8,12,16`` of its default generator, receptive fields 1 / 9 / 15 / 35 /
  99 px. Profiles whose generator has fewer than 5 residual blocks (``ci``) set
  ``nce_layers`` to their deepest block instead of res5; the taps are config fields, so they
  are in the run's record and its id, and ``fit`` logs each with its receptive field.
  The input tap is the reflection-padded image; its 3-pixel border (copies of interior pixels)
  is cropped before sampling so every tap covers exactly the image.
- Networks: the reference's defaults, anti-aliased down/upsampling in G and D
  (``antialias``) and xavier-normal init with gain 0.02 for G, D and the heads
  (``init_type``); ``--set antialias=false --set init_type=normal`` gives the plain variant
  (CycleGAN's networks and init) that ``VERSION`` 1 trained.
- Patch locations are the *same* on every tap of one image (the reference draws an
  independent permutation per tap): ``sample_locations`` draws distinct cells of the
  coarsest tap's grid plus a uniform offset inside each cell, in normalised image coordinates
  (y, x) in [0, 1); a tap with H x W cells takes ``floor(y * H), floor(x * W)``. Because the
  taps' grids nest (sizes H, H/2, H/4), distinct coarse cells stay distinct on every tap, so
  no patch is ever its own negative, and the patch count is ``min(num_patches, cells of the
  coarsest tap)`` (256 at 64 px crops, the reference's per-tap cap). The locations are shared
  by the images of a batch, as in the reference, and by the query and key features.
- The MLP heads (Linear-ReLU-Linear, 256 dims, then L2 normalisation) are built in
  ``__init__`` from the taps' channel counts (a dummy encoder pass), not on the first batch
  as in the reference, so they exist before the optimiser is built and a checkpoint resumes
  exactly.

docs/methods/cut.md lists every remaining difference from the reference and why.

Training images and batches: CycleGAN's in-memory image set and ``batch(seed, iteration)``
(one epoch = max(#paintings, #photos) iterations, per-epoch painting permutation, random
photo, random crop and flip) come from the ``UnpairedGAN`` base in ``baselines.cyclegan``, so both methods see the
same data stream; the flip-equivariance coin is drawn from its own pure (seed, iteration) RNG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from baselines.cyclegan import SMALL_NETWORKS, UnpairedGAN, UnpairedTrainingConfig
from baselines.networks import (
    CUT_NCE_LAYERS,
    INIT_TYPES,
    PatchDiscriminator,
    ResnetGenerator,
    generator_taps,
    init_weights,
    lsgan_loss,
    pad_to_multiple,
    set_requires_grad,
    start_residual_generators_,
)
from benchmark.core.errors import ArtshiftError
from benchmark.core.method import RunContext, TrainData
from benchmark.core.profiles import check_profile


@dataclass
class CUTConfig(UnpairedTrainingConfig):
    """Defaults are CUT's published setting (the ``paper`` profile; the reference's train options)."""

    lambda_GAN: float = 1.0
    lambda_NCE: float = 1.0
    nce_idt: bool = True  # identity NCE on photos (CUT); FastCUT: off
    flip_equivariance: bool = False  # FastCUT: on
    nce_layers: tuple[str, ...] = CUT_NCE_LAYERS
    num_patches: int = 256
    netF_nc: int = 256  # MLP head width
    nce_T: float = 0.07
    n_epochs: int = 200
    n_epochs_decay: int = 200
    antialias: bool = True  # blur-pool down/upsampling in G and D (the reference's default); False: stride-2 convs
    init_type: str = "xavier"  # xavier-normal with gain init_gain (the reference's --init_type); "normal": N(0, gain)

    def check(self) -> list[str]:
        problems = super().check()
        valid = generator_taps(self.n_blocks)
        unknown = [t for t in self.nce_layers if t not in valid]
        if unknown:
            blocks = sorted({f"res{min(1, self.n_blocks)}", f"res{self.n_blocks}"} - {"res0"})
            example = ",".join(["pad", "down1_conv", "down2_conv", *blocks])
            problems.append(f"nce_layers {list(unknown)} do not exist in a generator with n_blocks={self.n_blocks} "
                            f"(taps: {', '.join(valid)}); e.g. --set nce_layers={example}")
        if not self.nce_layers:
            problems.append("nce_layers is empty: PatchNCE needs at least one tap")
        elif len(set(self.nce_layers)) != len(self.nce_layers):
            problems.append(f"nce_layers {list(self.nce_layers)} names a tap twice")
        if self.init_type not in INIT_TYPES:
            problems.append(f"init_type={self.init_type!r} is not one of {', '.join(INIT_TYPES)}")
        return problems


@dataclass
class FastCUTConfig(CUTConfig):
    lambda_NCE: float = 10.0
    nce_idt: bool = False
    flip_equivariance: bool = True
    n_epochs: int = 150
    n_epochs_decay: int = 50


# Settings per profile on top of the dataclass defaults (which are the paper's). The network
# sizes and crops match CycleGAN's profiles so the methods are compared at equal capacity.
PROFILE_SETTINGS: dict[str, dict[str, Any]] = {
    # 2 residual blocks: the reference's res5 tap does not exist, the deepest block stands in
    "ci": dict(load_size=36, crop_size=32, ngf=8, n_blocks=2, ndf=8, netF_nc=32,
               nce_layers=("pad", "down1_conv", "down2_conv", "res1", "res2"),
               n_epochs=1, n_epochs_decay=1, epoch_size=10, checkpoint_every=10),
    # minutes on 2 CPU cores: 3000 iterations. With the plain networks a CUT iteration cost ~2/3 of a
    # CycleGAN one (FastCUT ~2/5); the anti-aliased networks (full-resolution down/up convolutions,
    # stride-1 PatchGAN) cost ~1.35x that for both (1.33-1.36x in two runs of
    # benchmarks/cut_antialias.py, best of 12 x 3 steps, one thread): still below CycleGAN's iteration
    "smoke": dict(**SMALL_NETWORKS, n_epochs=3, n_epochs_decay=3, epoch_size=500, checkpoint_every=500),
    # <= 30 minutes on 2 idle CPU cores: CycleGAN's cpu setting (residual generator from the identity,
    # 4000 iterations); no CUT curve was measured for it (docs/results.md)
    "cpu": dict(**SMALL_NETWORKS, residual=True, n_epochs=4, n_epochs_decay=4, epoch_size=500, checkpoint_every=500),
    "quick": dict(n_epochs=10, n_epochs_decay=10, epoch_size=1000, checkpoint_every=2000),
    "paper": dict(checkpoint_every=5000),
}


# --- PatchNCE ----------------------------------------------------------------------------------
def patch_nce_loss(feat_q: torch.Tensor, feat_k: torch.Tensor, batch_size: int, tau: float = 0.07) -> torch.Tensor:
    """Per-patch PatchNCE loss, shape [B*P]: cross-entropy of picking the positive key.

    ``feat_q`` / ``feat_k``: [B*P, C] embeddings (row b*P + i = patch i of image b). For query
    i of image b the logits are q_i.k_i / tau (positive, class 0) followed by q_i.k_j / tau
    for the other patches j != i *of the same image* (the reference's default, where
    negatives never come from other images of the batch). Keys are detached: gradients reach
    the generator and head through the queries only, as in the reference.
    """
    n, dim = feat_q.shape
    if n % batch_size:
        raise ValueError(f"{n} patches do not split into {batch_size} images")
    p = n // batch_size
    feat_k = feat_k.detach()
    l_pos = (feat_q * feat_k).sum(dim=1, keepdim=True)
    q = feat_q.view(batch_size, p, dim)
    k = feat_k.view(batch_size, p, dim)
    l_neg = torch.bmm(q, k.transpose(1, 2))
    diagonal = torch.eye(p, dtype=torch.bool, device=feat_q.device)[None]
    l_neg = l_neg.masked_fill(diagonal, float("-inf")).view(n, p)  # the positive is not a negative
    logits = torch.cat([l_pos, l_neg], dim=1) / tau
    # cross-entropy with target 0, written without nll_loss (bit-identical values and gradients)
    # so that no CUDA kernel on torch's list of non-deterministic ones is involved
    return -F.log_softmax(logits, dim=1)[:, 0]


def sample_locations(grid: tuple[int, int], n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``min(n, H*W)`` normalised (y, x) locations in [0, 1), one per distinct cell of an H x W grid.

    ``grid`` is the coarsest tap's size; see the module docstring for why cells are distinct.
    """
    h, w = grid
    count = min(n, h * w)
    cells = torch.randperm(h * w, generator=generator)[:count]
    offset = torch.rand(count, 2, generator=generator, dtype=torch.float64)
    rows = (cells // w).double()
    cols = (cells % w).double()
    return torch.stack([(rows + offset[:, 0]) / h, (cols + offset[:, 1]) / w], dim=1)


def location_indices(locations: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Flat indices (row * W + col) of normalised locations on an H x W tap."""
    h, w = size
    rows = torch.clamp((locations[:, 0] * h).floor().long(), 0, h - 1)
    cols = torch.clamp((locations[:, 1] * w).floor().long(), 0, w - 1)
    return rows * w + cols


def gather_patches(feature: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] features at flat spatial ``indices`` -> [B*P, C] (image-major rows).

    Indexes the [B, C, HW] view (then transposes the small result), so the gradient that flows
    back into the network has the feature's own layout. Indexing a transposed [B, HW, C] view
    instead (version 2) gives a gradient with channels-last strides, and torch 2.14's CPU
    instance-norm backward returns wrong input gradients for such a gradient at batch 1: the
    res-tap PatchNCE terms trained with wrong generator gradients (``tests/test_precision.py``).
    """
    b, c = feature.shape[:2]
    picked = feature.flatten(2)[:, :, indices.to(feature.device)]  # [B, C, P]
    return picked.transpose(1, 2).reshape(b * len(indices), c)


class PatchHeads(nn.Module):
    """One 2-layer MLP per encoder tap (Linear-ReLU-Linear), outputs L2-normalised."""

    def __init__(self, channels: dict[str, int], width: int = 256):
        super().__init__()
        self.mlps = nn.ModuleDict({name: nn.Sequential(nn.Linear(c, width), nn.ReLU(), nn.Linear(width, width))
                                   for name, c in channels.items()})

    def forward(self, name: str, patches: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlps[name](patches), dim=1, eps=1e-7)


class CUT(UnpairedGAN):
    name = "cut"
    # 2: the reference's taps (down convs pre-norm, res5), anti-aliased networks, xavier init
    # 3: correct generator gradients of the res-tap PatchNCE terms (gather_patches' layout)
    VERSION: ClassVar[str] = "3"
    config_class: ClassVar[type] = CUTConfig

    @classmethod
    def default_config(cls, profile: str) -> Any:
        return cls.config_class(**PROFILE_SETTINGS[check_profile(profile)])

    @classmethod
    def label_tags(cls, config: CUTConfig) -> tuple[str, ...]:
        """Taps other than the reference's (the ci profile's, or a --set) are named in the row label:
        PatchNCE at other depths compares patches of other sizes, so the row is another method."""
        if tuple(config.nce_layers) == CUT_NCE_LAYERS:
            return ()
        return ("NCE taps " + ",".join(config.nce_layers),)

    def __init__(self, config: CUTConfig | None = None, device: torch.device | str = "cpu"):
        super().__init__(config or self.config_class(), device)
        c = self.config
        if c.crop_size > c.load_size:
            raise ArtshiftError(f"crop_size {c.crop_size} is larger than load_size {c.load_size}",
                                hint="set load_size >= crop_size (the reference uses 286 / 256)")
        if c.crop_size % 4:
            raise ArtshiftError(f"crop_size {c.crop_size} is not a multiple of 4",
                                hint="the generator downsamples twice by 2; use e.g. 32, 64, 128, 256")
        if c.num_patches < 1 or c.nce_T <= 0:
            raise ArtshiftError(f"{self.name}: num_patches must be >= 1 and nce_T > 0")
        self.checkpoint_every = int(c.checkpoint_every)
        problems = c.check()
        if problems:
            raise ArtshiftError(f"{self.name}: " + "; ".join(problems))
        self.G = ResnetGenerator(3, 3, c.ngf, c.n_blocks, c.norm, antialias=c.antialias,
                                 residual=c.residual).to(self.device)
        self.nce_layers = tuple(c.nce_layers)
        self.D = PatchDiscriminator(3, c.ndf, c.n_layers_D, c.norm, antialias=c.antialias).to(self.device)
        self.F = PatchHeads(self._tap_channels(), c.netF_nc).to(self.device)
        self.init_networks(torch.Generator().manual_seed(0))
        self.init_precision()
        betas = (c.beta1, c.beta2)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=c.lr, betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=c.lr, betas=betas)
        self.opt_F = torch.optim.Adam(self.F.parameters(), lr=c.lr, betas=betas)
        self._sizes: tuple[int, int] | None = None
        self.paintings: torch.Tensor | None = None
        self.photos: torch.Tensor | None = None

    def _tap_channels(self) -> dict[str, int]:
        """Channel count of every NCE tap, from one encoder pass on a blank image (no RNG used)."""
        with torch.no_grad():
            feats = self.G.encode(torch.zeros(1, 3, 8, 8, device=self.device), self.nce_layers)
        return {name: int(f.shape[1]) for name, f in zip(self.nce_layers, feats, strict=True)}

    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D, "F": self.F}

    def init_networks(self, generator: torch.Generator) -> None:
        for net in self.networks().values():
            init_weights(net, self.config.init_gain, generator, self.config.init_type)
        start_residual_generators_(self.networks().values())

    def tap_receptive_fields(self) -> dict[str, int]:
        """Receptive field (px) of every PatchNCE tap: the scale at which each one compares patches."""
        return {name: self.G.receptive_field(name) for name in self.nce_layers}

    def prepare_extra(self, data: TrainData, run: RunContext) -> None:
        c = self.config
        taps = ", ".join(f"{name} ({rf} px)" for name, rf in self.tap_receptive_fields().items())
        run.log.info("%s: PatchNCE taps %s; %s networks, %s init", self.name, taps,
                     "anti-aliased" if c.antialias else "plain stride-2", c.init_type)

    def batch(self, seed: int, iteration: int) -> dict[str, Any]:
        """CycleGAN's painting/photo crops plus the flip-equivariance coin: pure in (seed, iteration)."""
        out: dict[str, Any] = dict(super().batch(seed, iteration))
        rng = np.random.default_rng([seed % 2**63, iteration, 0xF11B])
        out["flip"] = bool(self.config.flip_equivariance and rng.random() < 0.5)
        return out

    # --- losses -----------------------------------------------------------------------------
    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder taps of ``x`` (in the run's precision); the padded-input tap is cropped back to the image."""
        with self.autocast():
            feats = self.G.encode(self.as_input(x), self.nce_layers)
        return self._crop_pad_tap(feats)

    def _crop_pad_tap(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for name, f in zip(self.nce_layers, feats, strict=True):
            if name == "pad":
                top, bottom = self.G.pad.padding[2], self.G.pad.padding[3]
                left, right = self.G.pad.padding[0], self.G.pad.padding[1]
                f = f[..., top:f.shape[-2] - bottom, left:f.shape[-1] - right]
            out.append(f)
        return out

    def _translate_with_taps(self, real: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``G(real)`` as float32 and the taps of that same pass (cropped like ``_taps``)."""
        with self.autocast():
            fake, feats = self.G.forward_with_features(self.as_input(real), self.nce_layers)
        return fake.float(), self._crop_pad_tap(feats)

    def nce_loss(self, src: torch.Tensor, tgt: torch.Tensor, flipped: bool = False,
                 keys: list[torch.Tensor] | None = None) -> torch.Tensor:
        """PatchNCE between source images and their translations, averaged over the taps.

        ``flipped``: ``tgt`` was generated from the horizontally flipped ``src`` (FastCUT), so
        its features are flipped back before being compared location by location.
        ``keys``: the taps of ``src`` if the caller already has them (the generator's pass that
        made ``tgt`` computed them, ``train_step``); otherwise ``src`` is encoded here.
        """
        c = self.config
        feat_q = self._taps(tgt)
        if flipped:
            feat_q = [f.flip(-1) for f in feat_q]
        if keys is not None:
            feat_k = [k.detach() for k in keys]
        else:
            with torch.no_grad():  # keys carry no gradient (detached in the loss) - skip the graph
                feat_k = self._taps(src)
        coarsest = min(feat_k, key=lambda f: f.shape[-2] * f.shape[-1])
        locations = sample_locations((int(coarsest.shape[-2]), int(coarsest.shape[-1])), c.num_patches)
        total = torch.zeros((), device=src.device)
        for name, q, k in zip(self.nce_layers, feat_q, feat_k, strict=True):
            ids = location_indices(locations, (int(k.shape[-2]), int(k.shape[-1])))
            # the heads and the loss run in float32: only the encoder's convolutions are worth bf16
            with torch.no_grad():
                k_emb = self.F(name, gather_patches(k, ids).float())
            q_emb = self.F(name, gather_patches(q, ids).float())
            total = total + patch_nce_loss(q_emb, k_emb, src.shape[0], c.nce_T).mean() * c.lambda_NCE
        return total / len(self.nce_layers)

    def train_step(self, batch: dict[str, Any], iteration: int) -> dict[str, torch.Tensor]:
        c = self.config
        lr = self.lr_at(iteration)
        for opt in (self.opt_G, self.opt_D, self.opt_F):
            for group in opt.param_groups:
                group["lr"] = lr
        real_A, real_B, flipped = batch["A"], batch["B"], batch["flip"]
        for net in self.networks().values():
            net.train()
        bs = real_A.shape[0]
        real = torch.cat([real_A, real_B]) if c.nce_idt else real_A
        if flipped:
            real = real.flip(-1)
            fake, keys = self.net(self.G, real), None
        else:
            # The keys of PatchNCE are the taps of the real images, which the pass that translates
            # them computes anyway: take them from it instead of encoding the images a second time
            # as the reference does (the same values, one encoder pass less per NCE term; issue 24).
            # A flipped batch's taps are of the mirrored image, so FastCUT's flipped iterations
            # encode the unflipped source again.
            fake, keys = self._translate_with_taps(real)
        fake_B = fake[:bs]

        losses: dict[str, torch.Tensor] = {}
        # discriminator
        set_requires_grad([self.D], True)
        self.opt_D.zero_grad(set_to_none=True)
        losses["D_fake"] = lsgan_loss(self.net(self.D, fake_B.detach()), False)
        losses["D_real"] = lsgan_loss(self.net(self.D, real_B), True)
        self.backward(0.5 * (losses["D_fake"] + losses["D_real"]))
        self.step(self.opt_D)

        # generator and heads
        set_requires_grad([self.D], False)
        self.opt_G.zero_grad(set_to_none=True)
        self.opt_F.zero_grad(set_to_none=True)
        losses["G_GAN"] = lsgan_loss(self.net(self.D, fake_B), True) * c.lambda_GAN
        losses["NCE"] = self.nce_loss(real_A, fake_B, flipped, None if keys is None else [k[:bs] for k in keys])
        if c.nce_idt:  # identity: G(photo) vs photo
            losses["NCE_Y"] = self.nce_loss(real_B, fake[bs:], flipped, None if keys is None else [k[bs:] for k in keys])
            nce = 0.5 * (losses["NCE"] + losses["NCE_Y"])
        else:
            nce = losses["NCE"]
        self.backward(losses["G_GAN"] + nce)
        self.step(self.opt_G, self.opt_F)
        self.scaler.update()  # once per iteration, after every optimiser stepped (torch's rule)
        set_requires_grad([self.D], True)
        return {k: v.detach() for k, v in losses.items()}

    # --- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {k: net.state_dict() for k, net in self.networks().items()}
        state.update(opt_G=self.opt_G.state_dict(), opt_D=self.opt_D.state_dict(), opt_F=self.opt_F.state_dict())
        state.update(self.precision_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, net in self.networks().items():
            net.load_state_dict(state[key])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.opt_F.load_state_dict(state["opt_F"])
        self.load_precision_state(state)

    # --- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def translate(self, images: torch.Tensor) -> torch.Tensor:
        """Paintings -> photos at the images' own size (padded to a multiple of 4 and cropped back)."""
        was_training = self.G.training
        self.G.eval()
        try:
            x, (h, w) = pad_to_multiple(images.to(self.device, torch.float32), 4)
            out = self.net(self.G, x)[..., :h, :w]
        finally:
            self.G.train(was_training)
        return out.to(images.device)


class FastCUT(CUT):
    name = "fastcut"
    config_class: ClassVar[type] = FastCUTConfig
