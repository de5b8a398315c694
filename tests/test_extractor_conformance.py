"""Every registered feature extractor honours the protocol the evaluation path relies on: built by
name, text layer ids under its own name, each declared layer returned at its declared width with
finite values, and features of image files that do not depend on the batch size.

One test per extractor (building and calibrating one is the slow part, and a module fixture would
be rebuilt on every pytest-xdist worker that runs one of its tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.core import registry
from benchmark.core.errors import ArtshiftError
from benchmark.data import list_images
from benchmark.features import extract
from benchmark.features import extractor as E

N_CAL = 8


@pytest.fixture(scope="module")
def images(shared_data, tmp_path_factory) -> list[Path]:
    """A test photo and a small non-square image (so resizing is exercised)."""
    photo = list_images(shared_data / "photos" / "test")[0]
    small = tmp_path_factory.mktemp("odd") / "small.png"
    Image.open(photo).convert("RGB").resize((97, 131), Image.BILINEAR).save(small)
    return [photo, small]


@pytest.mark.parametrize("name", registry.extractors.names())
def test_extractor_conforms(name, shared_data, images, tmp_path):
    cal = list_images(shared_data / "photos" / "train")[:N_CAL]
    ex = E.make(name, weights="random", calibration_paths=cal, home=tmp_path, allow_download=False)

    assert isinstance(ex, E.FeatureExtractor)
    assert ex.name == name
    assert ex.id.startswith("random-init:") and ex.display_tag.endswith("random-init")
    assert ex.layers and list(ex.widths) == list(ex.layers)
    for layer in ex.layers:
        assert layer.startswith(name + ":") and E.split_layer(layer)[0] == name
        assert isinstance(ex.widths[layer], int) and ex.widths[layer] > 0

    x = ex.preprocess(np.asarray(Image.open(images[1]).convert("RGB")))
    assert x.dtype.is_floating_point and x.dtype.itemsize == 4
    assert x.ndim == 3 and x.shape[0] == 3 and x.shape[1] == x.shape[2]
    with pytest.raises(ArtshiftError, match="unknown"):
        ex(x[None], [f"{name}:no-such-layer"])

    together = extract.extract_paths(ex, images, batch_size=2, num_workers=0, progress=False)
    alone = extract.extract_paths(ex, images, batch_size=1, num_workers=0, progress=False)
    assert list(together) == list(ex.layers)
    for layer in ex.layers:
        f = together[layer]
        assert f.shape == (len(images), ex.widths[layer]), layer
        assert np.isfinite(f).all(), layer
        np.testing.assert_allclose(alone[layer], f, rtol=1e-3, atol=1e-4 * np.abs(f).max(), err_msg=layer)
