"""The paper's qualitative figure: test paintings in rows, the painting first, then each method's translation.

The cells are laid out with PIL on one pixel canvas whose cell boxes are known exactly, and matplotlib
only places that canvas unresampled (``figimage``) under a strip of column titles: the PNG then holds
every cell's pixels as composed, so a test can crop each box and compare it with its source image, and
the PDF carries the same canvas.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmark.core.errors import ArtshiftError
from benchmark.core.store import Store
from benchmark.pipeline.runs import find_run
from reports.leaderboard import METHOD_ORDER

PAINTING = "painting"
HEIGHT = 256  # every cell's height in pixels; widths follow each image's own aspect
GAP = 4  # white pixels between cells
TITLE = 28  # pixel height of the title strip above the cells
DPI = 100


@dataclass
class Cell:
    row: int
    col: int
    source: Path  # the image shown (painting or translation)
    box: tuple[int, int, int, int]  # (left, top, right, bottom) in the written PNG's pixels


@dataclass
class Grid:
    png: Path
    pdf: Path
    titles: list[str]
    paintings: list[Path]
    cells: list[Cell] = field(default_factory=list)


def choose_paintings(domain: Any, n: int, seed: int) -> list[Path]:
    """A seeded sample of the test paintings, in the domain's order, so every column shows the same ones."""
    pool = list(domain.paintings_test)
    if not pool:
        raise ArtshiftError(f"{domain.artist} has no test paintings", hint="check the data root (`bench data list`)")
    if n < 1:
        raise ArtshiftError(f"--n must be at least 1, not {n}")
    picked = sorted(random.Random(seed).sample(range(len(pool)), min(n, len(pool))))
    return [pool[i] for i in picked]


def newest_runs(store: Any, artist: str, profile: str) -> list[dict[str, Any]]:
    """The newest finished run of each method for (artist, profile), any seed, in method order."""

    reader = store if getattr(store, "read_only", False) else Store(store.path, read_only=True)
    with reader._connect() as con:  # read-only (immutable where it cannot be written), damage named in one line
        rows = con.execute("SELECT * FROM runs WHERE kind='run' AND status='done' AND artist=? AND profile=? "
                           "ORDER BY spec_version DESC, updated_at DESC", (artist, profile)).fetchall()
    newest: dict[str, dict[str, Any]] = {}
    for r in rows:
        newest.setdefault(r["method"], dict(r))

    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return [newest[m] for m in sorted(newest, key=lambda m: (order.get(m, len(order)), m))]


def resolve_runs(store: Any, artist: str, profile: str, run_ids: list[str]) -> list[Any]:
    """The runs named by id, or the newest finished run per method at ``profile``."""
    if run_ids:
        runs = [find_run(store, run_id=r) for r in run_ids]
        for r in runs:
            if r.artist != artist:
                raise ArtshiftError(f"run {r.run_id} translated {r.artist}, not {artist}",
                                    hint=f"pass --artist {r.artist}, or runs of {artist}")
        return runs
    rows = newest_runs(store, artist, profile)
    if not rows:
        raise ArtshiftError(f"no finished runs for {artist} at profile {profile} in {store.path}",
                            hint=f"run one first, e.g. `bench run --method cyclegan --artist {artist} "
                                 f"--profile {profile}`, or pass --profile / --runs")
    return [find_run(store, run_id=r["run_id"]) for r in rows]


def collect_cells(domain: Any, paintings: list[Path], runs: list[Any]) -> list[list[Path]]:
    """Per painting: the painting, then each run's translation of it (an error names a missing one)."""
    rows = []
    for p in paintings:
        row = [Path(p)]
        for run in runs:
            out = run.output(domain.relpath(p))
            if not out.is_file():
                raise ArtshiftError(f"run {run.run_id} ({run.method} [{run.profile}]) lacks its translation of "
                                    f"{domain.relpath(p)} ({out})",
                                    hint=f"resume it with `bench run --method {run.method} --artist {run.artist} "
                                         f"--profile {run.profile} --seed {run.seed}`, or leave it out with --runs")
            row.append(out)
        rows.append(row)
    return rows


def cell_image(path: Path, height: int = HEIGHT) -> Image.Image:
    """The image as shown in its cell: RGB at ``height`` pixels, its own aspect kept."""
    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
    except OSError as exc:
        raise ArtshiftError(f"cannot read {path}: {exc}") from None
    width = max(1, round(rgb.width * height / rgb.height))
    return rgb.resize((width, height), Image.Resampling.LANCZOS)


def compose(rows: list[list[Path]], titles: list[str], out_stem: Path, *,
            height: int = HEIGHT) -> tuple[Path, Path, list[Cell]]:
    """Write ``out_stem``.png and .pdf; each column is as wide as its widest cell, cells left-aligned."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = [[cell_image(p, height) for p in row] for row in rows]
    widths = [max(row[c].width for row in images) for c in range(len(titles))]
    lefts = [GAP + sum(widths[:c]) + GAP * c for c in range(len(titles))]
    canvas_w = lefts[-1] + widths[-1] + GAP
    canvas_h = GAP + len(rows) * (height + GAP)
    canvas = Image.new("RGB", (canvas_w, canvas_h), "white")
    cells = []
    for r, row in enumerate(images):
        top = GAP + r * (height + GAP)
        for c, im in enumerate(row):
            canvas.paste(im, (lefts[c], top))
            cells.append(Cell(r, c, rows[r][c], (lefts[c], TITLE + top, lefts[c] + im.width, TITLE + top + height)))

    fig = plt.figure(figsize=(canvas_w / DPI, (canvas_h + TITLE) / DPI), dpi=DPI)
    fig.figimage(np.asarray(canvas), xo=0, yo=0, origin="upper")
    for c, title in enumerate(titles):
        fig.text((lefts[c] + widths[c] / 2) / canvas_w, 1 - TITLE / 2 / (canvas_h + TITLE), title,
                 ha="center", va="center", fontsize=10)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = out_stem.with_suffix(".png"), out_stem.with_suffix(".pdf")
    try:
        fig.savefig(png, dpi=DPI)
        fig.savefig(pdf, dpi=DPI)
    except OSError as exc:
        raise ArtshiftError(f"cannot write {out_stem}: {exc.strerror or exc}",
                            hint="pass --out a folder you can write to") from None
    finally:
        plt.close(fig)
    return png, pdf, cells


def make_grid(store: Any, domain: Any, out_dir: Path, *, run_ids: list[str] | None = None, profile: str = "smoke",
              n: int = 6, seed: int = 0) -> Grid:
    """The figure for one artist: returns the written paths and where each cell sits."""
    runs = resolve_runs(store, domain.artist, profile, run_ids or [])
    paintings = choose_paintings(domain, n, seed)
    rows = collect_cells(domain, paintings, runs)
    titles = [PAINTING] + [f"{r.method} [{r.profile}]" for r in runs]
    png, pdf, cells = compose(rows, titles, Path(out_dir) / f"grid_{domain.artist}")
    return Grid(png, pdf, titles, paintings, cells)
