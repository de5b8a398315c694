"""Metrics as plain functions over feature arrays (one module per metric).

Each metric is registered once in ``benchmark.registry.metrics``; ``display_name`` builds the
label shown in tables and stored with every row, carrying the extractor's weights tag so a
number computed with random-init weights can never pass for the real FID.
"""

from __future__ import annotations


def display_name(metric: str, dims: int | None, tag: str = "") -> str:
    """``display_name("fid", 2048, "random-init") -> "FID-2048[random-init]"``."""
    base = metric.upper() if dims is None else f"{metric.upper()}-{dims}"
    return f"{base}[{tag}]" if tag else base
