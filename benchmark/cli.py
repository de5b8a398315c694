"""``bench``: a thin command-line face over functions that tests and scripts call directly.

It only parses arguments and prints; user errors (``ArtshiftError``) are printed without a
traceback and exit with status 2.
"""

from __future__ import annotations

import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmark import registry
from benchmark.errors import ArtshiftError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="artshift: translate paintings to photos with registered methods and measure the domain gap.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: list manifests, fetch (verified), verify.")
weights_app = typer.Typer(no_args_is_help=True, help="Weight files: list, fetch, import a local file, verify.")
stats_app = typer.Typer(no_args_is_help=True,
                        help="Reference statistics as pytorch-fid-compatible .npz files (mu, sigma).")
app.add_typer(data_app, name="data")
app.add_typer(weights_app, name="weights")
app.add_typer(stats_app, name="stats")
try:  # the memory-bank commands live with the method that owns them
    from methods.bank_cli import bank_app

    app.add_typer(bank_app, name="bank", help="Memory banks of real photo patches (for 'ours').")
except ModuleNotFoundError:  # pragma: no cover - only while the method is absent
    pass

# piped output (CI logs, files) gets room for full extractor ids instead of rich's 80 columns
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

DataRoot = typer.Option(None, "--data-root", help="dataset root (default: $ARTSHIFT_DATA, else the user cache)")
Home = typer.Option(None, "--home", help="where runs, caches and results go (default: $ARTSHIFT_HOME)")


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
        # escape: rich would otherwise eat "[random-init]" as a markup tag
        table.add_row(escape(r["display_name"]), value, str(r["n_fake"]), str(r["n_real"]), escape(r["extractor_id"]))
    return table


@app.command("methods")
def methods_cmd() -> None:
    """List the registered methods, one line each."""
    width = max(len(n) for n in registry.methods.names())
    for e in registry.methods.entries():
        out.print(escape(f"{e.name:<{width}}  {e.summary}"), highlight=False)


