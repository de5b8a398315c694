"""torchvision VGG-19 / ResNet-152 extractors: declared layers and widths, batch-size independence,
the random-init calibrations checked against independent forward passes (Gatys' mean-activation
normalisation for VGG, BatchNorm statistics for ResNet), ids and caching, pretrained files.

Both networks at 224 px take most of a second per image on a CPU, so the extractors here are
calibrated, and most checks run, on 64 px inputs: every property tested holds at any size (the
224 px path end to end is in test_extractor_conformance.py). Each calibrated network is built in
one test only, so that pytest-xdist workers never build it twice."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.models as tvm
from torch import nn

from benchmark.core.download import sha256_file
from benchmark.core.errors import ArtshiftError
from benchmark.data import list_images, load_image
from benchmark.features import tv_features as T
from benchmark.features import weights
from benchmark.features.inception import resize_clean

N_CAL = 8
SIZE = 64  # input side for the calibration and the direct calls in this module
NODES = {"vgg19": ["features.1", "features.6", "features.11", "features.20", "features.22", "features.29",
                   "classifier.4"],
         "resnet152": ["maxpool", "layer1", "layer2", "layer3", "layer4"]}
BUILD = {"vgg19": tvm.vgg19, "resnet152": tvm.resnet152}


@pytest.fixture(scope="module")
def cal(shared_data) -> list[Path]:
    return list_images(shared_data / "photos" / "train")[:N_CAL]


def small(img: np.ndarray) -> torch.Tensor:
    """The extractors' preprocessing at SIZE px, written out independently."""
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return (torch.from_numpy(resize_clean(img, SIZE)) / 255 - mean[:, None, None]) / std[:, None, None]


def create_small(create, **kwargs) -> T.TorchvisionExtractor:
    """An extractor calibrated on SIZE px photos (the cache key does not depend on the size)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(T, "INPUT_SIZE", SIZE)
        return create(**kwargs)


@pytest.fixture(scope="module")
def cal_batch(cal) -> torch.Tensor:
    return torch.stack([small(np.asarray(load_image(p))) for p in cal])


@pytest.fixture(scope="module")
def batch(shared_data) -> torch.Tensor:
    """Three test photos and one random non-square image, at SIZE px."""
    imgs = [np.asarray(load_image(p)) for p in list_images(shared_data / "photos" / "test")[:3]]
    imgs.append(np.random.default_rng(0).integers(0, 256, (97, 131, 3), dtype=np.uint8))
    return torch.stack([small(im) for im in imgs])


def plain_features(net: nn.Module, nodes: list[str], x: torch.Tensor) -> list[torch.Tensor]:
    """Pooled outputs of ``nodes`` from torchvision's own forward (hooks, no FX)."""
    out: dict[str, torch.Tensor] = {}
    modules = dict(net.named_modules())
    hooks = [modules[n].register_forward_hook(
        lambda m, i, o, n=n: out.__setitem__(n, o.mean((2, 3)) if o.ndim == 4 else o.clone())) for n in nodes]
    with torch.no_grad():
        net.eval()(x)
    for h in hooks:
        h.remove()
    return [out[n] for n in nodes]


def check_random_id(ex: T.TorchvisionExtractor, home: Path) -> None:
    """``random-init:sd-<6 hex>:cal-<6 hex>``, and the calibrated state cached under the seed and calibration set."""
    assert re.fullmatch(r"random-init:sd-[0-9a-f]{6}:cal-[0-9a-f]{6}", ex.id), ex.id
    cal_fp = ex.id.rsplit("cal-", 1)[1]
    assert len(list((home / "cache" / "extractors").glob(f"{ex.name}-random-v1-seed0-cal{cal_fp}*.pt"))) == 1


def close(ours: torch.Tensor, theirs: torch.Tensor, rtol: float = 1e-4) -> None:
    torch.testing.assert_close(ours, theirs, rtol=rtol, atol=rtol * float(theirs.abs().max()))


# --- layers, widths, preprocessing, batch independence -----------------------------------------

