"""AdaIN: the reference's architecture (parameter counts), AdaIN and the losses against their
definitions, gradients through the losses, exact resume, the style-photo choice, alpha, and
bad --set values."""

from __future__ import annotations

import pytest
import torch
from helpers_methods import check_killed_run_resumes, painting_batch, tiny_data, tiny_run

from baselines import adain as A
from benchmark.core.errors import ArtshiftError
from benchmark.core.profiles import apply_overrides


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("tiny"))


def make(**overrides) -> A.AdaIN:
    overrides.setdefault("weights", "random")  # no ImageNet file in tests; labelled random-init
    config = apply_overrides(A.AdaIN.default_config("ci"), {k: str(v) for k, v in overrides.items()})
    return A.AdaIN(config, "cpu")


# --- the reference's architecture ----------------------------------------------------------------
def test_parameter_counts_equal_the_reference_networks():
    """Counted by building naoto0804/pytorch-AdaIN's own modules (net.py at its HEAD, fetched):
    ``sum(p.numel() for p in net.decoder.parameters())`` = 3,505,219 and, for its encoder
    ``nn.Sequential(*list(net.vgg.children())[:31])`` (the 1x1 BGR/mean conv + VGG-19 to relu4_1),
    3,505,740. By hand, decoder: 3x3 convs 512->256, 3 x 256->256, 256->128, 128->128, 128->64,
    64->64, 64->3, each 9 cin cout + cout = 1,179,904 + 3 x 590,080 + 295,040 + 147,584 + 73,856
    + 36,928 + 1,731 = 3,505,219. Our encoder has no 1x1 conv (its 3 x 3 + 3 = 12 parameters do the
    RGB->BGR swap and mean subtraction that VGGFeatures does as a fixed normalisation)."""
    assert sum(p.numel() for p in A.make_decoder().parameters()) == 3_505_219
    method = make()
    method.load_network(None, None)
    assert sum(p.numel() for p in method.vgg.parameters()) == 3_505_740 - 12
    convs = [m for m in method.vgg.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 9 and convs[-1].out_channels == 512  # conv1_1, 1_2, 2_1, 2_2, 3_1..3_4, 4_1
    assert all(m.padding_mode == "reflect" for m in convs)
    ups = [m for m in A.make_decoder() if isinstance(m, torch.nn.Upsample)]
    assert len(ups) == 3 and all(u.mode == "nearest" for u in ups)
    assert all(isinstance(m, torch.nn.ReflectionPad2d) for m in A.make_decoder()
               if isinstance(m, (torch.nn.ZeroPad2d, torch.nn.ReflectionPad2d)))


# --- AdaIN and the losses ------------------------------------------------------------------------
def test_calc_mean_std_and_adain_match_their_definitions():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64) * 3 + 1
    y = torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64) * 0.5 - 2
    mean, std = A.calc_mean_std(x)
    flat = x.reshape(2, 3, -1)
    torch.testing.assert_close(mean.flatten(), flat.mean(-1).flatten())
    torch.testing.assert_close(std.flatten(), (flat.var(-1, unbiased=True) + 1e-5).sqrt().flatten())
    out = A.adaptive_instance_norm(x, y)
    m_out, s_out = A.calc_mean_std(out)
    m_y, s_y = A.calc_mean_std(y)
    torch.testing.assert_close(m_out, m_y)
    # the output's std equals the style's up to the eps inside the content's std
    torch.testing.assert_close(s_out, s_y, rtol=1e-5, atol=1e-5)


