"""Intervals and exact tests for proportions: shared by downstream accuracy and user studies.

Why Wilson: with the sample sizes here (10-400 test images, a few hundred study trials) and
proportions near 0 or 1, the normal-approximation interval leaves [0, 1] and undercovers;
Wilson's score interval does neither. Why exact tests: McNemar's chi-square approximation is
poor with few discordant pairs, and a binomial test on the discordant pairs is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as _stats

from benchmark.core.errors import ArtshiftError


@dataclass(frozen=True)
class Proportion:
    successes: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.successes / self.n if self.n else math.nan


def wilson(successes: int, n: int, confidence: float = 0.95) -> Proportion:
    """Wilson score interval (equals scipy's ``binomtest(k, n).proportion_ci(method="wilson")``)."""
    if n <= 0:
        raise ArtshiftError("a proportion needs at least one trial (n = 0)")
    if not 0 <= successes <= n:
        raise ArtshiftError(f"successes {successes} outside [0, {n}]")
    z = _stats.norm.ppf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Proportion(successes, n, max(0.0, centre - half), min(1.0, centre + half))


def binomial_two_sided(successes: int, n: int, p: float = 0.5) -> float:
    """Exact two-sided binomial test p-value (scipy's definition: outcomes no more likely)."""
    if n == 0:
        return 1.0
    return float(_stats.binomtest(successes, n, p, alternative="two-sided").pvalue)


@dataclass(frozen=True)
class McNemar:
    only_first: int  # pairs where only the first classifier/condition was right
    only_second: int  # pairs where only the second was right
    p_value: float


def mcnemar_exact(first_correct: list[bool], second_correct: list[bool]) -> McNemar:
    """Paired exact McNemar test: a binomial test (p = 1/2) on the discordant pairs."""
    if len(first_correct) != len(second_correct):
        raise ArtshiftError(f"McNemar needs paired outcomes, got {len(first_correct)} and {len(second_correct)}")
    b = sum(1 for a, c in zip(first_correct, second_correct, strict=True) if a and not c)
    c = sum(1 for a, d in zip(first_correct, second_correct, strict=True) if d and not a)
    return McNemar(b, c, binomial_two_sided(b, b + c, 0.5))
