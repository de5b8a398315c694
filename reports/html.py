"""``bench report``: static HTML pages, one per artist plus an index, built from the store alone.

Why static files with the images beside them: a report is read long after the run, often from a
CI artifact or a shared drive, so it must open from ``file://`` with nothing fetched from
anywhere (no CDN, no script, inline CSS). Every number on a page comes from the store through
``reports.leaderboard`` (the same cells as ``bench leaderboard``); figures are copied in, never
linked to ``$ARTSHIFT_HOME``, so the folder can be moved or zipped.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.core.errors import ArtshiftError, did_you_mean
from benchmark.core.profiles import PROFILES
from benchmark.core.store import provenance
from reports import grids
from reports import leaderboard as L

e = html.escape

# metric families, in page order; a metric no family names goes under "Other metrics"
SECTIONS = (
    ("distance", "Distance to photos", ("fid", "kid")),
    ("shift", "Activation shift (bench shift)", ("shift_kid", "shift_floor", "shift_fd", "shift_gap", "cka",
                                                 "cka_perm")),
    ("downstream", "Downstream accuracy (bench downstream)", ("accuracy", "balanced_accuracy", "class_accuracy")),
)
OTHER = ("other", "Other metrics")
CSS = (L.TABLE_CSS + "body{font-family:sans-serif;max-width:1400px;margin:1em auto;padding:0 1em}"
       ".notice{border-left:4px solid #c60;background:#fff4e5;padding:.5em 1em}"
       "img{max-width:100%;border:1px solid #ddd}pre{background:#f6f6f6;padding:.5em;overflow:auto;font-size:85%}"
       "table.runs td{text-align:left}nav a{margin-right:1em}")


@dataclass
class Page:
    artist: str
    path: Path
    leaderboard_rows: int  # <tr> in the page's leaderboard tables (all blocks together)
    images: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why a figure is missing


@dataclass
class Report:
    index: Path
    pages: dict[str, Page]


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ArtshiftError(f"cannot write {path}: {exc.strerror or exc}",
                            hint="pass --out a folder you can write to") from None


def _page(title: str, body: str) -> str:
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}</body>\n</html>\n")


def _when(ts: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(float(ts), dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError):
        return ""


def _json(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) and text else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _notices(df: pd.DataFrame, runs: pd.DataFrame, heading: str | None) -> str:
    """What a reader must know before reading any number on the page."""
    notes = [heading] if heading else []
    if not df.empty and (df.extractor_id.astype(str).str.startswith("random-init").any()
                         or df.display_name.astype(str).str.contains("random-init", regex=False).any()):
        notes.append("Values marked [random-init] come from feature networks with random weights (the pretrained "
                     "files were not available): they check the pipeline and rank methods on this machine only; "
                     "they are not comparable with any published FID or KID.")
    other = sorted(set(runs.profile) - {"paper"}) if not runs.empty else []
    if other:
        notes.append(f"Runs at profile {', '.join(other)} use shortened schedules and small networks "
                     f"({'; '.join(f'{p}: {PROFILES[p]}' for p in other if p in PROFILES)}): not the published "
                     "methods' settings.")
    return "".join(f'<p class="notice">{e(n)}</p>\n' for n in notes)


def _sections(board: L.Board) -> tuple[str, int]:
    """The leaderboard blocks grouped by metric family; returns the HTML and the row count."""
    out, rows = [], 0
    families = [*SECTIONS, (*OTHER, ())]
    known = {m for _, _, ms in SECTIONS for m in ms}
    for key, title, members in families:
        blocks = [b for b in board if (b.metric in members if members else b.metric not in known)]
        if not blocks:
            continue
        rows += sum(len(b.rows) for b in blocks)
        out.append(f'<section id="{key}">\n<h3>{e(title)}</h3>\n{L.html_tables(L.Board(blocks))}</section>\n')
    if board.footnotes:
        out.append("<ol>\n" + "".join(f"<li>{e(n)}</li>\n" for n in board.footnotes) + "</ol>\n")
    return "".join(out), rows


def _runs_table(store: Any, runs: pd.DataFrame, metrics: pd.DataFrame) -> str:
    """Every run of the artist with what produced it: spec, config, weights ids, versions, git revision."""
    head = ("run", "method", "profile", "seed", "status", "finished", "weights (extractors / method)", "versions",
            "git", "timings")
    out = ['<table class="runs">\n<thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead>\n<tbody>\n"]
    order = {m: i for i, m in enumerate(L.METHOD_ORDER)}
    runs = runs.assign(_o=[order.get(m, len(order)) for m in runs.method]).sort_values(["_o", "method", "profile",
                                                                                         "seed", "created_at"])
    details = []
    for _, r in runs.iterrows():
        spec, prov, timings = _json(r.spec_json), _json(r.provenance_json), _json(r.timings_json)
        ex = sorted(set(metrics[metrics.run_id == r.run_id].extractor_id.astype(str)))
        method_w = r.method_weights if isinstance(r.method_weights, str) else ""
        weights = "; ".join(ex + ([f"method: {method_w}"] if method_w else [])) or "-"
        versions = ", ".join(f"{k} {v}" for k, v in (("method", spec.get("method_version")),
                                                       ("spec", r.spec_version), ("artshift", prov.get("artshift")),
                                                       ("torch", prov.get("torch"))) if v is not None)
        timing = ", ".join(f"{k.removesuffix('_s')} {v:.0f}s" for k, v in timings.items()
                           if isinstance(v, (int, float)))
        status = str(r.status) + (f": {r.error}" if isinstance(r.error, str) and r.error else "")
        rid = e(str(r.run_id))
        out.append(f'<tr><td><a href="#run-{rid}">{rid}</a></td><td>{e(str(r.method))}</td>'
                   f"<td>{e(str(r.profile))}</td><td>{e(str(r.seed))}</td><td>{e(status)}</td>"
                   f"<td>{e(_when(r.updated_at))}</td><td>{e(weights)}</td><td>{e(versions)}</td>"
                   f"<td>{e(str(prov.get('git', '-')))}</td><td>{e(timing)}</td></tr>\n")
        full: dict[str, Any] = {"spec": spec, "provenance": prov}
        run_dir = Path(r.run_dir) if isinstance(r.run_dir, str) else None
        saved = _json((run_dir / "spec.json").read_text(encoding="utf-8")) if run_dir and \
            (run_dir / "spec.json").is_file() else {}
        if "config" in saved:
            full["config"] = saved["config"]
        details.append(f'<details id="run-{rid}"><summary>run {rid}: {e(str(r.method))} / {e(str(r.profile))} / '
                       f"seed {e(str(r.seed))}</summary>\n<pre>{e(json.dumps(full, indent=2, sort_keys=True))}"
                       "</pre></details>\n")
    out.append("</tbody>\n</table>\n")
    return "".join(out) + "".join(details)


def _copy(src: Path, dest: Path, page_dir: Path) -> str:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest.relative_to(page_dir).as_posix()


def _figures(artist: str, profiles: list[str], store: Any, assets: Path, page_dir: Path, home: Path,
             domain_fn: Callable[[str], Any], grid_n: int, grid_seed: int, page: Page) -> str:
    """The qualitative grid and the shift figures per profile, copied beside the page."""
    out = []
    try:
        domain = domain_fn(artist)
    except ArtshiftError as exc:
        domain = None
        page.notes.append(f"no grid: the {artist} paintings are not available here ({exc})")
    for profile in profiles:
        parts = []
        if domain is not None:
            try:
                grid = grids.make_grid(store, domain, assets / profile, profile=profile, n=grid_n, seed=grid_seed)
                page.images.append(grid.png)
                rel = grid.png.relative_to(page_dir).as_posix()
                parts.append(f'<figure><img src="{e(rel)}" alt="grid {e(artist)} {e(profile)}">'
                             f"<figcaption>{e(', '.join(grid.titles))}; {len(grid.paintings)} test paintings "
                             f"chosen with seed {grid_seed} (<a href=\"{e(grid.pdf.relative_to(page_dir).as_posix())}"
                             "\">PDF</a>)</figcaption></figure>\n")
            except ArtshiftError as exc:
                page.notes.append(f"no grid at profile {profile}: {exc}")
        shift_dir = home / "reports" / "shift" / f"{artist}-{profile}"
        for png in sorted(shift_dir.glob("*.png")) if shift_dir.is_dir() else []:
            rel = _copy(png, assets / profile / "shift" / png.name, page_dir)
            page.images.append(page_dir / rel)
            parts.append(f'<figure><img src="{e(rel)}" alt="{e(png.stem)}"><figcaption>bench shift: '
                         f"{e(png.stem)}</figcaption></figure>\n")
        if (shift_dir / "shift.csv").is_file():
            rel = _copy(shift_dir / "shift.csv", assets / profile / "shift" / "shift.csv", page_dir)
            parts.append(f'<p><a href="{e(rel)}">shift.csv</a>: every shift value with its interval</p>\n')
        if parts:
            out.append(f"<h3>profile {e(profile)}</h3>\n" + "".join(parts))
    return "".join(out)


def build_report(store: Any, out_dir: Path, *, home: Path, domain_fn: Callable[[str], Any],
                 artists: list[str] | None = None, profiles: list[str] | None = None, heading: str | None = None,
                 grid_n: int = 6, grid_seed: int = 0) -> Report:
    """Write ``index.html`` and ``<artist>.html`` (figures under ``assets/<artist>/``) into ``out_dir``.

    ``profiles`` restricts every page to runs of those profiles. ``domain_fn(artist)`` returns the artist's data domain for the grid (raises ``ArtshiftError``
    when its paintings are not on this machine: the page then says so instead of a figure).
    """
    df, runs = L.load(store)
    if profiles:  # e.g. `bench ci`: only its own profile, whatever else the home holds
        runs = runs[runs.profile.isin(profiles)]
        df = df[df.run_id.isin(set(runs.run_id))]
    if runs.empty:
        raise ArtshiftError("no runs in the store: nothing to report", hint=f"make a first run: `{L.FIRST_RUN}`")
    present = list(dict.fromkeys([a for a in L.ARTISTS if a in set(runs.artist)] + sorted(set(runs.artist))))
    for name in artists or []:
        if name not in present:
            raise ArtshiftError(f"no runs of artist {name!r} in the store (artists with runs: {', '.join(present)})",
                                hint=did_you_mean(name, present, otherwise="drop --artist to report every artist"))
    chosen = [a for a in present if a in artists] if artists else present
    out_dir = Path(out_dir)
    try:  # one clear error before any work when the folder cannot be written
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ArtshiftError(f"cannot write the report into {out_dir}: {exc.strerror or exc}",
                            hint="pass --out a folder you can write to") from None
    metrics = pd.DataFrame(columns=["run_id", "extractor_id"]) if df.empty else df[["run_id", "extractor_id"]]
    pages: dict[str, Page] = {}
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rev = provenance().get("git", "unknown")
    for artist in chosen:
        a_runs = runs[runs.artist == artist]
        a_df = df[df.artist == artist] if not df.empty else df
        page = Page(artist, out_dir / f"{artist}.html", 0)
        assets = out_dir / "assets" / artist
        if assets.is_dir():
            shutil.rmtree(assets)  # the report owns this folder: no figure of an older report survives
        board = L.build(a_df, a_runs, artists=[artist]) if not a_df.empty else L.Board([])
        tables, page.leaderboard_rows = _sections(board)
        if not board:
            done = int((a_runs.status == "done").sum())
            tables = (f"<p>No measured runs of {e(artist)} yet ({done} done without metrics, "
                      f"{len(a_runs) - done} not done): see the runs below.</p>\n")
        profiles = [p for p in PROFILES if p in set(a_runs[a_runs.status == "done"].profile)]
        figures = _figures(artist, profiles, store, assets, out_dir, home, domain_fn, grid_n, grid_seed, page)
        missing = "".join(f"<li>{e(n)}</li>\n" for n in page.notes)
        body = (f'<nav><a href="index.html">index</a></nav>\n<h1>artshift report: {e(artist)}</h1>\n'
                f"{_notices(a_df, a_runs, heading)}"
                f"<h2>Leaderboard</h2>\n{tables}"
                f"<h2>Figures</h2>\n{figures or '<p>No figures.</p>'}\n"
                + (f"<ul class=\"missing\">\n{missing}</ul>\n" if missing else "")
                + f"<h2>Runs ({len(a_runs)})</h2>\n{_runs_table(store, a_runs, metrics)}"
                f"<p>Generated {e(stamp)} by artshift at git {e(str(rev))} from {e(str(store.path))}.</p>\n")
        _write(page.path, _page(f"artshift report: {artist}", body))
        pages[artist] = page
    items = []
    for artist, page in pages.items():
        a_runs = runs[runs.artist == artist]
        counts = ", ".join(f"{n} {s}" for s, n in sorted(a_runs.status.value_counts().items()))
        methods = ", ".join(sorted(set(a_runs.method)))
        items.append(f'<tr><td><a href="{e(page.path.name)}">{e(artist)}</a></td><td>{e(counts)}</td>'
                     f"<td>{e(methods)}</td><td>{page.leaderboard_rows}</td></tr>\n")
    body = ("<h1>artshift report</h1>\n" + _notices(df, runs[runs.artist.isin(chosen)], heading)
            + '<table class="index">\n<thead><tr><th>artist</th><th>runs</th><th>methods</th>'
              "<th>leaderboard rows</th></tr></thead>\n<tbody>\n" + "".join(items) + "</tbody>\n</table>\n"
            + f"<p>Generated {e(stamp)} by artshift at git {e(str(rev))} from {e(str(store.path))}.</p>\n")
    index = out_dir / "index.html"
    _write(index, _page("artshift report", body))
    return Report(index, pages)