def test_losses_gradcheck_in_float64():
    g = torch.Generator().manual_seed(1)
    out = {k: torch.randn(1, 2, 4, 4, generator=g, dtype=torch.float64, requires_grad=True) for k in A.STYLE_LAYERS}
    sty = {k: torch.randn(1, 2, 3, 3, generator=g, dtype=torch.float64) for k in A.STYLE_LAYERS}
    keys = list(A.STYLE_LAYERS)
    assert torch.autograd.gradcheck(lambda *t: A.style_loss(dict(zip(keys, t)), sty), tuple(out[k] for k in keys))
    c = torch.randn(1, 2, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    s = torch.randn(1, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(A.adaptive_instance_norm, (c, s))


def test_training_loss_reaches_every_decoder_weight_and_no_encoder_weight(tmp_path, home, data):
    method = make()
    run = tiny_run(tmp_path, home)
    method.setup(data, run)
    method.prepare(data, run)
    batch = method.batch(0, 0)
    losses = method.losses(batch["A"], batch["B"])
    assert set(losses) == {"content", "style"}
    (losses["content"] + losses["style"]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.decoder.parameters())
    assert all(not p.requires_grad and p.grad is None for p in method.vgg.parameters())


def test_style_weight_and_schedule_are_the_references():
    c = A.AdaIN.default_config("paper")
    assert (c.style_weight, c.content_weight, c.lr, c.lr_decay, c.batch_size, c.max_iter) == (10.0, 1.0, 1e-4, 5e-5, 8,
                                                                                            160_000)
    assert (c.load_size, c.crop_size, c.flip, c.alpha) == (512, 256, False, 1.0)
    m = A.AdaIN(c)
    assert m.lr_at(0) == 1e-4 and abs(m.lr_at(20_000) - 1e-4 / 2) < 1e-15


# --- resume --------------------------------------------------------------------------------------
def test_killed_run_resumes_to_identical_weights(tmp_path, home, data, monkeypatch):
    straight, again, run = check_killed_run_resumes(lambda: make(checkpoint_every=4), data, tmp_path, home, 2, monkeypatch)
    assert again.weights_id == straight.weights_id and ":meannorm-" in again.weights_id
    x = painting_batch(3, 48, 2)
    assert torch.equal(again.translate(x), straight.translate(x))
    assert (run.run_dir / "weights_id.txt").read_text().startswith("vgg19 random-init:seed0:")


# --- translation ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    home = tmp_path_factory.mktemp("home")
    method = make()
    method.fit(data, tiny_run(tmp_path_factory.mktemp("run"), home))
    return method


def test_style_photo_is_a_pure_function_of_seed_and_painting(trained):
    x = painting_batch(5, 40, 3)
    picks = [A.choose_photo(trained.seed, img, len(trained.photo_paths)) for img in x]
    assert picks == [A.choose_photo(trained.seed, img, len(trained.photo_paths)) for img in x.clone()]
    # a painting's translation does not depend on the batch it is in
    whole = trained.translate(x)
    torch.testing.assert_close(trained.translate(x[1:2]), whole[1:2], rtol=0, atol=1e-6)
    assert len({A.choose_photo(s, x[0], 1000) for s in range(8)}) > 1  # the seed moves the choice


def test_alpha_trades_style_for_content(trained):
    x = painting_batch(6, 32, 1)
    style = trained.style_photo(x[0], 32)
    full, none = trained.stylise(x, style, 1.0), trained.stylise(x, style, 0.0)
    half = trained.stylise(x, style, 0.5)
    assert not torch.equal(full, none) and not torch.equal(half, full)
    assert full.shape == x.shape and float(full.abs().max()) <= 1.0


def test_odd_sizes_translate_to_the_same_size(trained):
    x = painting_batch(7, 45, 1)[..., :37]
    y = trained.translate(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.parametrize("key,value,message", [
    ("alpha", "1.5", "alpha=1.5 is outside [0, 1]"),
    ("alpha", "-0.1", "alpha=-0.1 is outside [0, 1]"),
    ("weights", "imagenet", "weights='imagenet' is not one of pretrained, random, auto"),
    ("vgg_padding", "circular", "vgg_padding='circular' is not one of reflect, zeros"),
])
def test_bad_settings_are_one_line_errors(key, value, message):
    with pytest.raises(ArtshiftError) as err:
        apply_overrides(A.AdaIN.default_config("smoke"), {key: value})
    assert message in str(err.value).splitlines()[0]  # one error line (then the hint line)


def test_translate_before_fit_says_so():
    with pytest.raises(ArtshiftError, match="before fit"):
        make().translate(painting_batch(0, 32, 1))
