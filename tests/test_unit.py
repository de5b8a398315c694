"""UNIT: the reference's networks (parameter counts at paper settings), the paper profile = the
reference config, the losses and their gradients, exact resume, the noise-free translation, and
bad --set values."""

from __future__ import annotations

import pytest
import torch
from helpers_methods import check_killed_run_resumes, painting_batch, tiny_data, tiny_run

from baselines import munit_networks as N
from baselines import unit as U
from benchmark.core.errors import ArtshiftError
from benchmark.core.profiles import apply_overrides


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("tiny"))


def make(**overrides) -> U.UNIT:
    config = apply_overrides(U.UNIT.default_config("ci"), {k: str(v) for k, v in overrides.items()})
    return U.UNIT(config, "cpu")


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_equal_the_reference_networks_at_paper_settings():
    """Counted by building mingyuliutw/UNIT's own classes (networks.py at its HEAD, fetched with the
    fetch tool, imported from a scratch copy) with configs/unit_summer2winter_yosemite256_folder.yaml's
    ``gen`` and ``dis`` blocks: ``VAEGen(3, gen)`` has 11,140,483 parameters and ``MsImageDis(3, dis)``
    8,271,171. The same script loaded the reference VAEGen's weights into this one (ResBlocks keys
    one level shallower) and got the identical auto-encoding of a random batch."""
    c = U.UNIT.default_config("paper")
    assert count(N.VAEGen(3, c.gen_dim, c.n_downsample, c.n_res, c.activ, c.pad_type)) == 11_140_483
    dis = N.MsImageDis(3, c.dis_dim, c.dis_n_layer, c.dis_norm, c.dis_activ, c.num_scales, c.dis_pad_type)
    assert count(dis) == 8_271_171


def test_paper_profile_is_the_reference_config():
    c = U.UNIT.default_config("paper")
    assert (c.gan_w, c.recon_x_w, c.recon_kl_w, c.recon_x_cyc_w, c.recon_kl_cyc_w) == (1, 10, 0.01, 10, 0.01)
    assert (c.max_iter, c.batch_size, c.weight_decay, c.beta1, c.beta2, c.init, c.lr, c.step_size, c.gamma) == (
        1_000_000, 1, 1e-4, 0.5, 0.999, "kaiming", 1e-4, 100_000, 0.5)
    assert (c.gen_dim, c.n_downsample, c.n_res, c.dis_dim, c.dis_n_layer, c.num_scales) == (64, 2, 4, 64, 4, 3)
    assert (c.load_size, c.crop_size, c.flip) == (256, 256, True)


def test_kl_term_gradcheck_and_value():
    h = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(U.kl, (h,))
    torch.testing.assert_close(U.kl(h), (h ** 2).mean())


def test_gradients_of_each_update_reach_its_own_networks_only(tmp_path, home, data):
    method = make()
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
    assert set(g) == {"adv_a", "adv_b", "recon_x_a", "recon_x_b", "kl_a", "kl_b", "kl_cyc_aba", "kl_cyc_bab",
                      "cyc_x_a", "cyc_x_b"}
    sum(g.values()).backward()
    for name in ("gen_a", "gen_b"):
        net = method.networks()[name]
        missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, f"{name}: no gradient for {missing}"


def test_killed_run_resumes_to_identical_weights(tmp_path, home, data, monkeypatch):
    straight, again, run = check_killed_run_resumes(lambda: make(checkpoint_every=4), data, tmp_path, home, 6, monkeypatch)
    x = painting_batch(2, 48, 2)
    y = again.translate(x)
    assert torch.equal(y, straight.translate(x))
    # translation uses the mean code: no noise, the same output every call
    assert torch.equal(y, again.translate(x))
    with torch.no_grad():
        expected = again.gen_b.decode(again.gen_a.enc(x)).clamp(-1, 1)
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize("key,value,message", [
    ("recon_kl_w", "-1", "recon_kl_w=-1.0 is outside [0, inf]"),
    ("dis_norm", "bn", "dis_norm='bn' is not one of none, in, ln"),
    ("style", "random", "has no such setting"),
])
def test_bad_settings_are_one_line_errors(key, value, message):
    with pytest.raises(ArtshiftError) as err:
        apply_overrides(U.UNIT.default_config("smoke"), {key: value})
    assert message in str(err.value).splitlines()[0]
