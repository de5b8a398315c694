"""The kernel two-sample statistic KID is made of, shared by ``kid`` and ``bench shift``.

KID's kernel k(x, y) = (x.y / d + 1)^3 (Binkowski et al. 2018, as torch-fidelity and
clean-fid) and the unbiased MMD^2 estimate from the three kernel matrices: within-set means
leave out the diagonal (each image with itself), the cross-set mean keeps every pair.
"""

from __future__ import annotations

import numpy as np


def poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's kernel (x.y / d + 1)^3 between the rows of x and of y."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Full-set unbiased MMD^2 from the three kernel matrices."""
    m, n = kxx.shape[0], kyy.shape[0]
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())
