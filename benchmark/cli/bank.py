"""``bench bank build``: build (or find) the memory bank "ours" trains with, ahead of a run.

The bank is keyed exactly as ``bench run --method ours`` keys it (same profile settings,
same photo set), so a bank built here is the one the run reuses. Heavy imports (faiss,
torch) happen inside the command so ``bench --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from benchmark.core import paths
from benchmark.core.profiles import apply_overrides, parse_overrides

bank_app = typer.Typer(help="Memory banks of real photo patches for the memory-bank CycleGAN ('ours').",
                       no_args_is_help=True)


@bank_app.callback()
def _group() -> None:
    """Memory banks of real photo patches for 'ours' (kept a command group even with one command)."""


@bank_app.command("build")
def build(
    artist: str = typer.Option(..., "--artist", help="whose photo training set (photos are shared by all artists)"),
    scales: Optional[str] = typer.Option(None, "--scales", help="patch:stride per scale, e.g. 16:6,8:5"),
    profile: str = typer.Option("smoke", "--profile", help="ci | smoke | cpu | quick | paper (sets the image size)"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="dataset root (else ARTSHIFT_DATA)"),
    home: Optional[Path] = typer.Option(None, "--home", help="artshift home (else ARTSHIFT_HOME)"),
    index: Optional[str] = typer.Option(None, "--index", help="auto | flat | hnsw | ivf | ivfpq"),
    geometry: Optional[str] = typer.Option(None, "--geometry", help="cosine (the loss's) | l2 (official code)"),
    memory_gb: Optional[float] = typer.Option(None, "--memory-gb", help="bank memory budget"),
    overrides: list[str] = typer.Option([], "--set", help="any ours setting as key=value, e.g. ef_search=64"),
    skip_bad: bool = typer.Option(False, "--skip-bad-images", help="leave unreadable photos out"),
) -> None:
    """Build (or find) the bank for ARTIST's training photos and print where it is and its recall@k."""
    import time

    # on use: keeps numpy/pandas/torch out of every `bench` start (--help)
    from benchmark.data import resolve_domain
    from methods.memory_bank import bank_fingerprint, build_bank, fingerprint_files
    from methods.ours import MemoryBankCycleGAN, bank_spec

    sets = parse_overrides(overrides)
    for key, value in (("scales", scales), ("bank_index", index), ("search_geometry", geometry),
                       ("bank_memory_gb", memory_gb)):
        if value is not None:
            sets[key] = str(value)
    config = apply_overrides(MemoryBankCycleGAN.default_config(profile), sets)
    spec = bank_spec(config)
    domain = resolve_domain(artist, paths.data_root(data_root))
    cache = paths.home(home) / "cache"
    photos = list(domain.photos_train)
    masks = Path(config.masks_dir) / "photos" if config.masks_dir else None
    masks_fp = fingerprint_files(sorted(masks.glob("*.png"))) if masks and any(masks.glob("*.png")) else None
    existed = (cache / "banks" / bank_fingerprint(spec, fingerprint_files(photos), masks_fp) / "meta.json").exists()
    t0 = time.perf_counter()
    bank = build_bank(photos, spec, cache, masks_dir=masks, query_images=list(domain.paintings_train),
                      recall_k=config.k, recall_queries=config.recall_queries, skip_bad=skip_bad, progress=True)
    took = time.perf_counter() - t0
    typer.echo(("found existing " if existed else f"built in {took:.1f}s: ") + bank.describe())
    typer.echo(f"location: {bank.root}")


def register(app: typer.Typer) -> None:
    """Add ``bank`` to ``bench`` (registered in ``benchmark.core.registry.commands`` as ``benchmark.cli.bank:register``)."""
    app.add_typer(bank_app, name="bank", help="Memory banks of real photo patches (for 'ours').")
