"""CycleGAN and the shared network blocks: exact resume, divergence handling, shapes, pool, schedule."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
from helpers_methods import assert_states_equal, flat_state, painting_batch, tiny_data, tiny_run

from baselines.cyclegan import CycleGAN
from baselines.networks import (
    ImagePool,
    PatchDiscriminator,
    ResnetGenerator,
    init_weights,
    lsgan_loss,
    receptive_field,
)
from benchmark.core.profiles import apply_overrides
from benchmark.pipeline.training import CHECKPOINT, TrainingDiverged, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("tiny"))


def make(**overrides) -> CycleGAN:
    config = apply_overrides(CycleGAN.default_config("ci"), {k: str(v) for k, v in overrides.items()})
    return CycleGAN(config, "cpu")


# --- (d) exact resume ---------------------------------------------------------------------
RESUME = dict(pool_size=3, use_dropout=True, checkpoint_every=4)  # pool swaps and dropout draw RNG


def test_killed_run_resumes_to_identical_weights(tmp_path, home, data, monkeypatch):
    straight = make(**RESUME)
    assert train(straight, data, tiny_run(tmp_path / "a", home, seed=3, deterministic=True)) == 20

    run = tiny_run(tmp_path / "b", home, seed=3, deterministic=True)
    assert train(make(**RESUME), data, run, stop_after=7) == 7  # stopped between checkpoints

    # a crash mid-run: the process dies in iteration 10; the checkpoint of iteration 8 survives
    crashing = make(**RESUME)
    real_step = crashing.train_step

    def dying_step(batch, iteration):
        if iteration == 10:
            raise KeyboardInterrupt
        return real_step(batch, iteration)

    monkeypatch.setattr(crashing, "train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train(crashing, data, run)
    assert torch.load(run.checkpoint_dir / CHECKPOINT, weights_only=True)["iteration"] == 8

    resumed = make(**RESUME)
    assert train(resumed, data, run) == 20
    assert len(resumed.fake_A_pool) == 3  # the pool was full, so the swap branch ran
    assert_states_equal(straight.state_dict(), resumed.state_dict())
    ckpt_a = torch.load(tmp_path / "a" / "checkpoints" / CHECKPOINT, weights_only=True)
    ckpt_b = torch.load(run.checkpoint_dir / CHECKPOINT, weights_only=True)
    assert_states_equal(ckpt_a, ckpt_b)

    # a finished run: fit only loads the final checkpoint (no image loading)
    again = make(**RESUME)
    monkeypatch.setattr(again, "prepare", lambda *a: pytest.fail("prepare() called on a finished run"))
    again.fit(data, run)
    assert_states_equal(straight.state_dict(), again.state_dict())


def test_seed_changes_initial_weights_and_training(tmp_path, home, data):
    a, b = make(), make()
    train(a, data, tiny_run(tmp_path / "a", home, seed=0), stop_after=1)
    train(b, data, tiny_run(tmp_path / "b", home, seed=1), stop_after=1)
    assert not torch.equal(a.G_A.stem[0].weight, b.G_A.stem[0].weight)


def test_checkpoint_loads_with_weights_only(tmp_path, home, data):
    method = make()
    run = tiny_run(tmp_path / "r", home)
    train(method, data, run, stop_after=2)
    state = torch.load(run.checkpoint_dir / CHECKPOINT, weights_only=True)
    assert state["iteration"] == 2
    assert {"G_A", "G_B", "D_A", "D_B", "opt_G", "opt_D", "fake_A_pool", "fake_B_pool"} <= set(state["method"])
    assert state["method"]["fake_B_pool"]["count"] == 2


# --- divergence ---------------------------------------------------------------------------
def test_nan_loss_raises_and_keeps_last_good_checkpoint(tmp_path, home, data, monkeypatch):
    run = tiny_run(tmp_path / "r", home)
    ckpt = run.checkpoint_dir / CHECKPOINT
    train(make(checkpoint_every=5), data, run, stop_after=10)
    before = hashlib.sha256(ckpt.read_bytes()).hexdigest()

    method = make(checkpoint_every=5)
    calls = []

    def poisoned(real_A, fake_B):  # iteration 12 (the third call after resuming at 10) blows up
        calls.append(1)
        return {"boom": fake_B.mean() * (math.nan if len(calls) == 3 else 0.0)}

    monkeypatch.setattr(method, "extra_generator_losses", poisoned)
    with pytest.raises(TrainingDiverged) as err:
        train(method, data, run)
    msg = str(err.value)
    assert "iteration 12" in msg and "boom" in msg and "G_A" in msg and "cycle_A" in msg
    assert str(ckpt) in msg
    assert not all(torch.isfinite(p).all() for p in method.G_A.parameters())  # the NaN reached the weights ...
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == before  # ... but not the checkpoint
    state = torch.load(ckpt, weights_only=True)
    assert state["iteration"] == 10
    assert all(torch.isfinite(t).all() for t in flat_state(state["method"]).values() if torch.is_tensor(t))
    assert train(make(checkpoint_every=5), data, run) == 20  # and a fixed run resumes from it


# --- networks -----------------------------------------------------------------------------
@pytest.mark.parametrize("size", [64, 256])
def test_generator_is_fully_convolutional(size):
    torch.manual_seed(0)
    g = init_weights(ResnetGenerator(ngf=8, n_blocks=2))
    x = torch.rand(2, 3, size, size) * 2 - 1
    y = g(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    feats = g.encode(x, ["pad", "stem", "down1", "down2", "res1", "down1_conv"])
    expected = [(3, size + 6), (8, size), (16, size // 2), (32, size // 4), (32, size // 4), (16, size // 2)]
    assert [(f.shape[1], f.shape[-1]) for f in feats] == expected
    out, feats2 = g.forward_with_features(x, ["res2", "pad", "down1"])
    assert torch.allclose(out, y, atol=1e-6)
    assert torch.equal(feats2[1], feats[0]) and torch.allclose(feats2[2], feats[2])
    # taps are what they claim: "pad" is the reflection-padded input, "res2" feeds the decoder
    assert torch.equal(feats[0][..., 3:-3, 3:-3], x)
    assert torch.allclose(g.decode(feats2[0]), y, atol=1e-6)
    with pytest.raises(ValueError, match="res3"):
        g.encode(x, ["res3"])


def test_translate_any_size_at_test_resolution():
    method = make()
    for shape in [(2, 3, 64, 64), (1, 3, 256, 256), (1, 3, 50, 70)]:
        x = torch.rand(*shape) * 2 - 1
        y = method.translate(x)
        assert y.shape == x.shape and torch.isfinite(y).all() and y.abs().max() <= 1
    assert method.G_A.training  # translate restores the mode


def test_translate_uses_painting_to_photo_generator_in_eval_mode():
    method = make(use_dropout=True)
    x = painting_batch(size=32)
    with torch.no_grad():
        method.G_A.eval()
        expected = method.G_A(x)
        method.G_A.train()
    assert torch.equal(method.translate(x), expected)  # dropout off, G_A not G_B


def test_patchgan_receptive_field_is_70():
    d = PatchDiscriminator(ndf=4, n_layers=3, norm="none")
    assert receptive_field(d) == 70
    with torch.no_grad():  # positive weights: no cancellations hide the dependence
        for p in d.parameters():
            p.fill_(0.01)
    d.model = torch.nn.Sequential(*[m for m in d.model if not isinstance(m, torch.nn.LeakyReLU)])
    x = torch.rand(1, 3, 160, 160, requires_grad=True)
    out = d(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = x.grad[0].abs().sum(dim=(0, 2)).nonzero()
    assert int(rows.max() - rows.min() + 1) == 70


def test_init_weights_statistics_and_seed():
    g = ResnetGenerator(ngf=16, n_blocks=2)
    init_weights(g, 0.02, torch.Generator().manual_seed(5))
    w = torch.cat([m.weight.detach().flatten() for m in g.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(float(w.std()) - 0.02) < 0.001 and abs(float(w.mean())) < 0.001
    assert all(float(m.bias.detach().abs().max()) == 0 for m in g.modules() if isinstance(m, torch.nn.Conv2d))
    norms = [m for m in g.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert norms and all(not m.affine and not m.track_running_stats for m in norms)
    h = init_weights(ResnetGenerator(ngf=16, n_blocks=2), 0.02, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(g.state_dict().values(), h.state_dict().values(), strict=True))


def test_lsgan_loss_matches_float64():
    pred = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    p64 = pred.double()
    assert math.isclose(float(lsgan_loss(pred, True)), float(((p64 - 1) ** 2).mean()), rel_tol=1e-6)
    assert math.isclose(float(lsgan_loss(pred, False)), float((p64 ** 2).mean()), rel_tol=1e-6)


# --- image pool ---------------------------------------------------------------------------
def _images(n, start=0):
    return torch.arange(start, start + n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 2, 2).clone()


def test_image_pool_fills_then_swaps_half_the_time():
    torch.manual_seed(0)
    pool = ImagePool(5)
    first = _images(5)
    assert torch.equal(pool.query(first), first) and len(pool) == 5
    returned_old = 0
    for step in range(400):
        new = _images(1, 100 + step)
        stored_before = {float(t[0, 0, 0, 0]) for t in pool.images}
        out = pool.query(new)
        stored_after = {float(t[0, 0, 0, 0]) for t in pool.images}
        got = float(out[0, 0, 0, 0])
        if got == 100 + step:  # kept: the pool is unchanged
            assert stored_after == stored_before
        else:  # swapped: a stored image came out and the new one took its place
            returned_old += 1
            assert got in stored_before and stored_after == (stored_before - {got}) | {100.0 + step}
    assert 160 < returned_old < 240  # p = 1/2
    assert torch.equal(ImagePool(0).query(first), first)


def test_image_pool_state_roundtrip_reproduces_choices():
    torch.manual_seed(1)
    pool = ImagePool(4)
    pool.query(_images(6))
    copy = ImagePool(4)
    copy.load_state_dict(torch.load(_save(pool.state_dict()), weights_only=True))
    torch.manual_seed(2)
    a = pool.query(_images(10, 50))
    torch.manual_seed(2)
    b = copy.query(_images(10, 50))
    assert torch.equal(a, b)
    with pytest.raises(ValueError):
        ImagePool(3).load_state_dict(pool.state_dict())


def _save(obj):
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


# --- schedule and data --------------------------------------------------------------------
def test_learning_rate_follows_reference_lambda_rule():
    method = CycleGAN(CycleGAN.default_config("paper"))
    method.config.epoch_size = 3
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 - max(0, e + 1 - 100) / float(100 + 1))
    for epoch in range(200):
        for it in range(epoch * 3, epoch * 3 + 3):
            assert math.isclose(method.lr_at(it), opt.param_groups[0]["lr"], rel_tol=1e-12)
        opt.step()
        sched.step()
    assert method.total_iterations() == 600
    assert math.isclose(method.lr_at(599), 2e-4 / 101)


def test_epoch_is_the_larger_domain_and_visits_every_painting(tmp_path, home):
    data = tiny_data(tmp_path / "d", n_paintings=4, n_photos=7)
    method = make(epoch_size="none", load_size=32, flip=False)
    run = tiny_run(tmp_path / "r", home)
    method.setup(data, run)
    assert method.epoch_size == 7 and method.total_iterations() == 14
    method.prepare(data, run)
    as_float = method.paintings.float() / 127.5 - 1.0
    for epoch in range(2):
        seen = []
        for it in range(epoch * 7, epoch * 7 + 7):
            batch = method.batch(5, it)
            assert batch["A"].shape == batch["B"].shape == (1, 3, 32, 32)
            seen.append(int(((as_float - batch["A"]).abs().flatten(1).amax(1) < 1e-6).nonzero()))
        assert sorted(set(seen)) == [0, 1, 2, 3] and len(seen) == 7  # perm of 7 taken mod 4


def test_batch_is_a_pure_function_of_seed_and_iteration(tmp_path, home, data):
    method = make()
    run = tiny_run(tmp_path / "r", home)
    method.setup(data, run)
    method.prepare(data, run)
    first = method.batch(0, 13)
    torch.manual_seed(123)  # global RNG state must not matter
    method.batch(0, 2), method.batch(1, 13)
    again = method.batch(0, 13)
    assert all(torch.equal(first[k], again[k]) for k in "AB")
    assert not torch.equal(first["B"], method.batch(1, 13)["B"])
    assert first["A"].dtype == torch.float32 and -1 <= float(first["A"].min()) and float(first["A"].max()) <= 1
