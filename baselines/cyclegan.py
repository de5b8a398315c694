"""CycleGAN (Zhu et al. 2017) as an ``IterativeMethod``: the reference baseline and the base of "ours".

Training follows the reference implementation (pytorch-CycleGAN-and-pix2pix): A = paintings,
B = photos; G_A: A -> B (the translator we evaluate), G_B: B -> A; D_A judges photos, D_B
paintings. Per iteration: one generator step on LSGAN + cycle (lambda 10 each way) + identity
(0.5 x lambda) losses, then one step of both discriminators on a real image and a generated one
drawn from a 50-image history pool, each discriminator loss halved. Adam 2e-4, beta1 0.5.

Epochs are counted as in the reference: one epoch = max(#paintings, #photos) iterations
(its unaligned dataset's length at batch 1), each painting appears once per epoch through a
per-epoch permutation taken modulo the number of paintings, each photo is drawn at random.
The learning rate is constant for ``n_epochs`` and then decays linearly per epoch over
``n_epochs_decay`` (the reference's rule: factor 1 - max(0, e + 1 - n_epochs) / (n_epochs_decay
+ 1) for 0-based epoch e, so the last epoch runs at 1 / (n_epochs_decay + 1) of it). The rate
is a pure function of the iteration, so it needs no scheduler state to resume exactly.
docs/methods/cyclegan.md lists every remaining difference from the reference and why.

Subclass hooks (used by methods/ours.py): ``extra_generator_losses`` adds weighted terms to the
generator objective; ``prepare_extra`` runs after the training images are loaded (they are in
``self.paintings`` / ``self.photos`` as uint8 [N, 3, load, load] tensors); ``config_class``
and ``default_config`` can be extended with extra fields.

Mixed precision (``precision``, ``channels_last``; shared by every GAN here through
``UnpairedGAN``): only the networks run in the low-precision type, under ``torch.autocast``;
their outputs are cast back to float32 (``UnpairedGAN.net``), so every loss, the image pool and
the optimiser state stay float32. fp32 without channels_last (the default) computes bit for bit
what it computed before the settings existed; channels_last swaps torch's instance norm for
``networks.LayoutSafeInstanceNorm`` (torch's is wrong in that layout at batch 1). The
measurements that keep fp32 the default are in docs/benchmarks.md.
"""

from __future__ import annotations

import abc
import itertools
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from baselines.networks import (
    NORMS,
    ImagePool,
    PatchDiscriminator,
    ResnetGenerator,
    init_weights,
    lsgan_loss,
    pad_to_multiple,
    set_requires_grad,
    start_residual_generators_,
    use_layout_safe_norms_,
)
from benchmark.core.errors import ArtshiftError
from benchmark.core.method import RunContext, TrainData
from benchmark.core.profiles import check_profile
from benchmark.data import load_images
from benchmark.pipeline.training import IterativeMethod


@dataclass
class UnpairedTrainingConfig:
    """Data, network-size and schedule settings shared by every unpaired GAN here (CycleGAN,
    ours, CUT/FastCUT), so the methods are configured, and compared, on the same terms."""

    load_size: int = 286  # training images are resized to load x load (bicubic) ...
    crop_size: int = 256  # ... then randomly cropped to crop x crop
    flip: bool = True  # random horizontal flip
    ngf: int = 64
    n_blocks: int = 9
    ndf: int = 64
    n_layers_D: int = 3
    norm: str = "instance"
    init_gain: float = 0.02
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 1
    n_epochs: int = 100  # epochs at the initial learning rate
    n_epochs_decay: int = 100  # epochs of linear decay
    epoch_size: int | None = None  # iterations per epoch; None: max(#paintings, #photos) // batch_size
    checkpoint_every: int = 1000
    # Execution settings (part of the run id like every field: bf16 changes the numbers).
    # precision: dtype of the networks' forward passes under autocast; fp32 = autocast off.
    # fp16 adds loss scaling (a GradScaler, checkpointed); on a CPU it has no fast kernels.
    precision: str = "fp32"
    channels_last: bool = False  # NHWC memory format for networks and inputs (faster convs on some hardware)
    # residual: the generators predict a change to their input and start as the identity
    # (``ResnetGenerator.start_at_identity_``); the CPU profile's lever, docs/results.md. Added
    # after runs were stored, so its default is left out of the run id (``spec.config_hash``).
    residual: bool = field(default=False, metadata={"id_omits_default": True})

    RANGES: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "load_size": (8, None), "crop_size": (8, None), "ngf": (1, None), "n_blocks": (0, None), "ndf": (1, None),
        "n_layers_D": (1, None), "init_gain": (0, None), "lr": (1e-12, 1.0), "beta1": (0, 0.999999),
        "beta2": (0, 0.999999), "batch_size": (1, None), "n_epochs": (0, None), "n_epochs_decay": (0, None),
        "epoch_size": (1, None), "checkpoint_every": (1, None)}
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"norm": NORMS}

    def check(self) -> list[str]:
        problems = []
        if self.crop_size > self.load_size:
            problems.append(f"crop_size={self.crop_size} is larger than load_size={self.load_size}")
        if self.n_epochs + self.n_epochs_decay < 1:
            problems.append("n_epochs + n_epochs_decay must be at least 1 (nothing would be trained)")
        if self.precision not in PRECISIONS:
            problems.append(f"precision={self.precision!r} is not one of {', '.join(PRECISIONS)} "
                            "(bf16 is the CPU's fast low-precision type)")
        return problems


