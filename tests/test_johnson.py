"""Johnson et al. fast style transfer: the reference's transformation network (parameter count,
sizes), the losses against the reference's definitions and gradients, the photo-domain and
single-image style targets, exact resume, and bad --set values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_methods import check_killed_run_resumes, painting_batch, tiny_data, tiny_run
from PIL import Image

from baselines import johnson as J
from baselines.gatys import gram
from benchmark.core.errors import ArtshiftError
from benchmark.core.profiles import apply_overrides


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("tiny"))


def make(**overrides) -> J.Johnson:
    overrides.setdefault("weights", "random")  # no ImageNet file in tests; labelled random-init
    config = apply_overrides(J.Johnson.default_config("ci"), {k: str(v) for k, v in overrides.items()})
    return J.Johnson(config, "cpu")


# --- the reference's architecture ----------------------------------------------------------------
def test_parameter_count_equals_the_reference_network():
    """jcjohnson/fast-neural-style is Lua Torch, so its network cannot be built here; counted by hand
    from ``models.lua``'s ``build_model`` for the default ``-arch c9s1-32,d64,d128,R128,R128,R128,
    R128,R128,u64,u32,c9s1-3 -use_instance_norm 1`` (every SpatialConvolution / SpatialFull-
    Convolution has a bias; every InstanceNormalization has a weight and a bias of nOutput):
    c9s1-32: 3*32*81 + 32 = 7,808 + IN 64; d64: 32*64*9 + 64 = 18,496 + IN 128; d128: 64*128*9 +
    128 = 73,856 + IN 256; each R128: 2 x (128*128*9 + 128) + 2 x IN 256 = 295,680, x5 = 1,478,400;
    u64: 128*64*9 + 64 = 73,792 + IN 128; u32: 64*32*9 + 32 = 18,464 + IN 64; c9s1-3: 32*3*81 + 3 =
    7,779 (no norm, no ReLU after the last layer). Total 1,679,235."""
    net = J.TransformNet(32, 5)
    assert sum(p.numel() for p in net.parameters()) == 1_679_235
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) and m.affine for m in net.modules()) == 15
    assert net.start_pad == 40  # the reference's reflect-start padding


@pytest.mark.parametrize("size", [64, 96, 256])
def test_output_size_equals_input_size(size):
    net = J.TransformNet(8, 5)
    x = torch.rand(1, 3, size, size) * 2 - 1
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape and float(y.abs().max()) <= 1


def test_init_is_torch7s():
    net = J.TransformNet(8, 2)
    J.init_torch7_(net, torch.Generator().manual_seed(0))
    conv = net.model[0]
    bound = 1 / np.sqrt(9 * 9 * 3)
    assert float(conv.weight.abs().max()) <= bound and float(conv.bias.abs().max()) <= bound
    norm = net.model[1]
    assert 0 <= float(norm.weight.min()) and float(norm.weight.max()) <= 1 and float(norm.bias.abs().max()) == 0


# --- losses ---------------------------------------------------------------------------------------
def reference_tv_grad(x: np.ndarray, strength: float) -> np.ndarray:
    """``TotalVariation:updateGradInput`` transcribed (0-based, gradOutput = 0)."""
    grad = np.zeros_like(x)
    xd = x[..., :-1, :-1] - x[..., :-1, 1:]
    yd = x[..., :-1, :-1] - x[..., 1:, :-1]
    grad[..., :-1, :-1] += xd + yd
    grad[..., :-1, 1:] -= xd
    grad[..., 1:, :-1] -= yd
    return grad * strength


def test_tv_loss_has_the_references_gradient():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 3, 5, 6))
    t = torch.from_numpy(x).requires_grad_(True)
    (1e-6 * J.tv_loss(t)).backward()
    # the reference works on 0-255 pixels: d/dx_ours = 127.5 x d/dx_theirs at x_theirs = 127.5 x_ours
    np.testing.assert_allclose(t.grad.numpy(), 127.5 * reference_tv_grad(127.5 * x, 1e-6), rtol=1e-10)


def test_perceptual_losses_gradcheck_in_float64():
    g = torch.Generator().manual_seed(0)
    out = {"a": torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True),
           "b": torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)}
    grams = {"a": gram(torch.randn(1, 3, 5, 5, generator=g, dtype=torch.float64)),
             "b": gram(torch.randn(1, 2, 6, 6, generator=g, dtype=torch.float64))}
    target = {"a": torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)}
    assert torch.autograd.gradcheck(lambda a, b: J.style_loss({"a": a, "b": b}, grams, ("a", "b")),
                                    (out["a"], out["b"]))
    assert torch.autograd.gradcheck(lambda a: J.content_loss({"a": a}, target, ("a",)), (out["a"],))
    # the style target is broadcast over the batch: MSE against each image's Gram, averaged
    expected = sum(((gram(out[k]) - grams[k]) ** 2).mean() for k in ("a", "b"))
    torch.testing.assert_close(J.style_loss(out, grams, ("a", "b")), expected)


def test_training_loss_reaches_every_weight_of_the_network(tmp_path, home, data):
    method = make()
    run = tiny_run(tmp_path, home)
    method.setup(data, run)
    method.prepare(data, run)
    losses = method.losses(method.batch(0, 0)["A"])
    assert set(losses) == {"content", "style", "tv"} and all(float(v) > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.net_T.parameters())
    assert all(p.grad is None for p in method.vgg.parameters())


def test_photo_domain_target_is_the_mean_of_the_photos_grams(tmp_path, home, data):
    method = make(style_photos=3)
    run = tiny_run(tmp_path, home)
    method.setup(data, run)
    method.prepare(data, run)
    assert len(method.style_sources) == 3
    per_photo = []
    for p in method.style_sources:
        single = make(style_photos=3, style_image=p)
        single.setup(data, run)
        single.vgg = method.vgg  # the same rescaled network
        single.base_weights_id = method.base_weights_id
        grams, _ = single._style_grams(data, run)
        per_photo.append(grams)
    for k in method.config.style_layers:
        torch.testing.assert_close(method.target_grams[k], torch.stack([g[k] for g in per_photo]).mean(0))


def test_configs_follow_the_reference():
    c = J.Johnson.default_config("paper")
    assert (c.ngf, c.n_res, c.batch_size, c.max_iter, c.lr, c.content_weight, c.style_weight, c.tv_weight) == (
        32, 5, 4, 40_000, 1e-3, 1.0, 5.0, 1e-6)
    assert c.content_layers == ("relu2_2",) and c.style_layers == ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
    assert (c.load_size, c.crop_size, c.flip, c.style_size, c.style_image) == (256, 256, False, 256, "")
    assert J.Johnson.label_tags(c) == ("style: mean Gram of 64 photos",)


# --- resume ---------------------------------------------------------------------------------------
def test_killed_run_resumes_to_identical_weights(tmp_path, home, data, monkeypatch):
    straight, again, run = check_killed_run_resumes(lambda: make(checkpoint_every=4), data, tmp_path, home, 5, monkeypatch)
    assert again.weights_id == straight.weights_id and ":meannorm-" in again.weights_id
    x = painting_batch(2, 48, 2)
    assert torch.equal(again.translate(x), straight.translate(x))


# --- the single-image original and bad settings ---------------------------------------------------
def test_single_style_image_trains_and_is_labelled(tmp_path, home, data):
    path = tmp_path / "style.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(path)
    method = make(style_image=path)
    method.fit(data, tiny_run(tmp_path / "run", home))
    assert method.style_sources == [str(path)]
    assert J.Johnson.label_tags(method.config) == ("style image style.png",)


@pytest.mark.parametrize("key,value,message", [
    ("style_image", "missing.png", "style_image='missing.png' is not an image"),
    ("content_layers", "relu9_9", "unknown VGG-19 layer(s) relu9_9"),
    ("weights", "imagenet", "weights='imagenet' is not one of pretrained, random, auto"),
])
def test_bad_settings_are_one_line_errors(key, value, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ArtshiftError) as err:
        apply_overrides(J.Johnson.default_config("smoke"), {key: value})
    assert message in str(err.value).splitlines()[0]


def test_a_file_that_is_not_an_image_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    with pytest.raises(ArtshiftError) as err:
        apply_overrides(J.Johnson.default_config("smoke"), {"style_image": str(path)})
    first = str(err.value).splitlines()[0]
    assert f"style_image='{path}' is not an image" in first