DECLARED = {
    "vgg19": {"vgg19:relu1_1": 64, "vgg19:relu2_1": 128, "vgg19:relu3_1": 256, "vgg19:relu4_1": 512,
              "vgg19:relu4_2": 512, "vgg19:relu5_1": 512, "vgg19:fc7": 4096},
    "resnet152": {"resnet152:stem": 64, "resnet152:layer1": 256, "resnet152:layer2": 512, "resnet152:layer3": 1024,
                  "resnet152:layer4": 2048},
}


def check_layers_and_batch_independence(ex: T.TorchvisionExtractor, name: str, batch: torch.Tensor) -> None:
    """Declared layers at declared widths, float32 and finite, one forward for any subset, truncated
    after the deepest layer asked for, and the same features for an image alone or in a batch."""
    assert ex.name == name and ex.resize_mode == "clean" and ex.display_tag == "random-init"
    assert ex.layers == tuple(DECLARED[name]) and ex.widths == DECLARED[name]
    together = ex(batch)
    assert list(together) == list(ex.layers)
    for k, f in together.items():
        assert f.dtype == torch.float32 and f.shape == (len(batch), ex.widths[k]) and torch.isfinite(f).all()
        assert float(f.std(0).mean()) > 0  # the images are told apart
    for i in range(len(batch)):
        alone = ex(batch[i:i + 1])
        for k in ex.layers:  # float32 rounding differs by batch size, amplified in deep random-init layers
            close(alone[k][0], together[k][i], rtol=1e-3)
    one = ex(batch[:1], [ex.layers[0]])
    assert list(one) == [ex.layers[0]]
    torch.testing.assert_close(one[ex.layers[0]], together[ex.layers[0]][:1], rtol=1e-3, atol=1e-5)
    # the network is truncated after the deepest layer asked for
    assert not any(isinstance(m, nn.Linear) for m in ex._graph((ex.layers[0],)).modules())
    with pytest.raises(ArtshiftError, match="unknown"):
        ex(batch[:1], [f"{name}:nope"])


def test_preprocess_is_the_clean_resize_imagenet_normalised():
    img = np.random.default_rng(1).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    x = T.preprocess(img)
    assert x.dtype == torch.float32 and x.shape == (3, 224, 224)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = (resize_clean(img, 224) / 255 - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ArtshiftError, match="known: clean"):
        T.preprocess(img, "pytorch-fid")
    with pytest.raises(ArtshiftError, match="known: clean"):
        T.create_resnet152(weights="random", resize_mode="bicubic")


# --- random init: the calibrations, checked independently ----------------------------------------

class TinyVGG(nn.Module):
    """VGG-shaped (features, avgpool, classifier with fc6/fc7 ReLUs), small enough for float64."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(nn.Linear(64, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, 32),
                                        nn.ReLU(True), nn.Dropout(), nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def relu_means(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Mean output per channel of every ReLU (over images and positions), from the network's own forward."""
    means: list[torch.Tensor] = []
    relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    hooks = [r.register_forward_hook(
        lambda m, i, out: means.append(out.double().mean([d for d in range(out.ndim) if d != 1]))) for r in relus]
    with torch.no_grad():
        net.eval()(x)
    for h in hooks:
        h.remove()
    return means


@pytest.mark.parametrize("keep_bytes", [T.CALIBRATION_KEEP_BYTES, 0], ids=["keep", "recompute"])
def test_gatys_normalisation_is_exact_in_float64(keep_bytes, monkeypatch):
    """Every live channel of every conv/fc ReLU averages exactly 1 over images and positions; dead
    channels are untouched; keeping activations between layers or recomputing them is the same."""
    monkeypatch.setattr(T, "CALIBRATION_KEEP_BYTES", keep_bytes)
    torch.manual_seed(0)
    net = TinyVGG().double()
    with torch.no_grad():
        net.features[3].bias[5] = -1e3  # a dead channel
    dead_weight = net.features[3].weight[5].clone()
    x = torch.rand(10, 3, 16, 16, dtype=torch.float64) * 4 - 2
    T.normalise_mean_activations_(net, [x[:4], x[4:8], x[8:]])
    means = relu_means(net, x)
    assert len(means) == 5
    for k, mean in enumerate(means):
        live = mean > 0
        assert live.double().mean() > 0.7 and (k != 1 or not live[5]), k
        torch.testing.assert_close(mean[live], torch.ones_like(mean[live]), rtol=0, atol=1e-9)
    assert torch.equal(net.features[3].weight[5], dead_weight)


