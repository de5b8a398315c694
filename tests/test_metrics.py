"""FID and KID against independent float64 references (scipy sqrtm, SVD nuclear norm, loops)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from benchmark.metrics import display_name
from benchmark.metrics.fid import Stats, fid_from_features, frechet_distance
from benchmark.metrics.kid import kid


def _features(n, d, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + shift


def _sqrtm_reference(f1, f2):
    """pytorch-fid's formula with scipy sqrtm, in float64."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("d", [8, 64])
def test_frechet_matches_scipy_sqrtm_full_rank(d):
    f1, f2 = _features(500, d, 0), _features(400, d, 1, shift=0.3)
    ref = _sqrtm_reference(f1, f2)
    assert fid_from_features(f1, f2) == pytest.approx(ref, rel=1e-6)
    # the stats-only path (no features, as from an imported pytorch-fid .npz) agrees too
    a, b = Stats.from_features(f1), Stats.from_features(f2)
    a.features = b.features = None
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("n1,n2,d", [(10, 300, 128), (300, 12, 128), (9, 11, 128)])
def test_frechet_rank_deficient_matches_nuclear_norm(n1, n2, d):
    f1, f2 = _features(n1, d, 2), _features(n2, d, 3, shift=0.5)
    c1, c2 = f1 - f1.mean(0), f2 - f2.mean(0)
    tr_sqrt = np.linalg.svd(c1 @ c2.T, compute_uv=False).sum() / np.sqrt((n1 - 1) * (n2 - 1))
    mu = f1.mean(0) - f2.mean(0)
    exact = mu @ mu + np.trace(np.cov(f1, rowvar=False)) + np.trace(np.cov(f2, rowvar=False)) - 2 * tr_sqrt
    assert fid_from_features(f1, f2) == pytest.approx(exact, rel=1e-6)
    # and the covariance-only route (features dropped) reaches the same value
    a, b = Stats.from_features(f1), Stats.from_features(f2)
    a.features = b.features = None
    assert frechet_distance(a, b) == pytest.approx(exact, rel=1e-6)


def test_frechet_identical_sets_is_zero_and_symmetric():
    f1, f2 = _features(200, 16, 4), _features(150, 16, 5, shift=1.0)
    assert abs(fid_from_features(f1, f1)) < 1e-8
    assert fid_from_features(f1, f2) == pytest.approx(fid_from_features(f2, f1), rel=1e-9)


def test_stats_npz_roundtrip_pytorch_fid_keys(tmp_path):
    f = _features(50, 8, 6)
    s = Stats.from_features(f)
    s.save_npz(tmp_path / "s.npz", with_sqrt=True)
    with np.load(tmp_path / "s.npz") as z:
        assert set(z.files) >= {"mu", "sigma"}
        np.testing.assert_array_equal(z["mu"], s.mu)
    t = Stats.load_npz(tmp_path / "s.npz")
    assert t.n == 50
    np.testing.assert_allclose(t.sqrt_sigma @ t.sqrt_sigma, s.sigma, atol=1e-10)


def _kid_loop_reference(x, y):
    """Unbiased MMD^2 written element by element."""
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    m = len(x)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return sxx + syy - 2 * sxy


def test_kid_single_full_subset_matches_loop():
    x, y = _features(12, 6, 7), _features(12, 6, 8, shift=0.4)
    r = kid(x, y, n_subsets=3, subset_size=12, seed=0)  # the whole set each time: no randomness left
    assert r.mean == pytest.approx(_kid_loop_reference(x, y), rel=1e-10)
    assert r.std == pytest.approx(0.0, abs=1e-12)


def test_kid_seeded_and_separates():
    x, y, z = _features(80, 16, 9), _features(80, 16, 10), _features(80, 16, 11, shift=1.0)
    assert kid(x, z, n_subsets=20, subset_size=30, seed=1) == kid(x, z, n_subsets=20, subset_size=30, seed=1)
    assert kid(x, z, n_subsets=20, subset_size=30).mean > 10 * abs(kid(x, y, n_subsets=20, subset_size=30).mean)


def test_display_name_carries_weights_tag():
    assert display_name("fid", 2048, "random-init") == "FID-2048[random-init]"
    assert display_name("fid", 2048) == "FID-2048"
    assert display_name("kid", None, "random-init") == "KID[random-init]"
    assert display_name("fid", "inception:768", "random-init") == "FID-768[random-init]"
    assert display_name("kid", "vgg19:relu4_2", "random-init") == "KID-vgg19:relu4_2[random-init]"
