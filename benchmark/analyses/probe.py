"""The ImageNet linear probe of ``bench downstream --probe``.

A small CNN trained from scratch on 1337 photos measures how *that* network sees paintings;
the field's question is how an ImageNet-trained network does. Fine-tuning one needs a GPU
(``--finetune``), but a linear classifier on its frozen, globally pooled features (the
standard "linear probe") trains in seconds on a CPU once the features exist, and every image
is embedded only once:
features are cached per image by content (``benchmark.analyses.shift.image_features``), so scoring a
new run costs one forward pass per translation.

- Backbone: torchvision's ResNet-152 (the IMAGENET1K_V1 file that ``bench shift`` uses,
  ``benchmark.features.weights`` name ``resnet152``, sha256-verified and strictly loaded by
  ``benchmark.features.tv_features``). Its ``layer4`` globally average-pooled is exactly the 2048-d
  input of ImageNet's fc layer.
- Preprocessing: ImageNet's evaluation recipe (shorter side to 256, bilinear with antialias,
  centre crop 224, ImageNet mean/std), the one the weights were trained for; unlike the FID
  extractors, this classifier is meant to be as accurate as the network allows.
- Classifier: scikit-learn's ``LogisticRegression`` (multinomial, L-BFGS) on standardised
  features; its inverse regularisation C is chosen on a fixed, seeded, stratified 20% of the
  training photos, then the probe is refitted on all of them. Only arrays are saved (no pickle),
  and prediction is the same affine map and argmax ``predict`` computes.

Without the ImageNet file the probe refuses (``--weights pretrained`` is the default): a linear
probe on random features is a different measurement, so it is only used when asked for with
``--weights random`` (a seeded ResNet-152 whose BatchNorm statistics are re-estimated on the
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
from benchmark.core.errors import ArtshiftError
from benchmark.features.extract import image_features
from benchmark.features.extractor import calibration_photos, check_layers
from benchmark.features.tv_features import RESNET152, Network, TorchvisionExtractor, get_extractor
from benchmark.features.vgg import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger("artshift.downstream")

VERSION = "probe-1"  # bump when features, fitting or prediction change (part of the cache key and the rows)
WEIGHTS = ("pretrained", "random")
# the backbones a probe can stand on; the factory tests replace with a tiny network
BACKBONES: dict[str, Network] = {"resnet152": RESNET152}


@dataclass(frozen=True)
class ProbeConfig:
    """Which frozen features, and how the linear classifier on them is fitted."""

    backbone: str = "resnet152"
    weights: str = "pretrained"  # or "random" (a calibrated random-init backbone, labelled so)
    size: int = 224  # centre crop side
    resize: int = 256  # shorter side before the crop
    # inverse L2 strengths tried on the validation split (standardised features); on PACS with a random-init
    # ResNet-152 the smallest of 1e-3..10 won, so the grid reaches 1e-4 and drops 10 (worst there, slowest)
    cs: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    val_fraction: float = 0.2
    seed: int = 0  # validation split and random-init backbone
    max_iter: int = 2000

    def __post_init__(self) -> None:
        if self.weights not in WEIGHTS:
            raise ArtshiftError(f"unknown probe weights {self.weights!r} (use {' or '.join(WEIGHTS)})")
        if self.backbone not in BACKBONES:
            raise ArtshiftError(f"unknown probe backbone {self.backbone!r} (known: {', '.join(BACKBONES)})")
        if not 0 < self.val_fraction < 1 or not self.cs or min(self.cs) <= 0 or self.resize < self.size:
            raise ArtshiftError(f"bad probe config {self}: need 0 < val_fraction < 1, positive cs, resize >= size")


# --- features ------------------------------------------------------------------------------------

class ProbeFeatures:
    """The backbone's pooled last stage behind the feature-extractor protocol, with ImageNet's
    evaluation preprocessing, so ``benchmark.analyses.shift.image_features`` can cache it per image."""

    def __init__(self, inner: TorchvisionExtractor, layer: str, size: int, resize: int):
        self.inner = inner
        self.name = f"{inner.name}-probe"
        self.id = inner.id
        self.display_tag = inner.display_tag
        self.resize_mode = f"imagenet-resize{resize}-crop{size}"
        self.layers: tuple[str, ...] = (layer,)
        self.widths = {layer: inner.widths[layer]}
        self.size, self.resize = size, resize
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def preprocess(self, img: np.ndarray) -> torch.Tensor:
        from torchvision.transforms import functional as F

        pil = F.resize(Image.fromarray(img), self.resize, interpolation=F.InterpolationMode.BILINEAR, antialias=True)
        x = F.pil_to_tensor(F.center_crop(pil, [self.size, self.size])).float() / 255
        return (x - self._mean) / self._std

    def __call__(self, batch: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        return self.inner(batch, check_layers(self, layers))


def backbone(cfg: ProbeConfig, calibration: Sequence[Path], home: Path, device: str = "cpu",
             progress: bool = False) -> ProbeFeatures:
    """The frozen backbone: the verified ImageNet file, or (asked for) a calibrated random init.

    Never downloads: a missing file is an error naming it and ``bench weights fetch/import``.
    """
    network = BACKBONES[cfg.backbone]
    inner = get_extractor(network, weights=cfg.weights, home=home, calibration_paths=list(calibration),
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
        """Shown in every metric name: which network and weights, e.g. ``probe:resnet152:pretrained:394f9c45abcd``."""
        weights = "random-init" if self.extractor.display_tag else self.extractor.id
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
