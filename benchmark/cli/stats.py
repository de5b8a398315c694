"""``bench stats export|fid``: reference statistics as pytorch-fid-compatible .npz files."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from benchmark.cli.common import DataRoot, Home, Weights, out
from benchmark.core import paths
from benchmark.core.errors import ArtshiftError

stats_app = typer.Typer(no_args_is_help=True,
                        help="Reference statistics as pytorch-fid-compatible .npz files (mu, sigma).")


@stats_app.command("export")
def stats_export(
    artist: str = typer.Option(..., "--artist", "-a"),
    out_dir: Path = typer.Option(..., "--out", help="folder for one .npz per layer"),
    split: str = typer.Option("photos_test", "--split", help="photos_test, photos_train, paintings_test, ..."),
    data_root: Optional[Path] = DataRoot,
    home: Optional[Path] = Home,
    weights: Weights = typer.Option(Weights.auto, "--weights"),
    resize_mode: Optional[str] = typer.Option(None, "--resize-mode", help="Inception: clean (default), "
                                                                          "pytorch-fid or torch-fidelity"),
    network: str = typer.Option("inception", "--extractor", help="a registered feature extractor"),
) -> None:
    """Write the (cached) statistics of one split at every layer, loadable by pytorch-fid."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark import data
    from benchmark.features.extract import reference_stats
    from benchmark.features.extractor import calibration_photos
    from benchmark.pipeline.evaluate import make_extractor

    home_dir = paths.home(home)
    domain = data.resolve_domain(artist, paths.data_root(data_root))
    splits = ("photos_test", "photos_train", "paintings_test", "paintings_train")
    if split not in splits:
        raise ArtshiftError(f"unknown split {split!r}", hint=f"one of {', '.join(splits)}")
    extractor = make_extractor(weights.value, calibration_photos(domain), home_dir, resize_mode=resize_mode,
                               name=network)
    stats = reference_stats(extractor, list(getattr(domain, split)), home_dir / "cache" / "stats")
    out_dir.mkdir(parents=True, exist_ok=True)
    # the extractor id (weights sha or random-init hash) names the file, so statistics of two
    # networks can never be mistaken for each other; no ':' in file names
    tag = "-" + extractor.id.replace(":", "-")
    for layer, st in stats.items():
        path = out_dir / f"{artist}-{split}-{layer.partition(':')[2]}{tag}.npz"
        st.save_npz(path)
        out.print(escape(f"{path}  (n={st.n}, extractor {extractor.id}, resize {extractor.resize_mode})"),
                  highlight=False)


@stats_app.command("fid")
def stats_fid(first: Path, second: Path) -> None:
    """Frechet distance between two statistics files (ours or pytorch-fid's .npz)."""
    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark.metrics.fid import Stats, frechet_distance

    out.print(f"{frechet_distance(Stats.load_npz(first), Stats.load_npz(second)):.6f}")


def register(app: typer.Typer) -> None:
    app.add_typer(stats_app, name="stats")
