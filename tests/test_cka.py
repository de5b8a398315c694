"""Debiased linear CKA against the unbiased HSIC estimator of Song et al. (2012), written out here."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from benchmark.core.errors import ArtshiftError
from benchmark.metrics import cka


def hsic_song(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    """Song et al. 2012, eq. (5): with diagonals zeroed,
    [tr(KL) + 1'K1 1'L1 / ((n-1)(n-2)) - 2/(n-2) 1'KL1] / (n(n-3))."""
    n = k.shape[0]
    kt = k.astype(np.float64).copy()
    lt = l.astype(np.float64).copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    one = np.ones(n)
    term1 = np.trace(kt @ lt)
    term2 = (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * (one @ kt @ lt @ one)
    return float((term1 + term2 - term3) / (n * (n - 3)))


def cka_song(x: np.ndarray, y: np.ndarray) -> float:
    k, l = x @ x.T, y @ y.T  # noqa: E741
    return hsic_song(k, l) / np.sqrt(hsic_song(k, k) * hsic_song(l, l))


@pytest.fixture
def xy():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(25, 40))
    y = x[:, :30] @ rng.normal(size=(30, 12)) + 0.5 * rng.normal(size=(25, 12))
    return x, y


def test_matches_song_formula(xy):
    x, y = xy
    assert cka.linear_cka(x, y) == pytest.approx(cka_song(x, y), rel=1e-10)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(9, 5)), rng.normal(size=(9, 300))  # n < d, and nearly independent
    assert cka.linear_cka(a, b) == pytest.approx(cka_song(a, b), rel=1e-10, abs=1e-12)
    assert cka.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_invariant_to_orthogonal_maps_and_isotropic_scaling(xy):
    x, y = xy
    base = cka.linear_cka(x, y)
    qx = ortho_group.rvs(x.shape[1], random_state=1)
    qy = ortho_group.rvs(y.shape[1], random_state=2)
    assert cka.linear_cka(3.7 * x @ qx, 0.01 * y @ qy) == pytest.approx(base, rel=1e-9)
    # not invariant to an anisotropic scaling (a check that the test can fail)
    assert abs(cka.linear_cka(x * np.linspace(0.1, 10, x.shape[1]), y) - base) > 1e-3


def test_debiased_is_near_zero_for_independent_features_where_biased_cka_is_not():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(40, 4096)), rng.normal(size=(40, 4096))
    assert abs(cka.linear_cka(x, y)) < 0.05
    xc, yc = x - x.mean(0), y - y.mean(0)
    biased = np.linalg.norm(xc.T @ yc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert biased > 0.5


def test_permutation_baseline_and_errors(xy):
    x, y = xy
    perm = cka.permutation_ckas(x, y, n_perm=200, seed=0)
    assert perm.shape == (200,) and abs(perm.mean()) < 0.1 and cka.linear_cka(x, y) > perm.max()
    # one shuffle equals CKA on the shuffled rows
    p = np.random.default_rng(0).permutation(len(x))
    assert perm[0] == pytest.approx(cka.linear_cka(x, y[p]), rel=1e-10)
    with pytest.raises(ArtshiftError, match="at least 4"):
        cka.linear_cka(x[:3], y[:3])
    with pytest.raises(ArtshiftError, match="same rows"):
        cka.linear_cka(x, y[:-1])
