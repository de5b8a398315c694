"""Downstream accuracy: does translating art to photos help a photo-trained classifier?

A classifier learns the classes of a labelled domain (PACS) from its training photos; it is
then scored on the photo test set (the in-domain ceiling), on the test paintings themselves
and on every finished run's translations of the same paintings. Paintings and their
translations are paired, so original vs translation is an exact McNemar test on the
discordant pairs, which is far more sensitive than comparing two unpaired accuracies.

Three classifiers, never mixed: by default a small network trained from scratch, labelled
``[scratch]`` in every row and title so its numbers never pass for those of an ImageNet network;
with ``--probe`` a linear classifier on frozen pretrained features (``benchmark.analyses.probe``;
EfficientNet-Lite0 by default, or the FID Inception's pool3, or ResNet-152), labelled
``[probe:effnet-lite0:imagenet:<sha12>]``, ``[probe:inception:fid-inception:<sha12>]``,
``[probe:resnet152:pretrained:<sha12>]`` (or ``[probe:<backbone>:random-init]`` when a
random-init backbone is asked for); with
``--finetune`` the whole ImageNet ResNet-152 fine-tuned on a GPU with DomainBed's ERM recipe
(``benchmark.analyses.finetune``), labelled ``[finetune:resnet152:pretrained:<sha12>]`` (or
``[finetune:<arch>:random-init]``). Each row's extractor id carries the classifier's content
key, so the leaderboard shows them in separate blocks. All three are cached by content key (the
data split's fingerprint, the config and the weights identity), so scoring new runs does not
retrain them, and all three are scored by the same code below.

Intervals: accuracy and per-class accuracy are binomial proportions with Wilson 95%
intervals. Balanced accuracy (the mean of per-class accuracies) is not one; its Wilson
interval uses Kish's effective sample size for equal-weight strata, n_eff = K^2 / sum(1/n_k)
(the n at which a plain proportion would have the same variance when the per-class
accuracies are alike), so it widens with small classes instead of pretending n is the total.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from benchmark import data
from benchmark.analyses.finetune import FinetuneClassifier, FinetuneConfig, check_device, get_finetuned
from benchmark.analyses.pixels import load_pixels
from benchmark.analyses.probe import ProbeClassifier, ProbeConfig, get_probe
from benchmark.core import paths, registry
from benchmark.core.atomic import atomic_path
from benchmark.core.errors import ArtshiftError
from benchmark.core.store import MetricRow, Store
from benchmark.data import resolution
from benchmark.metrics import display_name
from benchmark.metrics.intervals import McNemar, Proportion, mcnemar_exact, wilson
from benchmark.pipeline.runs import find_run

log = logging.getLogger("artshift.downstream")

VERSION = "downstream-1"  # bump when training or scoring changes (it is part of the cache key and the rows)
TAG = "scratch"  # the classifier's weights label, shown as [scratch]
LAYER = "classifier:all"  # layer id of the whole-set rows; per-class rows are classifier:<class>


@dataclass(frozen=True)
class ClassifierConfig:
    """A small VGG-style CNN trained from scratch on the training photos (no pretrained weights)."""

    size: int = 48  # input side in pixels (images are resized to size x size)
    width: int = 24  # channels of the first block; doubled per block
    blocks: int = 3
    epochs: int = 25
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    seed: int = 0


# per profile: ci is the tests' size (<= 48 px, <= 90 s on one thread), smoke the benchmark's (<= 5 min on 2 cores)
CONFIGS: dict[str, ClassifierConfig] = {
    "ci": ClassifierConfig(size=32, width=16, blocks=3, epochs=15),
    "smoke": ClassifierConfig(size=48, width=16, blocks=3, epochs=15),
    "quick": ClassifierConfig(size=64, width=32, blocks=4, epochs=40),
    "paper": ClassifierConfig(size=96, width=32, blocks=4, epochs=60),
}
CONFIGS["cpu"] = CONFIGS["smoke"]  # the same translate side (64 px)


def config_for(profile: str) -> ClassifierConfig:
    if profile not in CONFIGS:
        raise ArtshiftError(f"no downstream classifier for profile {profile!r} (known: {', '.join(CONFIGS)})")
    return CONFIGS[profile]


# --- data --------------------------------------------------------------------------------------

def check_labelled(artist: str, domain: data.Domain | None = None) -> None:
    """Downstream accuracy needs class labels; the painting collections have none."""
    if (domain is None and artist in data.ARTISTS and artist != "pacs") or (domain is not None and not domain.labels):
        raise ArtshiftError(f"artist {artist!r} has no class labels, so there is no downstream accuracy to measure",
                            hint="use --artist pacs (a labelled domain); a label-free protocol is not implemented")


def _as_input(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 127.5 - 1.0


# --- the classifier ----------------------------------------------------------------------------

def _network(cfg: ClassifierConfig, n_classes: int) -> nn.Module:
    layers: list[nn.Module] = []
    c_in, c = 3, cfg.width
    for _ in range(cfg.blocks):
        layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                   nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2)]
        c_in, c = c, c * 2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(c_in, n_classes)]
    return nn.Sequential(*layers)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and +-1/8 translations (reflect-padded crops): cheap and label-preserving."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    pad = max(1, h // 8)
    padded = nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    return _crop(padded, dy, dx, h, w)


def _crop(padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return torch.stack([padded[i, :, int(y):int(y) + h, int(x):int(x) + w] for i, (y, x) in enumerate(zip(dy, dx))])


def train(x: torch.Tensor, y: torch.Tensor, n_classes: int, cfg: ClassifierConfig, *, device: str = "cpu",
          progress: bool = False) -> nn.Module:
    """Adam with a one-cycle schedule and label smoothing; deterministic for a seed on one device."""
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = _network(cfg, n_classes).to(device)
    steps = cfg.epochs * -(-len(x) // cfg.batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    net.train()
    for _ in tqdm(range(cfg.epochs), desc="train classifier [scratch]", disable=not progress, leave=False):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            xb = _augment(_as_input(x[idx]), gen).to(device)
            loss = loss_fn(net(xb), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@dataclass
class Classifier:
    """A trained classifier, its identity (content key) and what it was trained on."""

    net: nn.Module
    classes: tuple[str, ...]
    config: ClassifierConfig
    key: str
    n_train: int
    train_s: float
    device: str = "cpu"
    cached: bool = False

    @property
    def id(self) -> str:
        """The extractor_id of its rows: which classifier produced a number."""
        return f"downstream-{TAG}-{self.key[:12]}"

    @property
    def tag(self) -> str:
        return TAG

    @property
    def resize_mode(self) -> str:
        return f"bilinear-{self.config.size}px"

    @property
    def title(self) -> str:
        return f"{self.config.size}px CNN [{TAG}]"

    @torch.no_grad()
    def predict(self, paths_: Sequence[Path], batch_size: int = 256) -> np.ndarray:
        x = load_pixels(paths_, self.config.size)
        out = [self.net(_as_input(x[i:i + batch_size]).to(self.device)).argmax(1).cpu()
               for i in range(0, len(x), batch_size)]
        return torch.cat(out).numpy() if out else np.empty(0, dtype=np.int64)


def cache_key(domain: data.Domain, cfg: ClassifierConfig) -> str:
    payload = {"version": VERSION, "data": data.split_fingerprint(domain), "config": dataclasses.asdict(cfg),
               "weights": TAG, "classes": list(domain.classes)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def get_classifier(domain: data.Domain, cfg: ClassifierConfig, home: Path, *, device: str = "cpu",
                   progress: bool = False) -> Classifier:
    """The classifier for (data split, config), trained on the training photos unless already cached."""
    check_labelled(domain.artist, domain)
    assert domain.labels is not None
    classes = domain.classes
    key = cache_key(domain, cfg)
    path = Path(home) / "cache" / "downstream" / f"{key}.pt"
    if path.exists():
        try:
            saved = torch.load(path, map_location=device, weights_only=True)
            net = _network(cfg, len(classes)).to(device)
            net.load_state_dict(saved["state_dict"])
            meta = json.loads(saved["meta"])
            return Classifier(net.eval(), classes, cfg, key, int(meta["n_train"]), float(meta["train_s"]), device,
                              cached=True)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            log.warning("ignoring unreadable classifier cache %s (%s); training again", path, exc)
    index = {c: i for i, c in enumerate(classes)}
    photos = list(domain.photos_train)
    x = load_pixels(photos, cfg.size)
    y = torch.tensor([index[domain.labels[p]] for p in photos])
    t = time.perf_counter()
    net = train(x, y, len(classes), cfg, device=device, progress=progress)
    train_s = time.perf_counter() - t
    meta = {"n_train": len(photos), "train_s": train_s, "config": dataclasses.asdict(cfg), "classes": list(classes),
            "version": VERSION, "torch_threads": torch.get_num_threads()}
    with atomic_path(path) as tmp:  # a full disk: one line naming the folder, no temporary file left
        torch.save({"state_dict": net.state_dict(), "meta": json.dumps(meta)}, tmp)
    return Classifier(net, classes, cfg, key, len(photos), train_s, device)


# --- scores ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SetScore:
    """One set's accuracy, balanced accuracy and per-class accuracy, with Wilson 95% intervals."""

    name: str
    correct: np.ndarray  # bool per image, in the order of the set's files
    accuracy: Proportion
    balanced: float
    balanced_interval: Proportion  # Wilson at Kish's effective n (see the module docstring)
    per_class: dict[str, Proportion]

    @property
    def n(self) -> int:
        return int(len(self.correct))


