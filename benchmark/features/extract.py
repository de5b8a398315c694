"""The extraction loop shared by every registered extractor, and the two caches over it.

- ``extract_paths``: features of a list of image files at the requested layers, decoded and
  preprocessed in DataLoader workers, in input order; unreadable files raise or are skipped.
- ``reference_stats``: per-layer ``Stats`` of a real image set, cached by the set's content,
  the extractor id and the resize mode (FID/KID references).
- ``image_features``: per-image features cached by each file's content (``bench shift`` and the
  downstream probe), so a second call only embeds what is new.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.core.download import sha256_file
from benchmark.core.errors import ArtshiftError
from benchmark.data import BadImageError, fingerprint, load_image
from benchmark.features.extractor import FeatureExtractor, check_layers
from benchmark.metrics.fid import Stats

log = logging.getLogger("artshift.features")
_shift_log = logging.getLogger("artshift.shift")  # image_features' warnings keep the name they had in shift.py


class LayerFeatures(dict):
    """{layer id: float64 [n, dims]} for the images that could be read; ``skipped`` lists the rest."""

    def __init__(self, data: dict[str, np.ndarray], paths: list[Path], skipped: list[Path]):
        super().__init__(data)
        self.paths = paths
        self.skipped = skipped


class _ImageFiles(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[Path], preprocess):
        self.paths = list(paths)
        self.preprocess = preprocess

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            img = np.asarray(load_image(self.paths[i]))
        except BadImageError:
            return i, None
        return i, self.preprocess(img)


def _collate(items):
    good = [(i, x) for i, x in items if x is not None]
    bad = [i for i, x in items if x is None]
    batch = torch.stack([x for _, x in good]) if good else None
    return [i for i, _ in good], batch, bad


def default_num_workers(n_images: int, batch_size: int) -> int:
    if n_images <= batch_size:
        return 0  # starting workers costs more than they save on one batch
    return min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def extract_paths(extractor: FeatureExtractor, paths: Sequence[Path], batch_size: int = 50,
                  num_workers: int | None = None, skip_bad: bool = False, progress: bool = True,
                  layers: Sequence[str] | None = None) -> LayerFeatures:
    """Features of image files at every layer, in input order (float64 arrays).

    A file that cannot be read raises ``BadImageError`` naming it, or with ``skip_bad`` is left
    out and listed in the result's ``skipped``.
    """
    paths = [Path(p) for p in paths]
    layers = check_layers(extractor, layers)
    if not paths:
        raise ArtshiftError("no images to extract features from")
    if num_workers is None:
        num_workers = default_num_workers(len(paths), batch_size)
    loader = torch.utils.data.DataLoader(_ImageFiles(paths, extractor.preprocess), batch_size=batch_size,
                                         shuffle=False, num_workers=num_workers, collate_fn=_collate,
                                         persistent_workers=False)
    from tqdm.auto import tqdm

    chunks: dict[str, list[np.ndarray]] = {k: [] for k in layers}
    kept: list[int] = []
    skipped: list[Path] = []
    with tqdm(total=len(paths), desc=f"{extractor.name} features", unit="img", disable=not progress, leave=False) as bar:
        for idx, batch, bad in loader:
            for i in bad:
                if not skip_bad:
                    load_image(paths[i])  # re-raise the genuine BadImageError in this process
                    raise BadImageError(paths[i], "could not be read in a data loader worker")
                log.warning("skipping unreadable image %s", paths[i])
                skipped.append(paths[i])
            if batch is not None:
                feats = extractor(batch, layers)
                for k in layers:
                    chunks[k].append(feats[k].cpu().numpy())
                kept.extend(idx)
            bar.update(len(idx) + len(bad))
    if not kept:
        raise ArtshiftError(f"none of the {len(paths)} images could be read (first: {paths[0]})")
    out = {k: np.concatenate(chunks[k]).astype(np.float64) for k in layers}
    return LayerFeatures(out, [paths[i] for i in kept], skipped)


def reference_stats(extractor: FeatureExtractor, paths: Sequence[Path], cache_dir: Path,
                    **kw) -> dict[str, Stats]:
    """Per-layer ``Stats`` of a real image set, cached by content + extractor id + resize mode."""
    paths = [Path(p) for p in paths]
    layers = check_layers(extractor, kw.pop("layers", None))
    key = hashlib.sha256("\0".join([fingerprint(paths), extractor.name, extractor.id, extractor.resize_mode,
                                    str(bool(kw.get("skip_bad", False)))]).encode()).hexdigest()[:20]
    cache_dir = Path(cache_dir)
    files = {k: cache_dir / f"{extractor.name}-{key}-{k.partition(':')[2]}.npz" for k in layers}
    if all(f.is_file() for f in files.values()):
        try:
            return {k: Stats.load_npz(f) for k, f in files.items()}
        except ArtshiftError as exc:  # a truncated cache file (killed writer, full disk) is rebuilt
            log.warning("%s: recomputing the reference statistics", str(exc).splitlines()[0])
    feats = extract_paths(extractor, paths, layers=layers, **kw)
    cache_dir.mkdir(parents=True, exist_ok=True)
    stats = {}
    for k, f in files.items():
        stats[k] = Stats.from_features(feats[k])
        stats[k].save_npz(f, with_sqrt=True)
    return stats


def image_features(extractor: Any, files: Sequence[Path], cache_dir: Path, layers: Sequence[str],
                   progress: bool = False) -> dict[str, np.ndarray]:
    """{layer: float64 [n, d]} for ``files``, in order; each image embedded once per extractor (all
    of the extractor's layers from one pass) and cached by its content."""
    key = hashlib.sha256(f"{extractor.id}\0{extractor.resize_mode}".encode()).hexdigest()[:12]
    folder = Path(cache_dir) / f"{extractor.name}-{key}"
    all_layers = tuple(extractor.layers)
    hashes = [sha256_file(Path(p))[:24] for p in files]
    cached: dict[str, dict[str, np.ndarray]] = {}
    for h in set(hashes):
        f = folder / f"{h}.npz"
        if f.is_file():
            try:
                with np.load(f, allow_pickle=False) as z:
                    if all(k in z for k in all_layers):
                        cached[h] = {k: z[k] for k in all_layers}
            except (OSError, ValueError) as exc:
                _shift_log.warning("ignoring unreadable feature cache %s (%s)", f, exc)
    todo: dict[str, Path] = {}
    for h, p in zip(hashes, files):
        if h not in cached and h not in todo:
            todo[h] = Path(p)
    if todo:
        feats = extract_paths(extractor, list(todo.values()), layers=all_layers, progress=progress)
        folder.mkdir(parents=True, exist_ok=True)
        for i, h in enumerate(todo):
            # float32 is what the network produced, so the round trip is exact
            arrays = {k: feats[k][i].astype(np.float32) for k in all_layers}
            tmp = folder / f".{h}.{os.getpid()}.tmp.npz"
            np.savez(tmp, **arrays)  # type: ignore[arg-type]
            os.replace(tmp, folder / f"{h}.npz")
            cached[h] = arrays
    return {k: np.stack([cached[h][k] for h in hashes]).astype(np.float64) for k in layers}