@app.command("run")
def run_cmd(
    method: str = typer.Option(..., "--method", "-m", help="a registered method (see `bench methods`)"),
    artist: str = typer.Option(..., "--artist", "-a", help="monet, cezanne, vangogh or ukiyoe"),
    profile: str = typer.Option("smoke", "--profile", "-p", help="ci, smoke, quick or paper"),
    seed: int = typer.Option(0, "--seed"),
    data_root: Optional[Path] = DataRoot,
    home: Optional[Path] = Home,
    set_: list[str] = typer.Option([], "--set", help="config override key=value (repeatable)"),
    force: bool = typer.Option(False, "--force", help="re-run even if this spec finished before"),
    weights: Optional[Weights] = typer.Option(None, "--weights",
                                              help="Inception weights (default: auto for ci/smoke, else pretrained)"),
    deterministic: bool = typer.Option(False, "--deterministic", help="torch deterministic algorithms"),
    on_bad_image: BadImage = typer.Option(BadImage.error, "--on-bad-image"),
    device: str = typer.Option("cpu", "--device"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Fit (if needed) -> translate every test painting -> evaluate against the photo test set -> record."""
    from benchmark.profiles import parse_overrides
    from benchmark.runner import execute

    res = execute(method, artist, profile=profile, seed=seed, overrides=parse_overrides(set_), data_root=data_root,
                  home=home, force=force, weights=weights.value if weights else None, deterministic=deterministic,
                  skip_bad=on_bad_image is BadImage.skip, progress=not quiet, device=device)
    state = "stored result (finished earlier; --force re-runs)" if res.reused else "finished"
    out.print(escape(f"run {res.run_id} {state}: {res.run_dir}"), highlight=False)
    if res.timings:
        out.print("  " + ", ".join(f"{k} {v:.1f}s" for k, v in res.timings.items()), highlight=False)
    if res.skipped:
        err.print(escape(f"skipped {len(res.skipped)} bad images: {', '.join(res.skipped)}"))
    out.print(_metrics_table(res.metrics, f"{method} / {artist} / {profile} / seed {seed}"))


@app.command("eval")
def eval_cmd(
    images: Path = typer.Option(..., "--images", help="folder of translated images to rank"),
    artist: str = typer.Option(..., "--artist", "-a"),
    name: str = typer.Option(..., "--name", help="label for the leaderboard row"),
    data_root: Optional[Path] = DataRoot,
    home: Optional[Path] = Home,
    weights: Weights = typer.Option(Weights.auto, "--weights"),
    on_bad_image: BadImage = typer.Option(BadImage.error, "--on-bad-image"),
    device: str = typer.Option("cpu", "--device"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Evaluate any folder of translations against the artist's photo test set."""
    from benchmark.runner import evaluate_folder

    res = evaluate_folder(images, artist, name, data_root=data_root, home=home, weights=weights.value,
                          skip_bad=on_bad_image is BadImage.skip, progress=not quiet, device=device)
    if res.skipped:
        err.print(escape(f"skipped {len(res.skipped)} bad images: {', '.join(res.skipped)}"))
    out.print(_metrics_table(res.metrics, f"{name} / {artist}"))


@app.command("leaderboard")
def leaderboard_cmd(
    fmt: Fmt = typer.Option(Fmt.md, "--format", "-f"),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="write to this file instead of stdout"),
    home: Optional[Path] = Home,
) -> None:
    """All finished runs in the paper's layout: one block per Inception layer, rows methods, columns artists."""
    from benchmark import paths
    from benchmark.store import Store
    from reports import leaderboard

    df = Store(paths.home(home) / "results.sqlite").results()
    text = leaderboard.to_markdown(leaderboard.build(df)) if fmt is Fmt.md else leaderboard.to_csv(df)
    if output:
        output.write_text(text)
        out.print(escape(f"wrote {output}"))
    else:
        sys.stdout.write(text)


@data_app.command("list")
def data_list() -> None:
    """Known datasets (one manifest each) and whether they are present locally."""
    from benchmark import data, paths

    root = paths.data_root()
    home = paths.home()
    table = Table()
    for col in ("name", "artist", "splits (expected)", "local"):
        table.add_column(col)
    for name, m in data.load_manifests(home).items():
        present = (root / name).is_dir()
        counts = ", ".join(f"{k} {v}" for k, v in m.counts.items())
        table.add_row(name, m.artist, counts, escape(str(root / name)) if present else "-")
    out.print(table)


@data_app.command("fetch")
def data_fetch(name: str, data_root: Optional[Path] = DataRoot, home: Optional[Path] = Home,
               force: bool = typer.Option(False, "--force"),
               archive: Optional[Path] = typer.Option(None, "--archive",
                                                      help="a zip you downloaded elsewhere (offline machines)")) -> None:
    """Download NAME (checksum checked or pinned on first download), extract safely, verify counts."""
    from benchmark import data, paths

    path = data.fetch_dataset(name, paths.data_root(data_root), paths.home(home), force=force, archive=archive)
    out.print(escape(f"{name} ready at {path}"))


@data_app.command("verify")
def data_verify(name: str, data_root: Optional[Path] = DataRoot, home: Optional[Path] = Home) -> None:
    """Check a local dataset against its manifest: counts per split, readable images, pinned hash."""
    from benchmark import data, paths

    report = data.verify_dataset(name, paths.data_root(data_root), paths.home(home), progress=True)
    for line in report.lines():
        out.print(escape(line), highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@weights_app.command("list")
def weights_list() -> None:
    """Known weight files, where they are and whether they are verified."""
    from benchmark import weights

    table = Table()
    rows = weights.list_weights()
    cols = list(rows[0].keys()) if rows else []
    for col in cols:
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*[escape(str(r[c])) for c in cols])
    out.print(table)


@weights_app.command("fetch")
def weights_fetch(name: str) -> None:
    """Download a known weight file and verify its sha256."""
    from benchmark import weights

    out.print(escape(f"{name}: {weights.fetch(name)}"))


@weights_app.command("import")
def weights_import(name: str, path: Path) -> None:
    """Use a weight file you downloaded elsewhere (checksum checked before it is copied in)."""
    from benchmark import weights

    out.print(escape(f"{name}: {weights.import_file(name, path)}"))


@weights_app.command("verify")
def weights_verify(name: str) -> None:
    """Re-hash a weight file and compare with the known or pinned sha256."""
    from benchmark import weights

    out.print(escape(f"{name}: sha256 {weights.verify(name)} OK"))


@stats_app.command("export")
def stats_export(
    artist: str = typer.Option(..., "--artist", "-a"),
    out_dir: Path = typer.Option(..., "--out", help="folder for one .npz per Inception layer"),
    split: str = typer.Option("photos_test", "--split", help="photos_test, photos_train, paintings_test, ..."),
    data_root: Optional[Path] = DataRoot,
    home: Optional[Path] = Home,
    weights: Weights = typer.Option(Weights.auto, "--weights"),
    resize_mode: str = typer.Option("clean", "--resize-mode", help="clean, pytorch-fid or torch-fidelity"),
) -> None:
    """Write the (cached) statistics of one split at every layer, loadable by pytorch-fid."""
    from benchmark import data, paths
    from benchmark.evaluate import make_extractor
    from benchmark.features import reference_stats
    from benchmark.runner import CALIBRATION_PHOTOS

    home_dir = paths.home(home)
    domain = data.resolve_domain(artist, paths.data_root(data_root))
    if not hasattr(domain, split) or split in ("artist", "root", "layout"):
        raise ArtshiftError(f"unknown split {split!r}",
                            hint="one of photos_test, photos_train, paintings_test, paintings_train")
    extractor = make_extractor(weights.value, domain.photos_train[:CALIBRATION_PHOTOS], home_dir,
                               resize_mode=resize_mode)
    stats = reference_stats(extractor, list(getattr(domain, split)), home_dir / "cache" / "stats")
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = f"-{extractor.display_tag}" if extractor.display_tag else ""
    for dims, st in stats.items():
        path = out_dir / f"{artist}-{split}-{dims}{tag}.npz"
        st.save_npz(path)
        out.print(escape(f"{path}  (n={st.n}, extractor {extractor.id}, resize {extractor.resize_mode})"),
                  highlight=False)


@stats_app.command("fid")
def stats_fid(first: Path, second: Path) -> None:
    """Frechet distance between two statistics files (ours or pytorch-fid's .npz)."""
    from benchmark.metrics.fid import Stats, frechet_distance

    out.print(f"{frechet_distance(Stats.load_npz(first), Stats.load_npz(second)):.6f}")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        app()
    except ArtshiftError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted: run the same command again to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