def score(name: str, predicted: np.ndarray, truth: np.ndarray, classes: Sequence[str]) -> SetScore:
    """Scores of class indices ``predicted`` against ``truth``; classes absent from ``truth`` are left out."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    if predicted.shape != truth.shape or truth.size == 0:
        raise ArtshiftError(f"{name}: {predicted.size} predictions for {truth.size} labelled images")
    correct = predicted == truth
    per_class = {c: wilson(int(correct[truth == k].sum()), int((truth == k).sum()))
                 for k, c in enumerate(classes) if (truth == k).any()}
    balanced = float(np.mean([p.value for p in per_class.values()]))
    k = len(per_class)
    n_eff = max(1, round(k * k / sum(1.0 / p.n for p in per_class.values())))
    return SetScore(name, correct, wilson(int(correct.sum()), int(correct.size)), balanced,
                    wilson(min(n_eff, round(balanced * n_eff)), n_eff), per_class)


def gap_closed(photo: float, original: float, translated: float) -> float | None:
    """Share of the photo-vs-painting accuracy gap a translation closes; None when there is no gap."""
    gap = photo - original
    return None if gap <= 0 else (translated - original) / gap


AnyClassifier = Union[Classifier, "ProbeClassifier", "FinetuneClassifier"]


def rows_for(s: SetScore, clf: AnyClassifier) -> list[MetricRow]:
    """Store rows (higher is better) of one set: n_real = training photos, n_fake = images scored."""
    def row(metric: str, layer: str, value: float, n: int, low: float, high: float) -> MetricRow:
        entry = registry.metrics.get(metric)
        return MetricRow(metric, layer, display_name(metric, layer, clf.tag), value, clf.n_train, n, clf.id,
                         clf.resize_mode, entry.version, direction=entry.direction, low=low, high=high)

    a, b = s.accuracy, s.balanced_interval
    rows = [row("accuracy", LAYER, a.value, a.n, a.low, a.high),
            row("balanced_accuracy", LAYER, s.balanced, s.n, b.low, b.high)]
    rows += [row("class_accuracy", f"classifier:{c}", p.value, p.n, p.low, p.high) for c, p in s.per_class.items()]
    return rows


# --- the whole command -------------------------------------------------------------------------

@dataclass
class Comparison:
    """A run's translations against the original paintings."""

    run_id: str
    method: str
    score: SetScore
    mcnemar: McNemar  # first = original paintings, second = translations
    gap_closed: float | None