# autocast dtype per ``precision`` setting (fp32: autocast disabled)
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class CycleGANConfig(UnpairedTrainingConfig):
    """Defaults are the published setting (the ``paper`` profile)."""

    use_dropout: bool = False
    lambda_A: float = 10.0  # cycle A -> B -> A
    lambda_B: float = 10.0  # cycle B -> A -> B
    lambda_identity: float = 0.5  # identity weight, as a fraction of lambda_A / lambda_B
    pool_size: int = 50

    RANGES: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "lambda_A": (0, None), "lambda_B": (0, None), "lambda_identity": (0, None), "pool_size": (0, None)}


# Settings per profile on top of the dataclass defaults (which are the paper's).
# smoke's (and cpu's) networks and crops, shared with CUT/FastCUT so the methods compare at equal capacity
SMALL_NETWORKS: dict[str, Any] = dict(load_size=72, crop_size=64, ngf=16, n_blocks=6, ndf=32)
PROFILE_SETTINGS: dict[str, dict[str, Any]] = {
    # seconds: tiny nets on 32 px crops, 20 iterations
    "ci": dict(load_size=36, crop_size=32, ngf=8, n_blocks=2, ndf=8, pool_size=50,
               n_epochs=1, n_epochs_decay=1, epoch_size=10, checkpoint_every=10),
    # minutes on 2 CPU cores: 2000 iterations at ~125 ms on 2 idle cores (benchmarks/cyclegan_iter.py)
    # leave room for evaluation and, for "ours" (~1.25x per iteration), the bank, in a 10-minute run
    "smoke": dict(**SMALL_NETWORKS, n_epochs=2, n_epochs_decay=2, epoch_size=500, checkpoint_every=500),
    # <= 30 minutes on 2 idle CPU cores: smoke's networks and crops with residual generators that
    # start as the identity, twice smoke's schedule (4000 iterations), no identity loss. Chosen from
    # the FID curves of docs/results.md: plain generators stay 86+ FID-2048 above the untouched
    # paintings at this budget; residual ones end below them (186.0 with the identity loss, 183.2
    # without: a generator that starts as the identity needs no loss to keep it there)
    "cpu": dict(**SMALL_NETWORKS, residual=True, lambda_identity=0.0,
                n_epochs=4, n_epochs_decay=4, epoch_size=500, checkpoint_every=500),
    # about an hour on one GPU: full networks at 256 px, a shortened schedule of short epochs
    "quick": dict(n_epochs=10, n_epochs_decay=10, epoch_size=1000, checkpoint_every=2000),
    "paper": dict(checkpoint_every=5000),
}


