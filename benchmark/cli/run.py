"""``bench methods|run|eval|translate``: list methods, run one, measure a run or a folder, reuse a run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from benchmark.cli.common import BadImage, DataRoot, Home, Reference, Weights, _metrics_table, err, out
from benchmark.core import paths, registry
from benchmark.core.errors import ArtshiftError
from benchmark.core.profiles import parse_overrides


def methods_cmd() -> None:
    """List the registered methods, one line each."""
    width = max(len(n) for n in registry.methods.names())
    for e in registry.methods.entries():
        out.print(escape(f"{e.name:<{width}}  {e.summary}"), highlight=False)


def run_cmd(
    method: str = typer.Option(..., "--method", "-m", help="a registered method (see `bench methods`)"),
    artist: str = typer.Option(..., "--artist", "-a", help="monet, cezanne, vangogh, ukiyoe or pacs"),
    profile: str = typer.Option("smoke", "--profile", "-p", help="ci, smoke, cpu, quick or paper"),
    seed: int = typer.Option(0, "--seed"),
    data_root: Optional[Path] = DataRoot,
    home: Optional[Path] = Home,
    set_: list[str] = typer.Option([], "--set", help="config override key=value (repeatable)"),
    force: bool = typer.Option(False, "--force", help="re-run even if this spec finished before"),
    weights: Optional[Weights] = typer.Option(None, "--weights",
                                              help="extractor weights (default: auto for ci/smoke, else pretrained); "
                                                   "a finished run is measured again with other weights"),
    deterministic: bool = typer.Option(False, "--deterministic", help="torch deterministic algorithms"),
    on_bad_image: BadImage = typer.Option(BadImage.error, "--on-bad-image"),
    device: str = typer.Option("cpu", "--device"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    wait: float = typer.Option(0.0, "--wait", help="seconds to wait while another process runs this spec"),
    reference: Optional[Path] = Reference,
    threads: Optional[int] = typer.Option(None, "--threads",
                                          help="torch threads for this run (default on a CPU: 1, what bench "
                                               "sweep cells use). The count changes the order of float sums in "
                                               "training, hence the run's numbers; status.json records it"),
) -> None:
    """Fit (if needed) -> translate every test painting -> evaluate against the photo test set -> record."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark.pipeline.runner import execute

    res = execute(method, artist, profile=profile, seed=seed, overrides=parse_overrides(set_), data_root=data_root,
                  home=home, force=force, weights=weights.value if weights else None, deterministic=deterministic,
                  skip_bad=on_bad_image is BadImage.skip, progress=not quiet, device=device, wait=wait,
                  reference=reference, threads=threads)
    state = "stored result (finished earlier; --force re-runs)" if res.reused else "finished"
    out.print(escape(f"run {res.run_id} {state}: {res.run_dir}"), highlight=False)
    if res.timings:
        out.print("  " + ", ".join(f"{k} {v:.1f}s" for k, v in res.timings.items()), highlight=False)
    if res.skipped:
        err.print(escape(f"skipped {len(res.skipped)} bad images: {', '.join(res.skipped)}"))
    out.print(_metrics_table(res.metrics, f"{method} / {artist} / {profile} / seed {seed}"))
    if res.reference_id:
        out.print(_metrics_table(res.reference_metrics, f"against {reference}: {res.reference_id}"))
    elif reference is not None:
        out.print(escape(f"{reference} holds the run's own photo test set: its own rows above"), highlight=False)


RunId = typer.Option(None, "--run", help="a run id (from `bench run` or `bench leaderboard --format csv`)")


def _find_run(home: Optional[Path], run_id: Optional[str], method: Optional[str], artist: Optional[str],
              profile: str, seed: int):
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark.core.store import Store
    from benchmark.pipeline.runs import find_run

    store = Store.open(paths.home(home) / "results.sqlite")  # read-only where the home cannot be written
    return find_run(store, run_id=run_id, method=method, artist=artist, profile=profile, seed=seed), store


