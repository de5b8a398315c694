"""MUNIT: the reference's networks (parameter counts at paper settings), losses and gradients,
the paper profile = the reference config, the step schedule, exact resume, the per-painting
style code (random / reference), and bad --set values."""

from __future__ import annotations

import pytest
import torch
from helpers_methods import check_killed_run_resumes, painting_batch, tiny_data, tiny_run

from baselines import munit as MU
from baselines import munit_networks as N
from baselines.adain import choose_photo
from benchmark.core.errors import ArtshiftError
from benchmark.core.profiles import apply_overrides


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("tiny"))


def make(**overrides) -> MU.MUNIT:
    config = apply_overrides(MU.MUNIT.default_config("ci"), {k: str(v) for k, v in overrides.items()})
    return MU.MUNIT(config, "cpu")


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- the reference's networks ---------------------------------------------------------------------
def test_parameter_counts_equal_the_reference_networks_at_paper_settings():
    """Counted by building NVlabs/MUNIT's own classes (networks.py at its HEAD, fetched with the
    fetch tool, imported from a scratch copy) with configs/edges2shoes_folder.yaml's ``gen`` and
    ``dis`` blocks: ``AdaINGen(3, gen)`` has 15,026,187 parameters (enc_style 2,764,936,
    enc_content 5,385,856, dec 5,754,627, mlp 1,120,768) and ``MsImageDis(3, dis)`` 8,271,171.
    The same scratch script loaded the reference modules' weights into these ones (keys renamed:
    the reference nests ResBlocks one level deeper and wraps Linear in LinearBlock; its AdaIN's
    dummy running buffers dropped) and got identical content and style codes and discriminator
    outputs, and decoder outputs within 4e-6 (F.batch_norm vs F.instance_norm)."""
    c = MU.MUNIT.default_config("paper")
    gen = N.AdaINGen(3, c.gen_dim, c.style_dim, c.n_downsample, c.n_res, c.activ, c.pad_type, c.mlp_dim)
    assert (count(gen), count(gen.enc_style), count(gen.enc_content), count(gen.dec), count(gen.mlp)) == (
        15_026_187, 2_764_936, 5_385_856, 5_754_627, 1_120_768)
    dis = N.MsImageDis(3, c.dis_dim, c.dis_n_layer, c.dis_norm, c.dis_activ, c.num_scales, c.dis_pad_type)
    assert count(dis) == 8_271_171
    assert len(gen.adain_layers) == 2 * c.n_res and gen.mlp.model[-1].out_features == 2 * 2 * c.n_res * 256


def test_paper_profile_is_the_reference_config():
    """configs/edges2shoes_folder.yaml (summer2winter differs only in recon_x_cyc_w: 10)."""
    c = MU.MUNIT.default_config("paper")
    assert (c.max_iter, c.batch_size, c.weight_decay, c.beta1, c.beta2, c.init, c.lr, c.step_size, c.gamma) == (
        1_000_000, 1, 1e-4, 0.5, 0.999, "kaiming", 1e-4, 100_000, 0.5)
    assert (c.gan_w, c.recon_x_w, c.recon_s_w, c.recon_c_w, c.recon_x_cyc_w) == (1, 10, 1, 1, 0)
    assert (c.gen_dim, c.mlp_dim, c.style_dim, c.activ, c.n_downsample, c.n_res, c.pad_type) == (
        64, 256, 8, "relu", 2, 4, "reflect")
    assert (c.dis_dim, c.dis_norm, c.dis_activ, c.dis_n_layer, c.num_scales, c.dis_pad_type) == (
        64, "none", "lrelu", 4, 3, "reflect")
    assert (c.load_size, c.crop_size, c.flip, c.style) == (256, 256, True, "random")


def test_step_schedule_matches_steplr_stepped_before_each_iteration():
    method = MU.MUNIT(apply_overrides(MU.MUNIT.default_config("ci"), {"step_size": "3", "max_iter": "12"}))
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=method.config.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    for it in range(12):
        opt.step()
        sched.step()  # train.py: trainer.update_learning_rate() at the top of every iteration
        assert abs(method.lr_at(it) - opt.param_groups[0]["lr"]) < 1e-15


# --- losses and gradients -------------------------------------------------------------------------
def test_lsgan_and_recon_losses_gradcheck_in_float64():
    g = torch.Generator().manual_seed(0)
    fake = [torch.randn(1, 1, s, s, generator=g, dtype=torch.float64, requires_grad=True) for s in (4, 2)]
    real = [torch.randn(1, 1, s, s, generator=g, dtype=torch.float64, requires_grad=True) for s in (4, 2)]
    assert torch.autograd.gradcheck(lambda a, b, c, d: N.dis_loss([a, b], [c, d]), (*fake, *real))
    assert torch.autograd.gradcheck(lambda a, b: N.gen_loss([a, b]), tuple(fake))
    x = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True) + 0.1
    y = torch.randn(2, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: N.recon_criterion(t, y), (x,))
    torch.testing.assert_close(N.dis_loss([fake[0]], [real[0]]), (fake[0] ** 2).mean() + ((real[0] - 1) ** 2).mean())