@dataclass
class DownstreamResult:
    classifier: AnyClassifier
    photo: SetScore
    original: SetScore
    original_run: str | None  # the `original` run the originals' rows went to, if there is one
    runs: list[Comparison]
    stored: list[str]  # run ids that got rows


def _runs_at(store: Store, artist: str, profile: str, seed: int) -> list[Any]:
    """Every method's newest finished run of (artist, profile, seed)."""
    found = []
    for method in registry.methods.names():
        if store.find_runs(method=method, artist=artist, profile=profile, seed=seed, status="done"):
            found.append(find_run(store, method=method, artist=artist, profile=profile, seed=seed))
    return found


def evaluate(artist: str, *, profile: str = "smoke", seed: int = 0, run_ids: Sequence[str] = (),
             data_root: Path | None = None, home: Path | None = None, device: str = "cpu",
             progress: bool = False, store: Store | None = None,
             config: ClassifierConfig | None = None, probe: ProbeConfig | None = None,
             finetune: FinetuneConfig | None = None, allow_cpu: bool = False,
             log_fn: Callable[[str], None] | None = None) -> DownstreamResult:
    """``bench downstream``: train (or reuse) the classifier, score every set, then record all rows at once.

    ``probe`` set: the ImageNet linear probe instead of the scratch CNN (``config`` is then unused);
    ``finetune`` set: the fine-tuned ImageNet network, refused on a CPU ``device`` unless
    ``allow_cpu`` (or EfficientNet-Lite0 at most at its default steps: ``finetune.check_device``). Every run's translations are checked and scored before anything is written, so
    a bad run leaves the store untouched.
    """
    check_labelled(artist)
    if probe is not None and finetune is not None:
        raise ArtshiftError("--probe and --finetune are two different classifiers (a linear probe on frozen "
                            "features, the whole network fine-tuned); one call scores one",
                            hint="drop one of them; run the command twice for both (their rows never mix)")
    if finetune is not None:  # before anything else: refusing the CPU must not wait for data or weights

        check_device(device, allow_cpu, finetune)
    home = paths.home(home)
    store = store or Store(home / "results.sqlite")
    cfg = config or config_for(profile)
    if run_ids:  # name the runs first: an unknown id fails before any training
        runs = [find_run(store, run_id=r) for r in run_ids]
        for r in runs:
            if r.artist != artist:
                raise ArtshiftError(f"run {r.run_id} is a {r.method} run on {r.artist!r}, not {artist!r}",
                                    hint=f"pass runs of {artist}, or --artist {r.artist}")
    else:
        runs = _runs_at(store, artist, profile, seed)
    domain = data.ensure_domain(artist, paths.data_root(data_root), home, progress=progress)
    check_labelled(artist, domain)
    assert domain.labels is not None
    index = {c: i for i, c in enumerate(domain.classes)}
    paintings = list(domain.paintings_test)
    truth = np.array([index[domain.labels[p]] for p in paintings])
    translated: list[tuple[Any, list[Path]]] = []
    for run in runs:
        translated.append((run, run.translations(domain)))
    # the photo test set and the paintings themselves at the runs' translate size, like their translations
    side = resolution.common_side([(f"{r.method} ({r.run_id})", r.spec.translate_side) for r in runs],
                                  resolution.side_for(profile))
    resized = home / "cache" / "resized"

    say = log_fn or (lambda _m: None)
    clf: AnyClassifier
    if probe is not None:

        clf = get_probe(domain, probe, home, device=device, progress=progress)
    elif finetune is not None:

        clf = get_finetuned(domain, finetune, home, device=device, allow_cpu=allow_cpu, progress=progress)
    else:
        clf = get_classifier(domain, cfg, home, device=device, progress=progress)
    say(f"classifier {clf.title}: {'cached' if clf.cached else f'trained in {clf.train_s:.1f}s'} ({clf.id})")
    photos = list(domain.photos_test)
    photo = score("photo test", clf.predict(resolution.reference_copies(photos, side, resized)),
                  np.array([index[domain.labels[p]] for p in photos]), domain.classes)
    original = score("paintings (original)", clf.predict(resolution.reference_copies(paintings, side, resized)),
                     truth, domain.classes)
    comparisons = []
    original_run = None
    for run, outputs in translated:
        if run.method == "original":
            original_run = run.run_id
            continue
        s = score(f"{run.method} ({run.run_id})", clf.predict(outputs), truth, domain.classes)
        comparisons.append(Comparison(run.run_id, run.method, s,
                                      mcnemar_exact(original.correct.tolist(), s.correct.tolist()),
                                      gap_closed(photo.accuracy.value, original.accuracy.value, s.accuracy.value)))
    stored = []
    if original_run:
        store.add_metrics(original_run, rows_for(original, clf))
        stored.append(original_run)
    for c in comparisons:
        store.add_metrics(c.run_id, rows_for(c.score, clf))
        stored.append(c.run_id)
    return DownstreamResult(clf, photo, original, original_run, comparisons, stored)
