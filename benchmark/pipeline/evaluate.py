"""Evaluate a folder of images against a real photo set with every applicable registered metric.

Everything downstream of ``translate`` works on image files, so a method that lives outside
artshift is ranked the same way (``bench eval --images DIR``). The loop reads the registries:
for each extractor asked for, each of its layers, each registered metric that applies to that
layer, one ``MetricRow``; it never names a network or a metric. The real set's statistics are
cached (keyed by its content, the extractor id and the resize mode); the generated set's are
computed fresh every time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark import data
from benchmark.core import registry
from benchmark.core.errors import ArtshiftError, did_you_mean
from benchmark.core.store import MetricRow
from benchmark.features import extract, extractor
from benchmark.features.extractor import FeatureExtractor
from benchmark.metrics import Metric, display_name
from benchmark.metrics.accuracy import COMMAND
from benchmark.metrics.fid import Stats

log = logging.getLogger("artshift.evaluate")

# what `bench run` measures: the FID Inception and a second real ImageNet space beside it (FD and
# KID at EfficientNet-Lite0's head); `bench eval --with` adds others
DEFAULT_EXTRACTORS = ("inception", "effnet-lite0")


@dataclass
class Evaluation:
    rows: list[MetricRow]
    n_real: int
    n_fake: int
    skipped: list[Path]


def make_extractor(weights: str, calibration_paths: Sequence[Path], home: Path, resize_mode: str | None = None,
                   seed: int = 0, device: str = "cpu", name: str = "inception") -> Any:
    """The registered extractor ``name`` for ``weights`` in {auto, pretrained, random}."""
    return extractor.make(name, weights=weights, resize_mode=resize_mode, home=home,
                          calibration_paths=list(calibration_paths), seed=seed, device=device)


def select_metrics(names: Sequence[str] | None = None) -> list[Metric]:
    """Registered metrics (all, or ``names`` with did-you-mean errors), in registration order."""
    return [registry.metrics.get(n) for n in (names if names is not None else registry.metrics.names())]


def split_with(names: Sequence[str], artist: str | None = None, *, home: Path | None = None,
               run_id: str | None = None) -> tuple[list[str], list[str] | None]:
    """``--with vgg19,kid``: names of extractors and of metrics, each checked against its registry.

    With ``artist``, ``downstream`` and the accuracy metrics get an error that says why
    ``bench eval`` does not measure them for that artist and which command does.
    """
    if artist is not None:
        check_with(names, artist, home=home, run_id=run_id)
    extractors, metrics = [], []
    for name in names:
        if name in registry.extractors:
            extractors.append(name)
        elif name in registry.metrics:
            metrics.append(name)
        else:
            known = sorted(registry.extractors.names() + registry.metrics.names())
            raise ArtshiftError(f"--with {name}: not a registered extractor or metric (known: {', '.join(known)})",
                                hint=did_you_mean(name, known))
    return extractors or list(DEFAULT_EXTRACTORS), metrics or None


def labelled_artists(home: Path | None = None) -> list[str]:
    """Artists whose dataset has class labels (a manifest with a labelled layout: PACS)."""
    try:
        found = {m.artist for m in data.load_manifests(home).values() if m.labelled}
    except data.ManifestError:
        found = set()
    return sorted(found or {"pacs"})


def _asks_downstream(name: str) -> bool:
    return name == "downstream" or (name in registry.metrics and registry.metrics.get(name).computed_by == COMMAND)


def check_with(names: Sequence[str], artist: str, *, home: Path | None = None, run_id: str | None = None) -> None:
    """``bench eval --with downstream`` (or an accuracy metric): always an error that points to the command.

    On an unlabelled artist there is nothing to measure. On a labelled one the rows exist, but
    they need what ``bench eval`` does not have: a classifier trained on the domain's photos, its
    photo-test ceiling and the original paintings paired with the translations for McNemar; so
    the error names the ``bench downstream`` call that scores this run instead of half-doing it.
    """
    asked = [n for n in names if _asks_downstream(n)]
    if not asked:
        return
    labelled = labelled_artists(home)
    if artist not in labelled:
        raise ArtshiftError(f"--with {asked[0]}: artist {artist!r} has no class labels, so there is no downstream "
                            f"accuracy to measure (labelled artists: {', '.join(labelled)})",
                            hint=f"measure it on a labelled artist: `bench downstream --artist {labelled[0]}`; "
                                 "a label-free protocol is not implemented")
    runs = f" --runs {run_id}" if run_id else ""
    raise ArtshiftError(f"--with {asked[0]}: downstream accuracy is not measured by `bench eval` (it needs a "
                        f"classifier trained on {artist}'s photos and each translation paired with its painting)",
                        hint=f"run `bench downstream --artist {artist}{runs}` (add --probe for the ImageNet linear "
                             "probe, --finetune for the fine-tuned ImageNet ResNet-152 on a GPU, --finetune "
                             "--arch effnet-lite0 for EfficientNet-Lite0 fine-tuned on the CPU)"
                             + ("" if run_id else "; it scores finished runs, not a folder of images"))


def evaluate_paths(fake: Sequence[Path], real: Sequence[Path], extractor: FeatureExtractor, cache_dir: Path,
                   skip_bad: bool = False, progress: bool = True,
                   metrics: Sequence[str] | None = None) -> Evaluation:
    """Every applicable (layer, metric) pair of ``extractor`` for ``fake`` against ``real``."""
    chosen = [m for m in select_metrics(metrics) if m.computed_by is None]
    layers = [k for k in extractor.layers if any(m.applies_to(k) for m in chosen)]
    if not layers:
        asked = ", ".join(metrics) if metrics else "registered"
        raise ArtshiftError(f"none of the {asked} metrics is computed on a layer of {extractor.name} "
                            f"({', '.join(extractor.layers)}) by `bench eval`",
                            hint="metrics computed by their own command (e.g. `bench shift`) are not run here")
    real_stats = extract.reference_stats(extractor, list(real), cache_dir, skip_bad=skip_bad, progress=progress,
                                          layers=layers)
    fake_feats = extract.extract_paths(extractor, list(fake), skip_bad=skip_bad, progress=progress, layers=layers)
    skipped = list(getattr(fake_feats, "skipped", []))
    n_fake = next(iter(fake_feats.values())).shape[0]
    n_real = next(iter(real_stats.values())).n
    fake_stats = {layer: Stats.from_features(fake_feats[layer]) for layer in layers}  # once, not per metric
    rows = []
    for metric in chosen:
        for layer in layers:
            if not metric.applies_to(layer):
                continue
            ref = real_stats[layer]
            if metric.needs_features and ref.features is None:
                log.warning("reference statistics for %s carry no features: %s skipped", layer, metric.name)
                continue
            assert metric.compute is not None  # computed_by metrics were filtered out above
            res = metric.compute(ref, fake_stats[layer])
            if res is None:  # e.g. k-NN metrics on fewer images than k: the metric logged why
                continue
            rows.append(MetricRow(metric.name, layer, display_name(metric.name, layer, extractor.display_tag,
                                                               by_width=getattr(extractor, "by_width", False)),
                                  res.value, ref.n, n_fake, extractor.id, extractor.resize_mode, metric.version,
                                  std=res.std, direction=metric.direction, low=res.low, high=res.high))
    return Evaluation(rows, n_real, n_fake, skipped)