def test_adain_and_layer_norm_match_the_references_formulas():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64)
    m = N.AdaptiveInstanceNorm2d(3)
    m.mean, m.std = torch.randn(2, 3, generator=g, dtype=torch.float64), torch.rand(2, 3, generator=g, dtype=torch.float64)
    # the reference: F.batch_norm over a [1, B*C, H, W] view in training mode, weight=std, bias=mean
    ref = torch.nn.functional.batch_norm(x.reshape(1, 6, 5, 4), torch.zeros(6, dtype=torch.float64),
                                         torch.ones(6, dtype=torch.float64), m.std.reshape(-1), m.mean.reshape(-1),
                                         True, 0.1, 1e-5).view(2, 3, 5, 4)
    torch.testing.assert_close(m(x), ref)
    ln = N.LayerNorm(3).double()
    flat = x.reshape(2, -1)
    expected = (x - flat.mean(1).view(2, 1, 1, 1)) / (flat.std(1).view(2, 1, 1, 1) + 1e-5)
    torch.testing.assert_close(ln(x), expected * ln.gamma.view(1, 3, 1, 1) + ln.beta.view(1, 3, 1, 1))


def test_gradients_of_each_update_reach_its_own_networks_only(tmp_path, home, data):
    method = make(recon_x_cyc_w=10)
    run = tiny_run(tmp_path, home)
    method.setup(data, run)
    method.prepare(data, run)
    b = method.batch(0, 0)
    d = method.dis_losses(b["A"], b["B"])
    (d["D_a"] + d["D_b"]).backward()
    assert all(p.grad is not None for net in (method.dis_a, method.dis_b) for p in net.parameters())
    assert all(p.grad is None for net in (method.gen_a, method.gen_b) for p in net.parameters())
    for net in method.networks().values():
        net.zero_grad(set_to_none=True)
    g = method.gen_losses(b["A"], b["B"])
    assert set(g) == {"adv_a", "adv_b", "recon_x_a", "recon_x_b", "recon_s_a", "recon_s_b", "recon_c_a",
                      "recon_c_b", "cyc_x_a", "cyc_x_b"}
    sum(g.values()).backward()
    for name in ("gen_a", "gen_b"):
        net = method.networks()[name]
        missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, f"{name}: no gradient for {missing}"


def test_train_step_changes_every_network(tmp_path, home, data):
    method = make()
    run = tiny_run(tmp_path, home)
    method.setup(data, run)
    method.prepare(data, run)
    before = {k: [p.detach().clone() for p in net.parameters()] for k, net in method.networks().items()}
    losses = method.train_step(method.batch(0, 0), 0)
    assert "cyc_x_a" not in losses and all(torch.isfinite(v) for v in losses.values())
    for k, net in method.networks().items():
        assert any(not torch.equal(a, b) for a, b in zip(before[k], net.parameters(), strict=True)), k


# --- resume ---------------------------------------------------------------------------------------
def test_killed_run_resumes_to_identical_weights(tmp_path, home, data, monkeypatch):
    straight, again, run = check_killed_run_resumes(lambda: make(checkpoint_every=4, step_size=3), data, tmp_path, home, 4, monkeypatch)
    x = painting_batch(2, 48, 2)
    assert torch.equal(again.translate(x), straight.translate(x))


# --- translation ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    method = make()
    method.fit(data, tiny_run(tmp_path_factory.mktemp("run"), tmp_path_factory.mktemp("home")))
    return method


def test_random_style_code_is_fixed_per_painting(trained):
    x = painting_batch(5, 40, 3)
    whole = trained.translate(x)
    torch.testing.assert_close(trained.translate(x[2:3]), whole[2:3], rtol=0, atol=1e-6)
    codes = [trained.style_code(img) for img in x]
    assert not torch.equal(codes[0], codes[1])
    assert torch.equal(codes[0], trained.style_code(x[0].clone()))
    assert codes[0].shape == (1, 8, 1, 1)


def test_reference_style_encodes_a_training_photo(trained, monkeypatch):
    x = painting_batch(6, 32, 2)
    monkeypatch.setattr(trained.config, "style", "reference")
    code = trained.style_code(x[0])
    i = choose_photo(trained.seed, x[0], len(trained.photo_paths))
    from baselines.gatys import _resize_short, _to_float
    from benchmark.data import load_image

    photo = _resize_short(_to_float([load_image(trained.photo_paths[i])]), 32)
    with torch.no_grad():
        torch.testing.assert_close(code, trained.gen_b.encode(photo)[1])
    y = trained.translate(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_style_choice_is_in_the_run_id_and_label():
    from benchmark.core.spec import RunSpec

    default = MU.MUNIT.default_config("smoke")
    ref = apply_overrides(default, {"style": "reference"})
    spec = lambda config, overrides: RunSpec.make("munit", "cezanne", "smoke", 0, overrides, "fp",  # noqa: E731
                                                  config=config, method_version=MU.MUNIT.VERSION)
    assert spec(default, {}).run_id != spec(ref, {"style": "reference"}).run_id
    # the default is in the id too: through the hash of the resolved config (spec.json holds the config)
    assert spec(default, {}).config_hash != spec(ref, {}).config_hash
    assert MU.MUNIT.label_tags(default) == ("style random",)
    assert ref.style == "reference" and MU.MUNIT.label_tags(ref) == ("style reference",)


@pytest.mark.parametrize("key,value,message", [
    ("style", "photo", "style='photo' is not one of random, reference"),
    ("init", "orthogonal", "init='orthogonal' is not one of kaiming, gaussian, xavier"),
    ("crop_size", "16", "too small for num_scales=3"),
    ("gamma", "2", "gamma=2.0 is outside [0, 1]"),
])
def test_bad_settings_are_one_line_errors(key, value, message):
    with pytest.raises(ArtshiftError) as err:
        apply_overrides(MU.MUNIT.default_config("smoke"), {key: value} if key != "crop_size" else
                        {"crop_size": value, "load_size": value})
    assert message in str(err.value).splitlines()[0]
