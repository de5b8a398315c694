"""The evaluation path reads the registries: every applicable (layer, metric) pair, with n."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.core import registry
from benchmark.core.errors import ArtshiftError
from benchmark.features.extract import extract_paths
from benchmark.metrics import Metric
from benchmark.metrics import fid as fid_mod
from benchmark.metrics import kid as kid_mod
from benchmark.pipeline.evaluate import evaluate_paths, split_with


class TinyExtractor:
    """A protocol-conforming stand-in with the FID Inception's layer ids and small widths."""

    name = "inception"
    id = "random-init:test"
    display_tag = "random-init"
    resize_mode = "clean"
    layers = ("inception:64", "inception:192", "inception:768", "inception:2048")
    widths = dict(zip(layers, (3, 5, 7, 9), strict=True))

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.proj = {k: torch.randn(3 * 16, w, generator=g, dtype=torch.float64) for k, w in self.widths.items()}

    def preprocess(self, img):
        small = Image.fromarray(img).resize((4, 4), Image.Resampling.BILINEAR)
        return torch.from_numpy(np.asarray(small, np.float32) / 255.0).permute(2, 0, 1)

    def __call__(self, batch, layers=None):
        flat = batch.reshape(batch.shape[0], -1).double()
        return {k: torch.tanh(flat @ self.proj[k]).float() for k in (layers or self.layers)}


def _images(folder, n, seed):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        p = folder / f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_fid_and_kid_through_the_registry_equal_the_direct_functions(tmp_path):
    ex = TinyExtractor()
    real, fake = _images(tmp_path / "real", 30, 0), _images(tmp_path / "fake", 12, 1)
    ev = evaluate_paths(fake, real, ex, tmp_path / "cache", progress=False)
    fr = extract_paths(ex, real, num_workers=0, progress=False)
    ff = extract_paths(ex, fake, num_workers=0, progress=False)
    got = {(r.metric, r.layer): r for r in ev.rows}
    prdc = {(m, "inception:2048") for m in ("precision", "recall", "density", "coverage")}  # k-NN: tests/test_real_fid.py
    assert set(got) == {("fid", k) for k in ex.layers} | {("kid", "inception:2048")} | prdc
    for k in ex.layers:
        assert got["fid", k].value == pytest.approx(fid_mod.fid_from_features(fr[k], ff[k]), rel=1e-12)
        assert got["fid", k].display_name == f"FID-{k.split(':')[1]}[random-init]"
    ref = kid_mod.kid(fr["inception:2048"], ff["inception:2048"], n_subsets=100, subset_size=1000, seed=0)
    row = got["kid", "inception:2048"]
    assert row.value == pytest.approx(ref.mean, rel=1e-12) and row.std == pytest.approx(ref.std, rel=1e-12)
    assert all(r.n_real == 30 and r.n_fake == 12 for r in ev.rows)
    assert {r.metric for r in ev.rows if r.direction == "higher"} == {m for m, _ in prdc}  # the rest: lower
    # only the metrics asked for
    only = evaluate_paths(fake, real, ex, tmp_path / "cache", progress=False, metrics=["kid"])
    assert [(r.metric, r.layer) for r in only.rows] == [("kid", "inception:2048")]


@pytest.mark.parametrize("name", registry.metrics.names())
def test_every_registered_metric_declares_direction_layers_and_version(name, tmp_path):
    m = registry.metrics.get(name)
    assert isinstance(m, Metric) and m.name == name
    assert isinstance(m.higher_is_better, bool) and m.direction in ("lower", "higher")
    assert m.layers and all(":" in p for p in m.layers) and m.version
    if m.computed_by is not None:
        assert m.computed_by.startswith("bench ")
        return  # its own command's tests produce its rows
    # its rows carry n when it applies to an extractor's layer
    ex = TinyExtractor()
    ex.layers = tuple(k for k in ex.layers if m.applies_to(k)) or ex.layers
    if not any(m.applies_to(k) for k in ex.layers):
        pytest.skip(f"{name} applies to no Inception layer")
    ev = evaluate_paths(_images(tmp_path / "f", 6, 2), _images(tmp_path / "r", 8, 3), ex, tmp_path / "c",
                        progress=False, metrics=[name])
    assert ev.rows and all(r.n_fake == 6 and r.n_real == 8 and r.direction == m.direction for r in ev.rows)


def test_with_names_extractors_and_metrics():
    assert split_with([]) == (["inception", "effnet-lite0"], None)  # the FID network and a second real one
    assert split_with(["vgg19", "kid"]) == (["vgg19"], ["kid"])
    with pytest.raises(ArtshiftError, match="did you mean 'vgg19'"):
        split_with(["vgg91"])
