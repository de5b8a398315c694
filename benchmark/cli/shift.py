"""``bench shift``: distance to photos and content kept, layer by layer, on every real network here.

It lives in reports/ because it draws the figures (``reports.plots``); the computation is
``benchmark.analyses.shift``, which never imports reports."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from benchmark.cli.common import DataRoot, Home, Reference, Weights, out


def _fmt(value, low=None, high=None) -> str:
    if isinstance(value, str):
        return value
    text = f"{value:.4g}"
    if low is not None and high is not None and low == low:
        text += f" [{low:.3g}, {high:.3g}]"
    return text


def shift_cmd(
    artist: str = typer.Option(..., "--artist", "-a"),
    runs: Optional[str] = typer.Option(None, "--runs", help="run ids, comma-separated (default: every finished "
                                                           "run of the artist at --profile/--seed, newest per method)"),
    profile: str = typer.Option("smoke", "--profile", "-p"),
    seed: int = typer.Option(0, "--seed"),
    networks: Optional[str] = typer.Option(None, "--networks", help="fid-inception, effnet-lite0, vgg19, resnet152, "
                                                                   "comma-separated (default: every network whose "
                                                                   "real weights resolve here)"),
    layers: Optional[str] = typer.Option(None, "--layers", help="layer ids, e.g. effnet-lite0:1280,vgg19:relu4_2 "
                                                               "(default: every layer of the networks)"),
    weights: Optional[Weights] = typer.Option(None, "--weights", help="extractor weights (default: the profile's)"),
    max_photos: Optional[int] = typer.Option(None, "--max-photos", help="use a fixed random subset of the photo "
                                                                        "test set (both halves together)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="figures and CSV (default: "
                                                               "$ARTSHIFT_HOME/reports/shift/ARTIST-PROFILE)"),
    data_root: Optional[Path] = DataRoot,
    home: Optional[Path] = Home,
    device: str = typer.Option("cpu", "--device"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    reference: Optional[Path] = Reference,
) -> None:
    """Per layer: KID of each set to photo half A (with the photo noise floor), gap closed, CKA kept."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark.analyses.shift import run_shift
    from reports.plots import shift_figures

    ids = [r.strip() for r in runs.split(",") if r.strip()] if runs else None
    res = run_shift(artist, runs=ids, profile=profile, seed=seed, layers=layers, networks=networks,
                    weights=weights.value if weights else None, data_root=data_root, home=home, out_dir=out_dir,
                    max_photos=max_photos, progress=not quiet, device=device, figures=shift_figures,
                    reference=reference)
    r = res.result
    table = Table(title=escape(f"bench shift: {artist} / {profile}: n = {r.n} per set, photo halves A {r.n_a} / "
                               f"B {r.n_b}; KID to A with 95% bootstrap intervals"))
    for col in ("layer", "set", "KID to A \u2193", "FD", "gap closed \u2191", "CKA \u2191", "CKA shuffled"):
        table.add_column(col, overflow="fold")
    for layer, lr in r.layers.items():
        ex = r.extractors[layer.partition(":")[0]]
        name = f"{layer}[{ex.display_tag}]" if ex.display_tag else layer
        table.add_row(escape(name), "photos B (floor)", escape(_fmt(lr.floor.value, lr.floor.low, lr.floor.high)),
                      "", "", "", "")
        for s in r.sets:
            fd = lr.fd[s.label]
            gap = lr.gap.get(s.label)
            gap_text = ("" if s is r.sets[0] else "orig. within floor" if gap is None
                        else _fmt(gap.value, gap.low, gap.high))
            cka = lr.cka[s.label]
            table.add_row("", escape(s.label), escape(_fmt(lr.kid[s.label].value, lr.kid[s.label].low,
                                                         lr.kid[s.label].high)),
                          "n <= dims" if fd is None else escape(_fmt(fd.value, fd.low, fd.high)), escape(gap_text),
                          escape(_fmt(cka.value, cka.low, cka.high) + (" (ceiling)" if s is r.sets[0] else "")),
                          escape(_fmt(lr.cka_perm[s.label].value)))
    out.print(table)
    for note in res.notes:
        out.print(escape(f"note: {note}"), highlight=False)
    for run_id, count in res.stored.items():
        out.print(escape(f"stored {count} rows on run {run_id}"), highlight=False)
    for f in res.files:
        out.print(escape(f"wrote {f}"), highlight=False)


def register(app: typer.Typer) -> None:
    app.command("shift")(shift_cmd)