class UnpairedGAN(IterativeMethod):
    """What every unpaired GAN here shares: the in-memory image sets, epochs counted in
    max(#paintings, #photos) iterations, the linear-decay learning-rate rule and the batch
    sampler that is a pure function of (seed, iteration). Subclasses provide the networks
    (``init_networks``), the losses and the state dict.
    """

    _sizes: tuple[int, int] | None = None
    paintings: torch.Tensor | None = None  # uint8 [N, 3, load, load], set by prepare()
    photos: torch.Tensor | None = None
    scaler: torch.amp.GradScaler

    @abc.abstractmethod
    def init_networks(self, generator: torch.Generator) -> None: ...

    @abc.abstractmethod
    def networks(self) -> dict[str, torch.nn.Module]: ...

    # --- precision --------------------------------------------------------------------------
    def init_precision(self) -> None:
        """Call once the networks exist, before the optimisers: memory format and loss scaler.

        The scaler is built for every precision but is enabled only for fp16 (bf16 has fp32's
        exponent range and needs no scaling); disabled, its calls are plain ``backward`` / ``step``.
        """
        c = self.config
        if c.precision not in PRECISIONS:
            raise ArtshiftError(f"{self.name}: precision={c.precision!r} is not one of {', '.join(PRECISIONS)}")
        if c.channels_last:
            for net in self.networks().values():
                use_layout_safe_norms_(net)  # torch's instance norm mis-handles this layout (networks.py)
                net.to(memory_format=torch.channels_last)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=c.precision == "fp16")

    def autocast(self) -> AbstractContextManager[Any]:
        c = self.config
        return torch.autocast(device_type=self.device.type, dtype=PRECISIONS[c.precision],
                              enabled=c.precision != "fp32")

    def as_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the networks' memory format (unchanged unless ``channels_last``)."""
        return x.contiguous(memory_format=torch.channels_last) if self.config.channels_last else x

    def net(self, module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``module(x)`` in the run's precision and memory format, returned as float32.

        Why cast back at once: every loss and everything stored (pool, bank queries) then sees
        float32, and only the convolutions, where the time goes, run in bf16/fp16.
        """
        with self.autocast():
            return module(self.as_input(x)).float()

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self, *optimizers: torch.optim.Optimizer) -> None:
        for opt in optimizers:
            self.scaler.step(opt)

    def precision_state(self) -> dict[str, Any]:
        """The loss scaler's state for a checkpoint (empty unless fp16: fp32 checkpoints are as before)."""
        return {"scaler": self.scaler.state_dict()} if self.scaler.is_enabled() else {}

    def load_precision_state(self, state: dict[str, Any]) -> None:
        if self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])

    def setup(self, data: TrainData, run: RunContext) -> None:
        self._sizes = (len(data.paintings), len(data.photos))
        # the initial weights follow the run's seed; a resume overwrites them from the checkpoint
        self.init_networks(torch.Generator().manual_seed(int(run.seed)))

    @property
    def epoch_size(self) -> int:
        if self.config.epoch_size is not None:
            return max(1, int(self.config.epoch_size))
        if self._sizes is None:
            raise RuntimeError("epoch_size is unknown before setup(data, run): the epoch length comes from the data")
        return max(1, max(self._sizes) // self.config.batch_size)

    def total_iterations(self) -> int:
        return (self.config.n_epochs + self.config.n_epochs_decay) * self.epoch_size

    def lr_at(self, iteration: int) -> float:
        c = self.config
        epoch = iteration // self.epoch_size
        return c.lr * (1.0 - max(0, epoch + 1 - c.n_epochs) / float(c.n_epochs_decay + 1))

    def prepare(self, data: TrainData, run: RunContext) -> None:
        if self.config.precision == "fp16" and self.device.type == "cpu":
            run.log.warning("%s: precision=fp16 on a CPU runs without fast kernels (a smoke-size generator and "
                            "discriminator pass took ~70x fp32's time, docs/benchmarks.md); bf16 is the CPU's "
                            "low-precision type", self.name)
        self.paintings = self._load(data.paintings, data.skip_bad_images, "paintings", run)
        self.photos = self._load(data.photos, data.skip_bad_images, "photos", run)
        run.log.info("%s: %d paintings, %d photos at %d px", self.name, len(self.paintings), len(self.photos),
                     self.config.load_size)
        self.prepare_extra(data, run)

    def prepare_extra(self, data: TrainData, run: RunContext) -> None:
        """Hook for subclasses: runs after the training images are in memory."""

    def _load(self, paths: list[Path], skip_bad: bool, what: str, run: RunContext) -> torch.Tensor:
        size = self.config.load_size
        out, skipped = [], []
        for start in range(0, len(paths), 64):  # in chunks: only small images stay in memory
            images, bad = load_images(paths[start:start + 64], skip_bad)
            skipped += bad
            for img in images:
                img = img.resize((size, size), Image.Resampling.BICUBIC)
                out.append(torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1))
        if skipped:
            run.log.warning("skipped %d bad %s image(s): %s", len(skipped), what, ", ".join(map(str, skipped[:5])))
        if not out:
            raise ArtshiftError(f"no usable training {what} ({len(paths)} files given, {len(skipped)} unreadable)",
                                hint=f"check the {what} folder of the training split")
        return torch.stack(out)

    # --- data -----------------------------------------------------------------------------
    def batch(self, seed: int, iteration: int) -> dict[str, torch.Tensor]:
        """Painting and photo crops of one iteration: a pure function of (seed, iteration)."""
        if self.paintings is None or self.photos is None:
            raise RuntimeError("batch() before prepare(): training images are not loaded")
        bs = self.config.batch_size
        epoch, pos = divmod(iteration, self.epoch_size)
        order = _epoch_permutation(seed, epoch, self.epoch_size * bs)
        a_idx = [int(order[pos * bs + j]) % len(self.paintings) for j in range(bs)]
        rng = np.random.default_rng([seed % 2**63, iteration, 0xC1C])
        b_idx = [int(i) for i in rng.integers(0, len(self.photos), size=bs)]
        return {"A": self._augment(self.paintings, a_idx, rng), "B": self._augment(self.photos, b_idx, rng)}

    def _augment(self, images: torch.Tensor, indices: list[int], rng: np.random.Generator) -> torch.Tensor:
        c = self.config
        span = c.load_size - c.crop_size + 1
        crops = []
        for i in indices:
            y, x = (int(v) for v in rng.integers(0, span, size=2))
            crop = images[i, :, y:y + c.crop_size, x:x + c.crop_size]
            if c.flip and rng.random() < 0.5:
                crop = crop.flip(-1)
            crops.append(crop)
        batch = torch.stack(crops).to(self.device, torch.float32)
        return batch / 127.5 - 1.0

    # --- optimisation ---------------------------------------------------------------------


