"""Leaderboard tables in the paper's layout: one block per metric and layer, rows = methods,
columns = artists, every cell with its sample count.

Blocks never mix extractors: a value computed with random-init weights sits in a block whose
title carries ``[random-init]``, apart from any pretrained-weights block. Several seeds of
one (method, profile, artist) cell are shown as mean +- sample std with their count.
"""

from __future__ import annotations

import io
import math

import pandas as pd

from benchmark.data import ARTISTS
from benchmark.metrics import arrow

BLOCK_ORDER = {("fid", "inception:2048"): 0, ("fid", "inception:768"): 1, ("fid", "inception:192"): 2,
               ("fid", "inception:64"): 3, ("kid", "inception:2048"): 4}
METHOD_ORDER = ["original", "gatys", "cyclegan", "cut", "fastcut", "ours"]


def _cell(values: pd.Series, n_real: pd.Series, n_fake: pd.Series, metric: str) -> str:
    scale, digits = (1000.0, 2) if metric == "kid" else (1.0, 2)
    v = values.to_numpy() * scale
    seeds = len(v)
    nr, nf = int(n_real.min()), int(n_fake.min())
    text = f"{v.mean():.{digits}f}"
    if seeds > 1:
        sd = v.std(ddof=1)
        text += f" +- {sd:.{digits}f} ({seeds} seeds)"
    return f"{text} (n={nf}/{nr})"


def _row_label(method: str, profile: str, kind: str, method_weights: str | None = None) -> str:
    if kind == "eval":
        return method
    if isinstance(method_weights, str) and not method_weights.startswith("pretrained"):  # NULL reads as NaN
        # e.g. Gatys with a random-init VGG: never shown as the paper's style-transfer row
        return f"{method} [{profile}, {str(method_weights).split(':')[0]} network]"
    return f"{method} [{profile}]"


def build(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """[(block title, table)] from ``Store.results()``."""
    if df.empty:
        return []
    blocks = []
    keys = df[["metric", "layer", "display_name", "direction", "extractor_id", "resize_mode"]].drop_duplicates()
    keys = keys.assign(order=[BLOCK_ORDER.get((m, lay), 99) for m, lay in zip(keys.metric, keys.layer)])
    for _, key in keys.sort_values(["order", "extractor_id", "metric", "layer"]).iterrows():
        sub = df[(df.metric == key.metric) & (df.layer == key.layer) & (df.extractor_id == key.extractor_id)
                 & (df.resize_mode == key.resize_mode)]
        weights = sub["method_weights"] if "method_weights" in sub else [None] * len(sub)
        sub = sub.assign(row=[_row_label(m, p, k, w) for m, p, k, w in zip(sub.method, sub.profile, sub.kind,
                                                                              weights)])
        artists = [a for a in ARTISTS if a in set(sub.artist)] + sorted(set(sub.artist) - set(ARTISTS))
        rank = {m: i for i, m in enumerate(METHOD_ORDER)}
        rows = sorted(set(sub.row), key=lambda r: (rank.get(r.split(" [")[0], len(rank)), r))
        table = pd.DataFrame(index=rows, columns=artists, dtype=object)
        for (row, artist), cell in sub.groupby(["row", "artist"]):
            table.loc[row, artist] = _cell(cell.value, cell.n_real, cell.n_fake, key.metric)
        table = table.fillna("-")
        unit = " (x1e3)" if key.metric == "kid" else ""
        better = f"{arrow(key.direction)} {key.direction} is better"
        title = (f"{key.display_name}{unit} {better}; layer {key.layer}, extractor {key.extractor_id}, "
                 f"resize {key.resize_mode}")
        blocks.append((title, table))
    return blocks


def to_markdown(blocks: list[tuple[str, pd.DataFrame]]) -> str:
    if not blocks:
        return "No finished runs yet: try `bench run --method original --artist monet --profile smoke`.\n"
    out = io.StringIO()
    for title, table in blocks:
        out.write(f"### {title}\n\n")
        header = ["method"] + list(table.columns)
        out.write("| " + " | ".join(header) + " |\n")
        out.write("|" + "|".join("---" for _ in header) + "|\n")
        for row, values in table.iterrows():
            out.write("| " + " | ".join([str(row)] + [str(v) for v in values]) + " |\n")
        out.write("\n")
    out.write("Cells: value (n=generated/real images). Arrows: which direction is better.\n")
    return out.getvalue()


def to_csv(df: pd.DataFrame) -> str:
    """Long format, one row per stored value: what scripts and spreadsheets want."""
    cols = ["method", "profile", "artist", "seed", "method_weights", "display_name", "metric", "layer", "direction",
            "value", "std", "low", "high", "n_fake", "n_real", "extractor_id", "resize_mode", "metric_version", "run_id"]
    if df.empty:
        return ",".join(cols) + "\n"
    def blank(col: str) -> list:
        return [None if (v is None or (isinstance(v, float) and math.isnan(v))) else v for v in df[col]]

    df = df.assign(std=blank("std"), low=blank("low"), high=blank("high"))
    order = [BLOCK_ORDER.get((m, lay), 99) for m, lay in zip(df.metric, df.layer)]
    return df.assign(_order=order).sort_values(["_order", "metric", "layer", "method", "artist"])[cols].to_csv(
        index=False)
