"""``inception-tv2018``: the 2018 pytorch-fid pipeline (bilinear resize, its normalisation, four
torchvision blocks), checked against torchvision's own modules; the random-init fallback is
labelled and cached; the pretrained file is loaded strictly; FID and KID apply to its layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models import inception as tvi

from benchmark.core import registry
from benchmark.core.errors import ArtshiftError
from benchmark.data import list_images, load_image
from benchmark.features import tv_inception2018 as T
from benchmark.features import weights


def test_preprocess_is_bilinear_then_the_2018_normalisation():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    x = T.preprocess(img)
    assert x.shape == (3, 299, 299) and x.dtype == torch.float32
    # written out independently: ToTensor -> F.interpolate(bilinear) -> x * std/0.5 + (mean-0.5)/0.5
    t = torch.tensor(img, dtype=torch.float32).permute(2, 0, 1)[None] / 255
    t = F.interpolate(t, size=(299, 299), mode="bilinear", align_corners=False)[0]
    for c, (m, s) in enumerate(zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))):
        assert torch.allclose(x[c], t[c] * (s / 0.5) + (m - 0.5) / 0.5, atol=1e-6)
    with pytest.raises(ArtshiftError, match="unknown resize mode"):
        T.preprocess(img, "clean")


def test_blocks_match_torchvision_modules_and_pool_each_block():
    torch.manual_seed(0)
    net = tvi.Inception3(aux_logits=True, transform_input=False, init_weights=True).eval()
    x = torch.randn(2, 3, 160, 160)  # any size >= 75 px exercises the same modules
    with torch.no_grad():
        out = T.Blocks(net)(x)
        y = net.maxpool1(net.Conv2d_2b_3x3(net.Conv2d_2a_3x3(net.Conv2d_1a_3x3(x))))
        assert torch.allclose(out[64], y.mean((2, 3)), atol=1e-5)
        y = net.maxpool2(net.Conv2d_4a_3x3(net.Conv2d_3b_1x1(y)))
        assert torch.allclose(out[192], y.mean((2, 3)), atol=1e-5)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            y = getattr(net, name)(y)
        assert torch.allclose(out[768], y.mean((2, 3)), atol=1e-5)
        y = net.Mixed_7c(net.Mixed_7b(net.Mixed_7a(y)))
        assert torch.allclose(out[2048], net.avgpool(y).flatten(1), atol=1e-5)
        assert set(T.Blocks(net)(x, dims=(192,))) == {192}


def test_pretrained_file_loads_strictly_and_gives_the_blocks_features(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTSHIFT_WEIGHTS", str(tmp_path / "w"))
    torch.manual_seed(1)
    net = tvi.Inception3(aux_logits=True, transform_input=False, init_weights=True).eval()
    src = tmp_path / "inception_v3_google-0cc3c7bd.pth"
    torch.save(net.state_dict(), src)
    digest = "ab" * 32
    monkeypatch.setitem(weights.KNOWN, "inception-v3", weights.WeightFile(
        "inception-v3", src.name, "https://example.invalid/x.pth", digest, None, None, "test"))
    monkeypatch.setattr(weights, "sha256_file", lambda p: digest)
    weights.import_file("inception-v3", src, home=tmp_path)
    ex = T.get_extractor("pretrained", home=tmp_path, allow_download=False)
    assert ex.id == f"pretrained:{digest[:12]}" and ex.display_tag == ""
    x = torch.randn(2, 3, 160, 160)  # any size >= 75 px exercises the same modules
    got = ex(x, ["inception-tv2018:768"])
    with torch.no_grad():
        want = T.Blocks(net)(x, (768,))[768]
    assert list(got) == ["inception-tv2018:768"] and torch.allclose(got["inception-tv2018:768"], want, atol=1e-5)
    # a state dict of another network is refused with the fix
    torch.save({"conv.weight": torch.zeros(1)}, src)
    with pytest.raises(ArtshiftError, match="do not fit torchvision's Inception-v3"):
        T.TV2018InceptionExtractor(torch.load(src), id="x")


def test_random_init_is_labelled_cached_and_metrics_apply(shared_data, tmp_path, caplog):
    cal = list_images(shared_data / "photos" / "train")[:6]
    ex = T.get_extractor("auto", home=tmp_path, calibration_paths=cal, allow_download=False)
    assert ex.id.startswith("random-init:sd-") and ex.display_tag == "random-init"
    assert "RANDOM-INIT" in caplog.text
    again = T.get_extractor("random", home=tmp_path, calibration_paths=cal)
    assert again.id == ex.id  # the calibrated state came from the cache
    assert len(list((tmp_path / "cache" / "extractors").glob("inception-tv2018-random-v2-*.pt"))) == 1
    feats = ex(torch.stack([ex.preprocess(np.asarray(load_image(p))) for p in cal[:3]]))
    assert {k: tuple(v.shape) for k, v in feats.items()} == {f"inception-tv2018:{d}": (3, d)
                                                            for d in (64, 192, 768, 2048)}
    assert all(torch.isfinite(v).all() and v.std() > 0 for v in feats.values())
    fid, kid = registry.metrics.get("fid"), registry.metrics.get("kid")
    assert all(fid.applies_to(k) for k in ex.layers)
    assert [k for k in ex.layers if kid.applies_to(k)] == ["inception-tv2018:2048"]
    with pytest.raises(ArtshiftError, match="needs calibration photos"):
        T.get_extractor("random", home=tmp_path / "other", calibration_paths=[])