def test_vgg19_random_init(cal, cal_batch, batch, tmp_path):
    """Declared layers, batch independence and id of the calibrated VGG-19; checked by torchvision's own
    forward, every live channel after a convolution averages 1 within 1e-3 over the calibration photos
    and positions.

    fc6/fc7 average 8 values each, and their pre-activations sum 25088 / 4096 non-negative inputs
    with heavy cancellation, so float32 rounding upstream (~1e-5 relative) reaches ~1e-3 there and
    more in the channels that barely fire: only their median channel is checked, at 1e-2 (the
    float64 test above checks the procedure itself exactly).
    """
    vgg19 = create_small(T.create_vgg19, weights="random", home=tmp_path, calibration_paths=cal, allow_download=False)
    check_random_id(vgg19, tmp_path)
    check_layers_and_batch_independence(vgg19, "vgg19", batch)
    net = tvm.vgg19(init_weights=False)
    net.load_state_dict(vgg19.state_dict())
    means = relu_means(net, cal_batch)
    assert len(means) == 18  # 16 convolutions, fc6, fc7
    for k, mean in enumerate(means):
        live = mean > 0
        assert live.double().mean() > 0.5, k
        err = (mean[live] - 1).abs()
        assert float(err.max() if k < 16 else err.median()) < (1e-3 if k < 16 else 1e-2), (k, err)
    # the same network as Gatys' random VGG of the same seed, up to a positive scale per channel
    from benchmark.features.vgg import random_vgg19

    ratio = net.features[0].weight / random_vgg19(0)[0].features[0].weight
    assert bool((ratio > 0).all())
    torch.testing.assert_close(ratio, ratio[:, :1, :1, :1].expand_as(ratio))


def test_resnet152_random_init(cal, cal_batch, batch, tmp_path, monkeypatch, caplog):
    """Declared layers, batch independence and id of the calibrated ResNet-152; its BatchNorm running
    mean/var are the float64 mean/var of each BatchNorm's input over the calibration photos; a second
    call (random, or auto without the pretrained file) reuses the cached calibration."""
    resnet152 = create_small(T.create_resnet152, weights="random", home=tmp_path, calibration_paths=cal,
                             allow_download=False)
    check_random_id(resnet152, tmp_path)
    check_layers_and_batch_independence(resnet152, "resnet152", batch)
    net = tvm.resnet152()
    net.load_state_dict(resnet152.state_dict())
    net = net.double().eval()
    x = cal_batch.double()
    with torch.no_grad():
        pre = {"bn1": net.conv1(x)}
        stem = net.maxpool(net.relu(net.bn1(pre["bn1"])))
        pre["layer1.0.bn1"] = net.layer1[0].conv1(stem)
    modules = dict(net.named_modules())
    for name, a in pre.items():
        bn = modules[name]
        torch.testing.assert_close(bn.running_mean, a.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_var, a.var((0, 2, 3), correction=1), rtol=1e-3, atol=1e-5)

    monkeypatch.setattr(T, "_calibration_batches", lambda *a, **k: pytest.fail("recalibrated despite the cache"))
    assert T.create_resnet152(weights="random", home=tmp_path, calibration_paths=cal[::-1]).id == resnet152.id
    with caplog.at_level(logging.WARNING, logger="artshift.features"):
        auto = T.create_resnet152(weights="auto", home=tmp_path, calibration_paths=cal, allow_download=False)
    assert auto.id == resnet152.id and auto.display_tag == "random-init" and "RANDOM-INIT" in caplog.text


