"""Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2, cubic polynomial kernel.

Conventions follow torch-fidelity / clean-fid: k(x, y) = (x.y / d + 1)^3, ``n_subsets``
random subsets of ``subset_size`` drawn without replacement from each set with a seeded
generator; the value is the mean over subsets and the std is reported beside it. With small
sets (10 Cezanne test paintings) the subset size falls to the smaller set's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from benchmark.core.errors import ArtshiftError
from benchmark.metrics import Metric, MetricValue
from benchmark.metrics.mmd import mmd2_unbiased, poly_kernel

if TYPE_CHECKING:
    from benchmark.metrics.fid import Stats

VERSION = "kid-1"


@dataclass(frozen=True)
class KIDResult:
    mean: float
    std: float
    n_subsets: int
    subset_size: int


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    return mmd2_unbiased(poly_kernel(x, x), poly_kernel(y, y), poly_kernel(x, y))


def kid(real: np.ndarray, fake: np.ndarray, n_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> KIDResult:
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    size = min(subset_size, real.shape[0], fake.shape[0])
    if size < 2:
        raise ArtshiftError(f"KID needs at least 2 images per set, got {real.shape[0]} real and {fake.shape[0]} generated")
    rng = np.random.default_rng(seed)
    values = np.empty(n_subsets)
    for i in range(n_subsets):
        x = real[rng.choice(real.shape[0], size, replace=False)]
        y = fake[rng.choice(fake.shape[0], size, replace=False)]
        values[i] = _mmd2_unbiased(x, y)
    return KIDResult(float(values.mean()), float(values.std()), n_subsets, size)


def kid_from_features(real: np.ndarray, fake: np.ndarray, **kw) -> KIDResult:
    return kid(real, fake, **kw)


N_SUBSETS = 100
SUBSET_SIZE = 1000
SEED = 0


def _compute(real: Stats, fake: Stats) -> MetricValue:
    if real.features is None or fake.features is None:
        raise ValueError("KID needs the features of both sets")
    res = kid(real.features, fake.features, n_subsets=N_SUBSETS, subset_size=SUBSET_SIZE, seed=SEED)
    return MetricValue(res.mean, std=res.std)


# KID on the standard pool features (as in the KID paper) and on every layer of the analysis
# networks, where its unbiasedness at small n matters most
METRIC = Metric("kid", _compute, layers=("inception:2048", "inception-tv2018:2048", "effnet-lite0:1280", "vgg19:*", "resnet152:*"), higher_is_better=False,
                version=VERSION, needs_features=True,
                params=(("n_subsets", N_SUBSETS), ("subset_size", SUBSET_SIZE), ("seed", SEED)))
