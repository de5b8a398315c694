"""Precision, recall, density and coverage of k-NN manifolds (k = 5) in the real pool3 space.

FID folds two things a painting -> photo method trades into one number: how photo-like each
translation is (realism) and how much of the photo distribution the translations span
(diversity). These four separate them:

- precision (Kynkaenniemi et al. 2019): share of translations inside some real photo's k-NN ball;
- recall (same): share of real photos inside some translation's k-NN ball;
- density (Naeem et al. 2020): mean number of real balls around a translation, over k;
- coverage (same): share of real photos whose ball holds at least one translation.

A ball's radius is the distance to the k-th nearest other member of its own set. Membership is
strict (``<``) as in the ``prdc`` package of Naeem et al.; torch-fidelity's ``prc`` uses ``<=``,
which differs only on exact ties. Distances are exact float64 (``scipy.spatial.distance.cdist``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial.distance import cdist

from benchmark.metrics import Metric, MetricValue

if TYPE_CHECKING:
    from benchmark.metrics.fid import Stats

log = logging.getLogger("artshift.metrics")

VERSION = "prdc-1"
K = 5
LAYERS = ("inception:2048",)  # the real pool3 space of the papers that defined them


def radii(features: np.ndarray, k: int = K) -> np.ndarray:
    """Distance from each point to its k-th nearest other point of the same set."""
    d = cdist(features, features)
    return np.partition(d, k, axis=1)[:, k]  # column 0 after partitioning is the point itself (0)


def prdc(real: np.ndarray, fake: np.ndarray, k: int = K) -> dict[str, float]:
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    r_real, r_fake = radii(real, k), radii(fake, k)
    d = cdist(real, fake)  # [n_real, n_fake]
    inside_real = d < r_real[:, None]
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((d < r_fake[None, :]).any(axis=1).mean()),
        "density": float((1.0 / k) * inside_real.sum(axis=0).mean()),  # the prdc package's order of operations
        "coverage": float((d.min(axis=1) < r_real).mean()),
    }


def _entry(name: str) -> Metric:
    def compute(real: Stats, fake: Stats) -> MetricValue | None:
        if real.features is None or fake.features is None:
            raise ValueError(f"{name} needs the features of both sets")
        if min(real.n, fake.n) <= K:
            log.warning("%s needs more than k = %d images per set (got %d real, %d generated): not computed",
                        name, K, real.n, fake.n)
            return None
        return MetricValue(prdc(real.features, fake.features)[name])

    return Metric(name, compute, layers=LAYERS, higher_is_better=True, version=VERSION, needs_features=True,
                  params=(("k", K),))


PRECISION = _entry("precision")
RECALL = _entry("recall")
DENSITY = _entry("density")
COVERAGE = _entry("coverage")
