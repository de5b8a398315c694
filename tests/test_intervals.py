"""Wilson intervals, exact binomial and McNemar tests against scipy and hand-derived cases."""

from __future__ import annotations

import pytest
from scipy import stats

from benchmark.metrics.intervals import binomial_two_sided, mcnemar_exact, wilson


@pytest.mark.parametrize("k,n", [(0, 10), (1, 10), (5, 10), (10, 10), (37, 410), (300, 333), (1, 1)])
def test_wilson_equals_scipy(k, n):
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    got = wilson(k, n)
    assert got.low == pytest.approx(ref.low, abs=1e-12) and got.high == pytest.approx(ref.high, abs=1e-12)
    assert got.value == k / n


def test_binomial_two_sided_matches_scipy_and_hand_values():
    assert binomial_two_sided(7, 10) == pytest.approx(stats.binomtest(7, 10).pvalue)
    # all 4 of 4 discordant pairs one way: 2 * (1/2)^4 = 0.125
    assert binomial_two_sided(4, 4) == pytest.approx(0.125)


def test_mcnemar_hand_derived():
    # 10 paired items: both right 3, only first right 1, only second right 5, both wrong 1
    first = [True] * 3 + [True] + [False] * 5 + [False]
    second = [True] * 3 + [False] + [True] * 5 + [False]
    res = mcnemar_exact(first, second)
    assert (res.only_first, res.only_second) == (1, 5)
    # P(X <= 1) + P(X >= 5) for X ~ Bin(6, 1/2) = (1 + 6 + 6 + 1) / 64
    assert res.p_value == pytest.approx(14 / 64)
