"""Leaderboard tables in the paper's layout: one block per metric, layer and extractor, rows =
(method, profile, resolved overrides), columns = artists, in five formats (md, latex, csv, html,
json).

What a cell may average, and why:

- Blocks never mix extractors: a value computed with random-init weights sits in a block whose
  title carries ``[random-init]``, apart from any pretrained-weights block.
- Rows are (method, profile, resolved ``--set`` overrides): runs that differ in a setting are
  different experiments, never "seeds" of one. The overrides come from each run's stored spec
  (v2: values coerced to the config's types, so ``lr=1e-3`` and ``lr=0.001`` are one row; v1:
  the text as typed).
- A cell averages runs on one data fingerprint only (the one most of its runs used; ties go to
  the newest): numbers on other data would silently mix test sets. The others are footnoted
  with their count.
- Several seeds are shown as mean +- sample std (ddof 1) with their count, always with n; a
  missing cell says why (``- (no run)``, ``- (1 failed)``), never blank.
- Best value per column in bold and the second underlined, using the metric's direction,
  compared only among rows of the same profile (a block is one extractor already): a ``ci``
  run must not win against a ``paper`` run it cannot be compared with. A best needs at least
  two rows to beat, a second at least three.

CSV is long/tidy, one stored value per row: the source of truth the other formats summarise.
JSON carries ``schema_version`` so scripts can check what they read.
"""

from __future__ import annotations

import dataclasses
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.core import registry
from benchmark.core.errors import ArtshiftError, did_you_mean
from benchmark.core.locks import RunLock
from benchmark.core.spec import RunSpec, override_values, set_text
from benchmark.core.store import frame
from benchmark.data import ARTISTS, resolution
from benchmark.features.extractor import is_random_init
from benchmark.metrics import arrow

FORMATS = ("md", "latex", "csv", "html", "json")
JSON_SCHEMA = "artshift-leaderboard"
JSON_SCHEMA_VERSION = 1
BLOCK_ORDER = {("fid", "inception:2048"): 0, ("fid", "inception:768"): 1, ("fid", "inception:192"): 2,
               ("fid", "inception:64"): 3, ("kid", "inception:2048"): 4}
METHOD_ORDER = ["original", "gatys", "cyclegan", "cut", "fastcut", "ours"]
FIRST_RUN = "bench run --method original --artist monet --profile smoke"
EMPTY = f"No finished runs yet: try `{FIRST_RUN}`, then `bench leaderboard` again.\n"
LEGEND = ("Cells: mean +- sample std over seeds (seed count) (n=generated/real images). Best per column in bold, "
          "second underlined, among rows of one profile. Arrows: which direction is better.")
CSV_COLUMNS = ["method", "profile", "artist", "seed", "method_weights", "display_name", "metric", "layer", "direction",
               "value", "std", "low", "high", "n_fake", "n_real", "extractor_id", "resize_mode", "metric_version",
               "run_id", "kind", "overrides", "data_fingerprint"]


# --- reading the store ---------------------------------------------------------------------------

def overrides_of(spec_json: Any) -> str:
    """``"lr=0.001, n_blocks=6"`` from a stored spec, for display (read from the raw JSON: rows of
    every spec version and of evals, not only whole run specs)."""
    try:
        raw = json.loads(spec_json) if isinstance(spec_json, str) else {}
    except ValueError:
        return ""
    if not isinstance(raw, dict):
        return ""
    pairs = override_values(raw.get("overrides", []), raw.get("spec_version", 1))
    return ", ".join(f"{k}={set_text(v)}" for k, v in pairs)


