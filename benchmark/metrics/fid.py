"""Frechet distance between Gaussian fits of two feature sets, in float64.

Why not ``scipy.linalg.sqrtm``: it is slow (a Schur decomposition of a 2048x2048 matrix) and
its result for rank-deficient covariances (fewer images than dims, the usual case here: 10
Cezanne test paintings) is numerically fragile. We use the identity

    tr sqrt(S1 S2) = sum_i sqrt(lambda_i),  lambda = eig(S1^1/2 S2 S1^1/2)   (symmetric PSD)

with ``S1^1/2`` cached with the reference statistics, and, when one side has fewer samples
than dims and its centred features C are at hand, the equivalent small problem
``eig(C S1 C^T) / (n - 1)`` of size n x n (same non-zero eigenvalues).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmark.core.atomic import atomic_path
from benchmark.core.errors import ArtshiftError
from benchmark.metrics import Metric, MetricValue

VERSION = "fid-1"  # bump when the computation changes; stored with every result row


@dataclass
class Stats:
    """Mean and covariance of one feature set; keeps the features when known (KID needs them)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    features: np.ndarray | None = None
    _sqrt_sigma: np.ndarray | None = field(default=None, repr=False)

    @staticmethod
    def from_features(features: np.ndarray) -> Stats:
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[0] < 2:
            raise ArtshiftError(f"need at least 2 feature vectors to fit a Gaussian, got shape {f.shape}",
                                hint="evaluate on a folder with at least 2 images")
        return Stats(f.mean(axis=0), np.cov(f, rowvar=False), f.shape[0], f)

    @property
    def sqrt_sigma(self) -> np.ndarray:
        """Symmetric PSD square root of sigma (eigendecomposition, negative eigenvalues clipped)."""
        if self._sqrt_sigma is None:
            w, v = np.linalg.eigh(self.sigma)
            self._sqrt_sigma = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        return self._sqrt_sigma

    def save_npz(self, path: Path, with_sqrt: bool = False) -> None:
        """pytorch-fid-compatible (keys ``mu``, ``sigma``) plus ``n`` and, when known, features."""
        arrays: dict[str, np.ndarray] = {"mu": self.mu, "sigma": self.sigma, "n": np.asarray(self.n, np.int64)}
        if self.features is not None:
            arrays["features"] = self.features
        if with_sqrt:
            arrays["sqrt_sigma"] = self.sqrt_sigma
        path = Path(path)
        with atomic_path(path, suffix=".tmp.npz") as tmp:  # np.savez appends .npz to other names
            np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy stubs type **kwds as the allow_pickle flag

    @staticmethod
    def load_npz(path: Path) -> Stats:
        try:
            with np.load(path, allow_pickle=False) as z:
                mu, sigma = z["mu"].astype(np.float64), z["sigma"].astype(np.float64)
                n = int(z["n"]) if "n" in z else 0
                feats = z["features"] if "features" in z else None
                sq = z["sqrt_sigma"] if "sqrt_sigma" in z else None
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # missing, foreign, truncated
            raise ArtshiftError(f"cannot read statistics file {path}: {exc}",
                                hint="a statistics .npz needs arrays 'mu' and 'sigma' (pytorch-fid format)") from None
        if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
            raise ArtshiftError(f"statistics file {path}: mu {mu.shape} and sigma {sigma.shape} do not fit together")
        return Stats(mu, sigma, n, feats, sq)


def _trace_sqrt_product(a: Stats, b: Stats) -> float:
    """tr sqrt(Sa Sb), choosing the cheapest exact route."""
    d = a.mu.size
    for low, other in ((b, a), (a, b)):
        if low.features is not None and low.n - 1 < d:
            c = low.features - low.mu
            small = c @ other.sigma @ c.T / (low.n - 1)
            w = np.linalg.eigvalsh((small + small.T) / 2)
            return float(np.sqrt(np.clip(w, 0, None)).sum())
    if b._sqrt_sigma is not None and a._sqrt_sigma is None:
        a, b = b, a  # use whichever side already has its square root cached (the reference set)
    m = a.sqrt_sigma @ b.sigma @ a.sqrt_sigma
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet_distance(a: Stats, b: Stats) -> float:
    """||mu_a - mu_b||^2 + tr(Sa) + tr(Sb) - 2 tr sqrt(Sa Sb), in float64."""
    if a.mu.shape != b.mu.shape:
        raise ArtshiftError(f"cannot compare statistics of {a.mu.size} and {b.mu.size} dims")
    diff = a.mu - b.mu
    value = diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * _trace_sqrt_product(a, b)
    return float(value)


def fid_from_features(real: np.ndarray | Stats, fake: np.ndarray | Stats) -> float:
    """FID between two feature arrays [n, d] (or precomputed ``Stats``)."""
    ra = real if isinstance(real, Stats) else Stats.from_features(real)
    fb = fake if isinstance(fake, Stats) else Stats.from_features(fake)
    return frechet_distance(ra, fb)


def _compute(real: Stats, fake: Stats) -> MetricValue:
    return MetricValue(frechet_distance(real, fake))


METRIC = Metric("fid", _compute, layers=("inception:*", "inception-tv2018:*", "effnet-lite0:1280"), higher_is_better=False, version=VERSION)