def test_random_ids_change_with_the_seed_and_a_corrupt_cache_is_recomputed(cal, tmp_path, caplog):
    # one calibration photo keeps this cheap
    a, b = (create_small(T.create_resnet152, weights="random", seed=s, home=tmp_path, calibration_paths=cal[:1])
            for s in (0, 1))
    assert a.id != b.id and a.id.split(":")[2] == b.id.split(":")[2]
    (cache,) = (tmp_path / "cache" / "extractors").glob("resnet152-random-v1-seed1-cal*.pt")
    # a corrupt cache is recomputed (same network, same id), with a warning
    cache.write_bytes(b"truncated")
    with caplog.at_level(logging.WARNING, logger="artshift.features"):
        again = create_small(T.create_resnet152, weights="random", seed=1, home=tmp_path, calibration_paths=cal[:1])
    assert again.id == b.id and "unreadable extractor cache" in caplog.text
    torch.load(cache, weights_only=True)  # rewritten whole


def test_random_without_calibration_photos_explains():
    with pytest.raises(ArtshiftError, match="calibration photos") as err:
        T.create_vgg19(weights="random", calibration_paths=[])
    assert "bench weights fetch vgg19" in str(err.value)
    with pytest.raises(ArtshiftError, match="use auto, pretrained or random"):
        T.create_resnet152(weights="imagenet")


# --- pretrained files -------------------------------------------------------------------------

def pin_to(name: str, path: Path, monkeypatch) -> str:
    """Let ``path`` pass as the published file: its own sha256 prefix, no size (as for a real import)."""
    digest = sha256_file(path)
    wf = weights.KNOWN[name]
    monkeypatch.setitem(weights.KNOWN, name, dataclasses.replace(wf, sha256=None, sha256_prefix=digest[:8], size=None))
    return digest


@pytest.mark.parametrize("name", ["vgg19", "resnet152"])
def test_pretrained_file_is_used_and_gives_torchvisions_features(name, batch, tmp_path, monkeypatch):
    torch.manual_seed(3)
    net = BUILD[name]()
    path = tmp_path / weights.KNOWN[name].filename
    torch.save(net.state_dict(), path)
    digest = pin_to(name, path, monkeypatch)
    weights.import_file(name, path)
    create = getattr(T, f"create_{name}")
    auto = create(weights="auto", allow_download=False)
    assert auto.id == f"pretrained:{digest[:12]}" and auto.display_tag == ""
    ex = create(weights="pretrained", allow_download=False)
    assert ex.id == auto.id and ex.display_tag == ""
    x = batch[:2]
    ours = ex(x)
    for k, theirs in zip(ex.layers, plain_features(net, NODES[name], x), strict=True):
        close(ours[k], theirs)


def test_pretrained_missing_or_corrupt_is_an_error(cal, tmp_path, monkeypatch):
    with pytest.raises(ArtshiftError) as err:
        T.create_vgg19(weights="pretrained", allow_download=False)
    assert "bench weights fetch vgg19" in str(err.value) and "bench weights import vgg19" in str(err.value)
    # a present but corrupt file is an error in every mode, never a silent fallback
    for name, create in (("vgg19", T.create_vgg19), ("resnet152", T.create_resnet152)):
        bad = weights.path_of(name)
        bad.write_bytes(b"not a checkpoint")
        for mode in ("auto", "pretrained"):
            with pytest.raises(ArtshiftError):
                create(weights=mode, calibration_paths=cal, allow_download=False)
        bad.unlink()
    # a verified file that is not a ResNet-152 state dict
    path = tmp_path / "resnet152-394f9c45.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    pin_to("resnet152", path, monkeypatch)
    weights.import_file("resnet152", path)
    with pytest.raises(ArtshiftError, match="do not fit torchvision's ResNet-152"):
        T.create_resnet152(weights="pretrained", allow_download=False)


def test_device_is_honoured(batch):
    """Weights, graph and outputs live on the extractor's device (the meta device stands in for a GPU)."""
    state = tvm.resnet152().state_dict()
    for device in ("meta", "cpu"):
        ex = T.TorchvisionExtractor(T.RESNET152, state, id="x", device=device)
        assert {p.device.type for p in ex.network.parameters()} == {device}
        out = ex(batch[:1])
        assert all(v.device.type == device and v.shape == (1, ex.widths[k]) for k, v in out.items())