def tags_of(method: str, profile: str, kind: str, spec_json: Any, run_dir: Any) -> str:
    """The method's own row notes (``Method.label_tags``) for the config the run really used, and
    the method version when it is not today's: settings that change what a row means even as
    defaults (Gatys' style-photo policy, ours' retrieval space, CUT's taps) and runs of older code
    never share a row with today's."""
    if kind != "run" or method not in registry.methods:
        return ""
    try:
        spec = json.loads(spec_json) if isinstance(spec_json, str) else {}
        cls = registry.methods.get(method)
        config = cls.default_config(profile)
        saved = Path(run_dir) / "spec.json" if isinstance(run_dir, str) and run_dir else None
        stored = json.loads(saved.read_text(encoding="utf-8")).get("config") if saved and saved.is_file() else None
        if isinstance(stored, dict):  # what the run used, over today's defaults for fields it predates
            names = {f.name for f in dataclasses.fields(config)}
            config = dataclasses.replace(config, **{k: tuple(v) if isinstance(v, list) else v
                                                    for k, v in stored.items() if k in names})
        tags = list(cls.label_tags(config))
    except Exception:  # noqa: BLE001 - a label note must never hide a leaderboard
        return ""
    version = spec.get("method_version") if isinstance(spec, dict) else None
    if version and str(version) != str(cls.VERSION):
        tags.append(f"{method} v{version}, now v{cls.VERSION}")
    side = resolution.side_for(profile)
    if isinstance(spec, dict) and spec.get("translate_side") != side:  # measured under another translate size
        had = spec.get("translate_side")
        tags.append(f"translated at {'native size' if had is None else f'{had} px'}, now "
                    f"{'native size' if side is None else f'{side} px'}")
    return "; ".join(tags)


def runs_table(store: Any) -> pd.DataFrame:
    """Every run (any status) with its resolved overrides, for row keys and missing-cell reasons."""

    # the store's own connection: read-only (immutable) where it cannot be written, damage named in one line
    runs = frame(store, "SELECT run_id, kind, method, artist, profile, seed, spec_json, data_fingerprint, run_dir, "
                        "method_weights, status, updated_at, created_at, spec_version, error, timings_json, "
                        "provenance_json FROM runs")
    runs = runs.assign(overrides=[overrides_of(s) if k == "run" else "" for s, k in zip(runs.spec_json, runs.kind)])
    # a 'running' run whose process is gone (kill -9, a lost node) is interrupted, not running
    runs = runs.assign(status=[("interrupted" if st == "running" and k == "run" and not _alive(rid, d) else st)
                               for st, k, rid, d in zip(runs.status, runs.kind, runs.run_id, runs.run_dir)])
    return runs.assign(tags=[tags_of(m, p, k, s, d) for m, p, k, s, d in
                             zip(runs.method, runs.profile, runs.kind, runs.spec_json, runs.run_dir)])


def _alive(run_id: str, run_dir: Any) -> bool:
    """Whether a live process holds the run's lock (``benchmark.locks``: its pid on this host, or a
    fresh heartbeat from another host)."""

    if not isinstance(run_dir, str) or not run_dir:
        return False
    return RunLock(Path(run_dir).parent / f".{run_id}.lock").held()


def resume_command(run: Any) -> str:
    """The `bench run` command that resumes a run (a row of ``runs_table``)."""
    try:
        raw = json.loads(run.spec_json)
    except (TypeError, ValueError):
        raw = {}
    raw = raw if isinstance(raw, dict) else {}
    seed = 0 if run.seed is None or pd.isna(run.seed) else int(run.seed)
    return RunSpec(run.method, run.artist, run.profile, seed, tuple(tuple(kv) for kv in raw.get("overrides", ())),
                   spec_version=raw.get("spec_version", 1)).command()


def interrupted_notes(runs: pd.DataFrame) -> list[str]:
    """One line per interrupted run: which, and the command that resumes it."""
    return [f"{r.method} / {r.artist} / {r.profile} (run {r.run_id}) was interrupted: resume it with `{resume_command(r)}`"
            for r in runs[runs.status == "interrupted"].itertuples() if r.kind == "run"]


