"""Evaluate a folder of images against a real photo set: FID at every Inception layer + KID.

Everything downstream of ``translate`` works on image files, so a method that lives outside
artshift is ranked the same way (``bench eval --images DIR``). The real set's features are
cached (keyed by its content, the extractor id and the resize mode); the generated set's are
computed fresh every time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.metrics import display_name
from benchmark.metrics import fid as fid_metric
from benchmark.metrics import kid as kid_metric
from benchmark.store import MetricRow

log = logging.getLogger("artshift.evaluate")

KID_DIMS = 2048  # KID is reported on the standard pool features, as in the KID paper


@dataclass
class Evaluation:
    rows: list[MetricRow]
    n_real: int
    n_fake: int
    skipped: list[Path]


def make_extractor(weights: str, calibration_paths: Sequence[Path], home: Path, resize_mode: str = "clean",
                   seed: int = 0, device: str = "cpu") -> Any:
    """The FID Inception extractor for ``weights`` in {auto, pretrained, random}."""
    from benchmark import features

    return features.get_extractor(weights=weights, resize_mode=resize_mode, home=home,
                                  calibration_paths=list(calibration_paths), seed=seed, device=device)


def evaluate_paths(fake: Sequence[Path], real: Sequence[Path], extractor: Any, cache_dir: Path,
                   skip_bad: bool = False, kid_subsets: int = 100, kid_seed: int = 0,
                   progress: bool = True) -> Evaluation:
    from benchmark import features

    real_stats = features.reference_stats(extractor, list(real), cache_dir, skip_bad=skip_bad, progress=progress)
    fake_feats = features.extract_paths(extractor, list(fake), skip_bad=skip_bad, progress=progress)
    skipped = list(getattr(fake_feats, "skipped", []))
    tag = extractor.display_tag
    rows = []
    n_fake = next(iter(fake_feats.values())).shape[0]
    n_real = next(iter(real_stats.values())).n
    for dims in extractor.layers:
        fake_stats = fid_metric.Stats.from_features(fake_feats[dims])
        value = fid_metric.frechet_distance(real_stats[dims], fake_stats)
        rows.append(MetricRow("fid", dims, display_name("fid", dims, tag), value, real_stats[dims].n, n_fake,
                              extractor.id, extractor.resize_mode, fid_metric.VERSION))
    real_kid = real_stats[KID_DIMS].features
    if real_kid is not None:
        res = kid_metric.kid(real_kid, fake_feats[KID_DIMS], n_subsets=kid_subsets, seed=kid_seed)
        rows.append(MetricRow("kid", KID_DIMS, display_name("kid", KID_DIMS, tag), res.mean, n_real, n_fake,
                              extractor.id, extractor.resize_mode, kid_metric.VERSION, std=res.std))
    else:
        log.warning("reference statistics carry no features: KID skipped")
    return Evaluation(rows, n_real, n_fake, skipped)
