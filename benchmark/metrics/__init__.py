"""Metrics as plain functions over feature statistics, each described by one ``Metric`` entry.

A ``Metric`` says which layers it applies to (glob patterns over layer ids, e.g.
``inception:*``), whether higher is better, and its version; ``benchmark.core.registry.metrics``
holds one entry per metric and ``benchmark.pipeline.evaluate`` loops over them, so adding a metric is a
module here plus one registry line. ``display_name`` builds the label shown in tables and
stored with every row, carrying the extractor's weights tag so a number computed with
random-init weights can never pass for the real FID.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmark.metrics.fid import Stats


@dataclass(frozen=True)
class MetricValue:
    """One computed value: an optional spread (std over subsets) or interval (low, high)."""

    value: float
    std: float | None = None
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Metric:
    """A registered metric: ``compute(real, fake) -> MetricValue`` over per-layer ``Stats``.

    ``real`` is the cached reference set (it may lack raw features when it came from an
    imported .npz; ``needs_features`` metrics are then skipped with a warning). Metrics with
    ``computed_by`` set are declared here (name, direction, version) but produced by their
    command, so ``compute`` may be None for them.
    """

    name: str
    compute: Callable[[Stats, Stats], MetricValue | None] | None  # None from compute: not computable here
    layers: tuple[str, ...]  # glob patterns over layer ids
    higher_is_better: bool
    version: str
    needs_features: bool = False
    params: tuple[tuple[str, Any], ...] = ()
    # None: computed by the evaluation loop (`bench run` / `bench eval`) on every matching layer.
    # A command name (e.g. "bench shift"): its rows come from that command, which needs more than
    # two feature sets (reference halves, paired sets, labels); the entry still declares them.
    computed_by: str | None = None

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"

    def applies_to(self, layer: str) -> bool:
        return any(fnmatch.fnmatchcase(layer, pattern) for pattern in self.layers)


def layer_suffix(layer: str | int | None) -> str | None:
    """The FID Inception's layers keep their historic dims suffix (``FID-2048``); others show the id."""
    if layer is None:
        return None
    text = str(layer)
    network, _, name = text.partition(":")
    return name if network == "inception" else text


def display_name(metric: str, layer: str | int | None, tag: str = "", *, by_width: bool = False) -> str:
    """``display_name("fid", "inception:2048", "random-init") -> "FID-2048[random-init]"``.

    ``by_width``: the extractor names its layers by width and says which network in ``tag``
    (``FD-1280[effnet-lite0]``); a Frechet distance on it is ``FD``, since ``FID`` means the FID
    Inception's.
    """
    if by_width and layer is not None:
        name = "FD" if metric == "fid" else metric.upper()
        base = f"{name}-{str(layer).partition(':')[2]}"
    else:
        suffix = layer_suffix(layer)
        base = metric.upper() if suffix is None else f"{metric.upper()}-{suffix}"
    return f"{base}[{tag}]" if tag else base


def arrow(direction: str) -> str:
    return "\u2191" if direction == "higher" else "\u2193"
