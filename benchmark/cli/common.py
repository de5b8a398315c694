"""What several ``bench`` command groups share: the consoles, common options, enums, tables.

Nothing here imports a command group, so any group module can import it.
"""

from __future__ import annotations

import sys
from enum import Enum

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmark.metrics import arrow

# piped output (CI logs, files) gets room for full extractor ids instead of rich's 80 columns
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

DataRoot = typer.Option(None, "--data-root", help="dataset root (default: $ARTSHIFT_DATA, else the user cache)")
Home = typer.Option(None, "--home", help="where runs, caches and results go (default: $ARTSHIFT_HOME)")
Reference = typer.Option(None, "--reference", help="a folder of photos to measure against instead of the data's "
                                                   "photo test set (rows keyed by its content hash; a run's own "
                                                   "rows are unchanged)")


class Fmt(str, Enum):
    md = "md"
    csv = "csv"


class BadImage(str, Enum):
    error = "error"
    skip = "skip"


class Weights(str, Enum):
    auto = "auto"
    pretrained = "pretrained"
    random = "random"


def _metrics_table(rows: list[dict], title: str) -> Table:
    table = Table(title=escape(title))
    for col in ("metric", "value", "n fake", "n real", "extractor"):
        table.add_column(col, justify="right" if col in ("value", "n fake", "n real") else "left",
                         overflow="fold")  # never truncate a weights label
    for r in rows:
        value = f"{r['value']:.4f}" + (f" +- {r['std']:.4f}" if r.get("std") is not None else "")
        if r.get("low") is not None and r.get("high") is not None:
            value += f" [{r['low']:.4f}, {r['high']:.4f}]"
        name = f"{r['display_name']} {arrow(r.get('direction', 'lower'))}"
        # escape: rich would otherwise eat "[random-init]" as a markup tag
        table.add_row(escape(name), escape(value), str(r["n_fake"]), str(r["n_real"]), escape(r["extractor_id"]))
    return table