class CycleGAN(UnpairedGAN):
    name = "cyclegan"
    config_class: ClassVar[type] = CycleGANConfig

    @classmethod
    def default_config(cls, profile: str) -> Any:
        return cls.config_class(**PROFILE_SETTINGS[check_profile(profile)])

    def __init__(self, config: CycleGANConfig, device: torch.device | str = "cpu"):
        super().__init__(config, device)
        c = config
        if c.crop_size > c.load_size:
            raise ArtshiftError(f"crop_size {c.crop_size} is larger than load_size {c.load_size}",
                                hint="set load_size >= crop_size (the reference uses 286 / 256)")
        if c.crop_size % 4:
            raise ArtshiftError(f"crop_size {c.crop_size} is not a multiple of 4",
                                hint="the generator downsamples twice by 2; use e.g. 32, 64, 128, 256")
        self.checkpoint_every = int(c.checkpoint_every)
        self.G_A = ResnetGenerator(3, 3, c.ngf, c.n_blocks, c.norm, c.use_dropout, residual=c.residual).to(self.device)
        self.G_B = ResnetGenerator(3, 3, c.ngf, c.n_blocks, c.norm, c.use_dropout, residual=c.residual).to(self.device)
        self.D_A = PatchDiscriminator(3, c.ndf, c.n_layers_D, c.norm).to(self.device)
        self.D_B = PatchDiscriminator(3, c.ndf, c.n_layers_D, c.norm).to(self.device)
        self.init_networks(torch.Generator().manual_seed(0))
        self.init_precision()
        betas = (c.beta1, c.beta2)
        self.opt_G = torch.optim.Adam(itertools.chain(self.G_A.parameters(), self.G_B.parameters()), lr=c.lr, betas=betas)
        self.opt_D = torch.optim.Adam(itertools.chain(self.D_A.parameters(), self.D_B.parameters()), lr=c.lr, betas=betas)
        self.fake_A_pool = ImagePool(c.pool_size)  # generated paintings, for D_B
        self.fake_B_pool = ImagePool(c.pool_size)  # generated photos, for D_A
        self._sizes: tuple[int, int] | None = None
        self.paintings: torch.Tensor | None = None
        self.photos: torch.Tensor | None = None

    # --- set-up ---------------------------------------------------------------------------
    def networks(self) -> dict[str, torch.nn.Module]:
        """Every trained network by checkpoint key; subclasses with more networks extend it."""
        return {"G_A": self.G_A, "G_B": self.G_B, "D_A": self.D_A, "D_B": self.D_B}

    def init_networks(self, generator: torch.Generator) -> None:
        for net in self.networks().values():
            init_weights(net, self.config.init_gain, generator)
        start_residual_generators_(self.networks().values())

    def extra_generator_losses(self, real_A: torch.Tensor, fake_B: torch.Tensor) -> dict[str, torch.Tensor]:
        """Hook for subclasses: extra (already weighted) generator loss terms, added to the G objective."""
        return {}

    def train_step(self, batch: dict[str, torch.Tensor], iteration: int) -> dict[str, torch.Tensor]:
        c = self.config
        lr = self.lr_at(iteration)
        for opt in (self.opt_G, self.opt_D):
            for group in opt.param_groups:
                group["lr"] = lr
        real_A, real_B = batch["A"], batch["B"]
        for net in self.networks().values():
            net.train()

        fake_B = self.net(self.G_A, real_A)
        rec_A = self.net(self.G_B, fake_B)
        fake_A = self.net(self.G_B, real_B)
        rec_B = self.net(self.G_A, fake_A)

        # generators, with the discriminators frozen
        set_requires_grad([self.D_A, self.D_B], False)
        self.opt_G.zero_grad(set_to_none=True)
        losses: dict[str, torch.Tensor] = {}
        losses["G_A"] = lsgan_loss(self.net(self.D_A, fake_B), True)
        losses["G_B"] = lsgan_loss(self.net(self.D_B, fake_A), True)
        losses["cycle_A"] = F.l1_loss(rec_A, real_A) * c.lambda_A
        losses["cycle_B"] = F.l1_loss(rec_B, real_B) * c.lambda_B
        if c.lambda_identity > 0:
            losses["idt_A"] = F.l1_loss(self.net(self.G_A, real_B), real_B) * c.lambda_B * c.lambda_identity
            losses["idt_B"] = F.l1_loss(self.net(self.G_B, real_A), real_A) * c.lambda_A * c.lambda_identity
        else:
            losses["idt_A"] = losses["idt_B"] = torch.zeros((), device=real_A.device)
        extra = self.extra_generator_losses(real_A, fake_B)
        overlap = set(extra) & set(losses)
        if overlap:
            raise RuntimeError(f"extra_generator_losses reuses loss names {sorted(overlap)}")
        losses.update(extra)
        self.backward(torch.stack([v.reshape(()) for v in losses.values()]).sum())
        self.step(self.opt_G)

        # discriminators, on real images and on generated ones from the history pools
        set_requires_grad([self.D_A, self.D_B], True)
        self.opt_D.zero_grad(set_to_none=True)
        losses["D_A"] = self._discriminator_loss(self.D_A, real_B, self.fake_B_pool.query(fake_B.detach()))
        self.backward(losses["D_A"])
        losses["D_B"] = self._discriminator_loss(self.D_B, real_A, self.fake_A_pool.query(fake_A.detach()))
        self.backward(losses["D_B"])
        self.step(self.opt_D)
        self.scaler.update()  # once per iteration, after every optimiser stepped (torch's rule)
        return {k: v.detach() for k, v in losses.items()}

    def _discriminator_loss(self, net: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * (lsgan_loss(self.net(net, real), True) + lsgan_loss(self.net(net, fake), False))

    # --- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {k: net.state_dict() for k, net in self.networks().items()}
        state["opt_G"] = self.opt_G.state_dict()
        state["opt_D"] = self.opt_D.state_dict()
        state["fake_A_pool"] = self.fake_A_pool.state_dict()
        state["fake_B_pool"] = self.fake_B_pool.state_dict()
        state.update(self.precision_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, net in self.networks().items():
            net.load_state_dict(state[key])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.fake_A_pool.load_state_dict(state["fake_A_pool"], self.device)
        self.fake_B_pool.load_state_dict(state["fake_B_pool"], self.device)
        self.load_precision_state(state)

    # --- inference ------------------------------------------------------------------------
    @torch.no_grad()
    def translate(self, images: torch.Tensor) -> torch.Tensor:
        """Paintings -> photos with G_A at the images' own size (any H, W)."""
        was_training = self.G_A.training
        self.G_A.eval()
        try:
            x, (h, w) = pad_to_multiple(images.to(self.device, torch.float32), 4)
            out = self.net(self.G_A, x)[..., :h, :w]
        finally:
            self.G_A.train(was_training)
        return out.to(images.device)


@lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed % 2**63, epoch, 0xE9]).permutation(n)