def eval_cmd(
    run_id: Optional[str] = RunId,
    images: Optional[Path] = typer.Option(None, "--images", help="folder of translated images to rank"),
    artist: Optional[str] = typer.Option(None, "--artist", "-a", help="with --images: whose photo test set"),
    name: Optional[str] = typer.Option(None, "--name", help="with --images: label for the leaderboard row"),
    method: Optional[str] = typer.Option(None, "--method", "-m", help="name the run by method/artist/profile/seed"),
    profile: str = typer.Option("smoke", "--profile", "-p"),
    seed: int = typer.Option(0, "--seed"),
    with_: str = typer.Option("", "--with", help="extractors and/or metrics to measure with, comma-separated "
                                                 "(e.g. vgg19,resnet152; default: inception with every metric)"),
    data_root: Optional[Path] = DataRoot,
    home: Optional[Path] = Home,
    weights: Optional[Weights] = typer.Option(None, "--weights", help="extractor weights (default: auto for "
                                                                      "--images and ci/smoke runs, else pretrained)"),
    on_bad_image: BadImage = typer.Option(BadImage.error, "--on-bad-image"),
    device: str = typer.Option("cpu", "--device"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    reference: Optional[Path] = Reference,
    translate_side: Optional[str] = typer.Option(
        None, "--translate-side", help="with --images: the shorter side in px the translations were made at "
                                       "(the photos are resized down and up to it, as in a run's own evaluation), "
                                       "or 'native' (default: the side in a `bench translate` folder's manifest, "
                                       "else native)"),
) -> None:
    """Measure a finished run again (--run, or --method/--artist) or any folder of translations (--images)."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark.pipeline.runner import evaluate_folder, evaluate_run

    names = [n.strip() for n in with_.split(",") if n.strip()]
    skip = on_bad_image is BadImage.skip
    if translate_side is not None and images is None:
        raise ArtshiftError("--translate-side is for --images folders",
                            hint="a run (--run / --method) is always measured at its own translate side")
    if images is not None:
        if run_id or method:
            raise ArtshiftError("pass either --images (an external folder) or a run (--run / --method), not both")
        if not (artist and name):
            raise ArtshiftError("--images needs --artist (whose photo test set) and --name (the row label)")
        res = evaluate_folder(images, artist, name, data_root=data_root, home=home,
                              weights=weights.value if weights else "auto", with_=names, skip_bad=skip,
                              progress=not quiet, device=device, reference=reference,
                              translate_side=_side(translate_side))
        title = f"{name} / {artist}"
    else:
        run, store = _find_run(home, run_id, method, artist, profile, seed)
        res = evaluate_run(run, with_=names, weights=weights.value if weights else None, home=home,
                           data_root=data_root, skip_bad=skip, progress=not quiet, device=device, store=store,
                           reference=reference)
        title = f"run {run.run_id}: {run.method} / {run.artist} / {run.profile} / seed {run.seed}"
        if res.run_id != run.run_id:
            title += f", against other photos: {res.run_id}"
    if res.skipped:
        err.print(escape(f"skipped {len(res.skipped)} bad images: {', '.join(res.skipped)}"))
    out.print(_metrics_table(res.metrics, title))


def _side(text: Optional[str]) -> int | str | None:
    """``--translate-side``: a number of pixels, ``native`` (None), or absent (the folder's manifest)."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark.pipeline.runner import FROM_MANIFEST

    if text is None:
        return FROM_MANIFEST
    if text.strip().lower() == "native":
        return None
    try:
        side = int(text)
    except ValueError:
        side = 0
    if side < 1:
        raise ArtshiftError(f"--translate-side {text!r} is not a side in pixels",
                            hint="pass a positive number of pixels (e.g. 32 at ci, 64 at smoke) or native")
    return side


def translate_cmd(
    images: Path = typer.Option(..., "--images", help="folder of paintings to translate"),
    out_dir: Path = typer.Option(..., "--out", help="folder for the translations (<name>.png each)"),
    run_id: Optional[str] = RunId,
    method: Optional[str] = typer.Option(None, "--method", "-m", help="name the run by method/artist/profile/seed"),
    artist: Optional[str] = typer.Option(None, "--artist", "-a"),
    profile: str = typer.Option("smoke", "--profile", "-p"),
    seed: int = typer.Option(0, "--seed"),
    data_root: Optional[Path] = DataRoot,
    home: Optional[Path] = Home,
    on_bad_image: BadImage = typer.Option(BadImage.error, "--on-bad-image"),
    device: str = typer.Option("cpu", "--device"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the translations in a --out folder that "
                                                              "already holds files (each replaced atomically)"),
) -> None:
    """Apply a finished run to any folder of paintings, each at its own size (as the CycleGAN test script)."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark.pipeline.runner import translate_run

    run, _ = _find_run(home, run_id, method, artist, profile, seed)
    written = translate_run(run, images, out_dir, home=home, data_root=data_root,
                            skip_bad=on_bad_image is BadImage.skip, device=device, progress=not quiet,
                            overwrite=overwrite)
    out.print(escape(f"run {run.run_id} ({run.method} / {run.artist} / {run.profile} / seed {run.seed}): "
                     f"{len(written)} translations in {out_dir}"), highlight=False)


def register(app: typer.Typer) -> None:
    app.command("methods")(methods_cmd)
    app.command("run")(run_cmd)
    app.command("eval")(eval_cmd)
    app.command("translate")(translate_cmd)