def load(store: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metric rows of finished runs with their overrides and data fingerprint, all runs)."""
    runs = runs_table(store)
    df = store.results()
    extra = runs.set_index("run_id")[["overrides", "data_fingerprint", "tags"]]
    return df.join(extra, on="run_id"), runs


def check_filters(df: pd.DataFrame, runs: pd.DataFrame, artists: list[str] | None,
                  metrics: list[str] | None) -> None:
    """Unknown artist or metric names: one error with the known ones and a did-you-mean."""
    import difflib

    for kind, asked, known in (("artist", artists, set(ARTISTS) | set(runs.artist)),
                               ("metric", metrics, set(registry.metrics.names()) | set(df.metric))):
        for name in asked or []:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                raise ArtshiftError(f"unknown {kind} {name!r} (known: {', '.join(sorted(known))})",
                                    hint=f"did you mean {close[0]!r}?" if close else f"pick one of the known {kind}s")


def check_nonempty(df: pd.DataFrame, runs: pd.DataFrame) -> None:
    """A store whose runs all failed (or still run) is an error that says what to look at."""
    if df.empty and not runs.empty and set(runs.status) - {"interrupted", "running"}:
        counts = runs.status.value_counts().to_dict()
        what = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        last = runs.sort_values("updated_at").iloc[-1]
        raise ArtshiftError(f"no finished runs in the store ({what}); newest: {last.method} / {last.artist} "
                            f"({last.status})", hint=f"read {last.method}'s log.txt in its run folder, fix the cause "
                                                     f"and run the same `bench run` command again (it resumes)")


# --- the table model -------------------------------------------------------------------------

@dataclass
class Cell:
    mean: float | None = None  # stored units (KID not scaled)
    std: float | None = None
    seeds: int = 0
    n_fake: int | None = None
    n_real: int | None = None
    rank: int = 0  # 1 best, 2 second, 0 neither
    missing: str | None = None  # why there is no value
    notes: list[int] = field(default_factory=list)  # footnote numbers
    text: str = ""


@dataclass
class Row:
    label: str
    kind: str
    method: str
    profile: str
    overrides: str
    method_weights: str | None
    tags: str = ""  # the method's own label notes (Method.label_tags) and an older method version


@dataclass
class Block:
    title: str
    metric: str
    layer: str
    display_name: str
    direction: str
    extractor_id: str
    resize_mode: str
    scale: float
    columns: list[str]
    rows: list[Row]
    cells: dict[tuple[str, str], Cell]

    def table(self) -> pd.DataFrame:
        """The block as text cells (rows x artists)."""
        return pd.DataFrame([[self.cells[r.label, a].text for a in self.columns] for r in self.rows],
                            index=[r.label for r in self.rows], columns=self.columns, dtype=object)


class Board(list):
    """The blocks of a leaderboard, with the footnotes their cells refer to."""

    def __init__(self, blocks: list[Block] = (), footnotes: list[str] | None = None):  # type: ignore[assignment]
        super().__init__(blocks)
        self.footnotes = footnotes or []


def _row_label(method: str, profile: str, kind: str, method_weights: Any = None, overrides: str = "",
               tags: str = "") -> str:
    if kind == "eval":
        return method
    inner = profile
    if isinstance(method_weights, str) and not method_weights.startswith("pretrained"):  # NULL reads as NaN
        # e.g. Gatys with a random-init VGG: never shown as the paper's style-transfer row
        inner += f", {method_weights.split(':')[0]} network"
    if overrides:
        inner += f"; {overrides}"
    if tags:
        inner += f"; {tags}"
    return f"{method} [{inner}]"


def _fmt(v: float) -> str:
    return f"{v:.2f}"


def _value_text(cell: Cell, scale: float) -> str:
    assert cell.mean is not None
    text = _fmt(cell.mean * scale)
    if cell.seeds > 1 and cell.std is not None:
        text += f" +- {_fmt(cell.std * scale)} ({cell.seeds} seeds)"
    return f"{text} (n={cell.n_fake}/{cell.n_real})"


def _missing_reason(runs: pd.DataFrame | None, row: Row, artist: str) -> str:
    if runs is None or runs.empty:
        return "no run"
    same = runs[(runs.kind == row.kind) & (runs.method == row.method) & (runs.profile == row.profile)
                & (runs.overrides == row.overrides) & (runs.artist == artist)]
    if "tags" in same:
        same = same[same.tags.fillna("") == row.tags]
    if same.empty:
        return "no run"
    counts = same.status.value_counts().to_dict()
    parts = [f"{counts[s]} {s}" for s in ("failed", "interrupted", "running") if s in counts]
    if counts.get("done"):
        parts.append(f"{counts['done']} done, not measured here")
    return ", ".join(parts)


def _mark_ranks(block: Block) -> None:
    lower = block.direction != "higher"
    for artist in block.columns:
        for profile in {r.profile for r in block.rows}:
            cells = [block.cells[r.label, artist] for r in block.rows if r.profile == profile]
            # compared as shown (2 decimals): cells that read the same tie
            values = [(c, round(c.mean * block.scale, 2)) for c in cells if c.mean is not None]
            if len(values) < 2:
                continue
            shown = sorted({v for _, v in values}, reverse=not lower)
            for c, v in values:
                if v == shown[0]:
                    c.rank = 1
                elif len(values) >= 3 and len(shown) > 1 and v == shown[1]:
                    c.rank = 2


def build(df: pd.DataFrame, runs: pd.DataFrame | None = None, *, artists: list[str] | None = None,
          metrics: list[str] | None = None) -> Board:
    """The leaderboard of ``Store.results()`` rows (with ``load``'s ``overrides``/``data_fingerprint``
    columns when available; ``runs`` gives the reasons for missing cells)."""
    if metrics:
        df = df[df.metric.isin(metrics)]
    if artists:
        df = df[df.artist.isin(artists)]
    footnotes: list[str] = []
    if df.empty:
        return Board([], footnotes)
    df = df.assign(overrides=df["overrides"].fillna("") if "overrides" in df else "",
                   tags=df["tags"].fillna("") if "tags" in df else "",
                   data_fingerprint=df["data_fingerprint"].fillna("") if "data_fingerprint" in df else "",
                   method_weights=df["method_weights"] if "method_weights" in df else None)
    df = df.assign(row=[_row_label(m, p, k, w, o, t) for m, p, k, w, o, t in
                        zip(df.method, df.profile, df.kind, df.method_weights, df.overrides, df.tags)])
    blocks: list[Block] = []
    keys = df[["metric", "layer", "display_name", "direction", "extractor_id", "resize_mode"]].drop_duplicates()
    keys = keys.assign(order=[BLOCK_ORDER.get((m, lay), 99) for m, lay in zip(keys.metric, keys.layer)],
                       synthetic=keys.extractor_id.map(is_random_init))  # real networks' blocks first
    for _, key in keys.sort_values(["synthetic", "order", "extractor_id", "metric", "layer"]).iterrows():
        sub = df[(df.metric == key.metric) & (df.layer == key.layer) & (df.extractor_id == key.extractor_id)
                 & (df.resize_mode == key.resize_mode)]
        present = set(sub.artist)
        columns = list(artists) if artists else [a for a in ARTISTS if a in present] + sorted(present - set(ARTISTS))
        rank = {m: i for i, m in enumerate(METHOD_ORDER)}
        first = sub.drop_duplicates("row").set_index("row")
        rows = [Row(label, first.loc[label, "kind"], first.loc[label, "method"], first.loc[label, "profile"],
                    first.loc[label, "overrides"], first.loc[label, "method_weights"], first.loc[label, "tags"])
                for label in sorted(first.index, key=lambda r: (rank.get(first.loc[r, "method"], len(rank)),
                                                                first.loc[r, "method"], first.loc[r, "profile"],
                                                                first.loc[r, "overrides"] != "", r))]
        scale = 1000.0 if key.metric == "kid" else 1.0
        cells: dict[tuple[str, str], Cell] = {}
        for row in rows:
            for artist in columns:
                part = sub[(sub.row == row.label) & (sub.artist == artist)]
                if part.empty:
                    cells[row.label, artist] = Cell(missing=_missing_reason(runs, row, artist))
                    continue
                by_fp = part.groupby("data_fingerprint").agg(n=("run_id", "nunique"), newest=("run_created_at", "max"))
                fp = by_fp.sort_values(["n", "newest"], ascending=False).index[0]
                used, other = part[part.data_fingerprint == fp], part[part.data_fingerprint != fp]
                v = used.value.to_numpy(dtype=float)
                cell = Cell(mean=float(v.mean()), std=float(v.std(ddof=1)) if len(v) > 1 else None, seeds=len(v),
                            n_fake=int(used.n_fake.min()), n_real=int(used.n_real.min()))
                if not other.empty:
                    n_other = other.run_id.nunique()
                    footnotes.append(f"{row.label} / {artist}: {n_other} run{'s' * (n_other > 1)} on other data "
                                     f"(not the data fingerprint {str(fp)[:12]} of the cell) not averaged in")
                    cell.notes.append(len(footnotes))
                cells[row.label, artist] = cell
        unit = " (x1e3)" if key.metric == "kid" else ""
        better = f"{arrow(key.direction)} {key.direction} is better"
        title = (f"{key.display_name}{unit} {better}; layer {key.layer}, extractor {key.extractor_id}, "
                 f"resize {key.resize_mode}")
        block = Block(title, key.metric, key.layer, key.display_name, key.direction, key.extractor_id,
                      key.resize_mode, scale, columns, rows, cells)
        _mark_ranks(block)
        for c in cells.values():
            c.text = (_value_text(c, scale) if c.mean is not None else f"- ({c.missing})") + \
                "".join(f" [{k}]" for k in c.notes)
        blocks.append(block)
    return Board(blocks, footnotes)


# --- formats -------------------------------------------------------------------------------------

def _md_cell(c: Cell) -> str:
    return f"**{c.text}**" if c.rank == 1 else f"<ins>{c.text}</ins>" if c.rank == 2 else c.text


def to_markdown(board: Board) -> str:
    if not board:
        return EMPTY
    out = io.StringIO()
    for block in board:
        out.write(f"### {block.title}\n\n")
        header = ["method"] + list(block.columns)
        out.write("| " + " | ".join(header) + " |\n")
        out.write("|" + "|".join("---" for _ in header) + "|\n")
        for row in block.rows:
            out.write("| " + " | ".join([row.label] + [_md_cell(block.cells[row.label, a]) for a in block.columns])
                      + " |\n")
        out.write("\n")
    out.write(LEGEND + "\n")
    for i, note in enumerate(board.footnotes, 1):
        out.write(f"\n[{i}] {note}")
    return out.getvalue() + ("\n" if board.footnotes else "")


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "\u2193": r"$\downarrow$", "\u2191": r"$\uparrow$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text)).replace("+-", r"$\pm$")


def to_latex(board: Board) -> str:
    """One booktabs ``table`` per block (pandas Styler), best in ``\\textbf``, second ``\\underline``."""
    if not board:
        return "% " + EMPTY
    parts = []
    for block in board:
        table = pd.DataFrame([[latex_escape(block.cells[r.label, a].text) for a in block.columns]
                              for r in block.rows], index=[latex_escape(r.label) for r in block.rows],
                             columns=[latex_escape(a) for a in block.columns])
        table.columns.name = "method"
        ranks = pd.DataFrame([[block.cells[r.label, a].rank for a in block.columns] for r in block.rows],
                             index=table.index, columns=table.columns)
        css = ranks.replace({1: "textbf:--rwrap;", 2: "underline:--rwrap;", 0: ""})
        styler = table.style.apply(lambda _, css=css: css, axis=None)
        parts.append(styler.to_latex(hrules=True, caption=latex_escape(block.title), position_float="centering",
                                     column_format="l" + "r" * len(block.columns)))
    notes = "".join(f"% [{i}] {latex_escape(n)}\n" for i, n in enumerate(board.footnotes, 1))
    return "% " + LEGEND + "\n" + "\n".join(parts) + notes


TABLE_CSS = ("table{border-collapse:collapse;margin:1em 0}caption{text-align:left;font-weight:bold}"
             "th,td{border:1px solid #bbb;padding:2px 8px}td{text-align:right}")


def html_tables(board: Board) -> str:
    """The blocks as ``<table class="leaderboard">`` elements, legend and footnotes: the part that
    ``bench report`` embeds in its pages."""
    e = html.escape
    out = io.StringIO()
    for block in board:
        out.write(f'<table class="leaderboard" data-metric="{e(block.metric)}" data-layer="{e(block.layer)}">\n'
                  f"<caption>{e(block.title)}</caption>\n<thead><tr><th>method</th>"
                  + "".join(f"<th>{e(a)}</th>" for a in block.columns) + "</tr></thead>\n<tbody>\n")
        for row in block.rows:
            tds = []
            for a in block.columns:
                c = block.cells[row.label, a]
                text = e(c.text)
                tds.append(f"<td><b>{text}</b></td>" if c.rank == 1 else f"<td><u>{text}</u></td>" if c.rank == 2
                           else f"<td>{text}</td>")
            out.write(f"<tr><th>{e(row.label)}</th>{''.join(tds)}</tr>\n")
        out.write("</tbody>\n</table>\n")
    if board:
        out.write(f"<p>{e(LEGEND)}</p>\n")
    if board.footnotes:
        out.write("<ol>\n" + "".join(f"<li>{e(n)}</li>\n" for n in board.footnotes) + "</ol>\n")
    return out.getvalue()


def to_html(board: Board) -> str:
    """A standalone page: one ``<table>`` per block, nothing loaded from elsewhere."""
    e = html.escape
    body = html_tables(board) if board else f"<p>{e(EMPTY.strip())}</p>\n"
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>artshift leaderboard</title>\n'
            f"<style>{TABLE_CSS}</style>\n</head>\n<body>\n<h1>artshift leaderboard</h1>\n{body}</body>\n</html>\n")


def _num(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def to_json(board: Board) -> str:
    blocks = []
    for b in board:
        rows = []
        for r in b.rows:
            cells = {a: {"mean": _num(c.mean), "std": _num(c.std), "seeds": c.seeds, "n_fake": c.n_fake,
                         "n_real": c.n_real, "rank": c.rank or None, "missing": c.missing, "footnotes": c.notes,
                         "text": c.text}
                     for a in b.columns for c in [b.cells[r.label, a]]}
            rows.append({"label": r.label, "kind": r.kind, "method": r.method, "profile": r.profile,
                         "overrides": r.overrides, "method_weights": _num(r.method_weights), "cells": cells})
        blocks.append({"title": b.title, "metric": b.metric, "layer": b.layer, "display_name": b.display_name,
                       "direction": b.direction, "extractor_id": b.extractor_id, "resize_mode": b.resize_mode,
                       "text_scale": b.scale, "columns": b.columns, "rows": rows})
    doc = {"schema": JSON_SCHEMA, "schema_version": JSON_SCHEMA_VERSION, "blocks": blocks,
           "footnotes": [{"id": i, "text": n} for i, n in enumerate(board.footnotes, 1)]}
    if not board:
        doc["message"] = EMPTY.strip()
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def to_csv(df: pd.DataFrame, *, artists: list[str] | None = None, metrics: list[str] | None = None) -> str:
    """Long format, one row per stored value: what scripts and spreadsheets want."""
    if metrics:
        df = df[df.metric.isin(metrics)]
    if artists:
        df = df[df.artist.isin(artists)]
    if df.empty:
        return ",".join(CSV_COLUMNS) + "\n"
    df = df.assign(**{c: df[c] if c in df else "" for c in ("overrides", "data_fingerprint")})

    def blank(col: str) -> list:
        return [None if (v is None or (isinstance(v, float) and math.isnan(v))) else v for v in df[col]]

    df = df.assign(std=blank("std"), low=blank("low"), high=blank("high"))
    order = [BLOCK_ORDER.get((m, lay), 99) for m, lay in zip(df.metric, df.layer)]
    return df.assign(_order=order).sort_values(["_order", "metric", "layer", "method", "artist", "run_id"])[
        CSV_COLUMNS].to_csv(index=False, lineterminator="\n")


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ArtshiftError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})",
                            hint=did_you_mean(fmt, FORMATS, otherwise="e.g. --format md"))
    return fmt


def render(store: Any, fmt: str, *, artists: list[str] | None = None, metrics: list[str] | None = None) -> str:
    """``bench leaderboard``: the store's leaderboard in ``fmt``, after checking the names asked for."""
    check_format(fmt)
    df, runs = load(store)
    check_filters(df, runs, artists, metrics)
    if runs.empty:
        return EMPTY
    check_nonempty(df, runs)
    if df.empty:  # only interrupted (or live) runs: nothing to tabulate yet, and that is no error
        return EMPTY.rstrip("\n") + "".join(f"\n  {line}" for line in interrupted_notes(runs)) + "\n"
    if fmt == "csv":
        return to_csv(df, artists=artists, metrics=metrics)
    board = build(df, runs, artists=artists, metrics=metrics)
    if not board:
        asked = " and ".join(x for x in (f"artist {', '.join(artists)}" if artists else "",
                                         f"metric {', '.join(metrics)}" if metrics else "") if x)
        raise ArtshiftError(f"no finished runs with {asked} in the store",
                            hint="drop the filter, or make one: `bench run --method original --artist ARTIST`")
    return {"md": to_markdown, "latex": to_latex, "html": to_html, "json": to_json}[fmt](board)
