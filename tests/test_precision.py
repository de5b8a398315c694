"""Mixed precision of the GAN methods (config ``precision`` / ``channels_last``): refused values,
the run id, bf16 + channels_last training and translation, channels_last changing no numbers
(and the instance-norm layout bug it ran into), fp16's loss scaler in the checkpoint and exact
resume in bf16."""

from __future__ import annotations

import pytest
import torch
from helpers_methods import painting_batch, tiny_data, tiny_run

from baselines.cut import CUT, FastCUT
from baselines.cyclegan import CycleGAN
from baselines.networks import LayoutSafeInstanceNorm, use_layout_safe_norms_
from benchmark.core.errors import ArtshiftError
from benchmark.core.profiles import apply_overrides
from benchmark.core.spec import RunSpec, config_hash
from benchmark.pipeline.training import CHECKPOINT, iteration_seed, seed_everything, train
from methods.ours import MemoryBankCycleGAN

# narrower than ci so the tests stay fast on a loaded 2-core machine
SMALL = {"ngf": "4", "ndf": "4"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("tiny"))


def make(cls, **overrides):
    config = apply_overrides(cls.default_config("ci"), {**SMALL, **{k: str(v) for k, v in overrides.items()}})
    return cls(config, "cpu")


def steps(method, data, run, n):
    """``n`` training steps as the training loop makes them (seeded per iteration), losses as floats."""
    method.setup(data, run)
    method.prepare(data, run)
    out = []
    for it in range(n):
        seed_everything(iteration_seed(run.seed, it))
        out.append({k: float(v) for k, v in method.train_step(method.batch(run.seed, it), it).items()})
    return out


@pytest.mark.parametrize("cls", [CycleGAN, CUT, MemoryBankCycleGAN])
def test_unknown_precision_is_refused_with_the_valid_ones(cls):
    with pytest.raises(ArtshiftError, match=r"precision='fp8' is not one of fp32, bf16, fp16"):
        apply_overrides(cls.default_config("ci"), {"precision": "fp8"})
    assert cls.default_config("paper").precision == "fp32" and not cls.default_config("smoke").channels_last


def test_precision_and_memory_format_change_the_run_id():
    base = CycleGAN.default_config("smoke")
    ids = set()
    for sets in ({}, {"precision": "bf16"}, {"channels_last": "true"}, {"precision": "bf16", "channels_last": "true"}):
        config = apply_overrides(base, sets)
        ids.add(RunSpec.make("cyclegan", "cezanne", "smoke", 0, sets, "fp", config=config).run_id)
        ids.add(config_hash(config))
    assert len(ids) == 8


@pytest.mark.parametrize("cls", [CycleGAN, CUT, MemoryBankCycleGAN])
def test_bf16_channels_last_trains_and_translates(cls, data, tmp_path, home):
    method = make(cls, precision="bf16", channels_last="true")
    run = tiny_run(tmp_path / "run", home)
    assert train(method, data, run, stop_after=2) == 2
    for net in method.networks().values():
        for p in net.parameters():  # the weights (and so the optimiser state) stay float32
            assert p.dtype == torch.float32 and torch.isfinite(p).all()
            if p.dim() == 4:
                assert p.is_contiguous(memory_format=torch.channels_last)
    losses = method.train_step(method.batch(0, 2), 2)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    out = method.translate(painting_batch(size=36, n=2))  # not a multiple of 4: padded and cropped back
    assert out.shape == (2, 3, 36, 36) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.abs().max() <= 1


def no_updates(method):
    """Keep the gradients of a step: every optimiser's step does nothing."""
    for name, opt in vars(method).items():
        if name.startswith("opt_"):
            opt.step = lambda *a, **k: None
    return method


def weight_grads(method, data, run):
    steps(no_updates(method), data, run, 1)
    return {f"{k}.{n}": p.grad.clone() for k, net in method.networks().items()
            for n, p in net.named_parameters() if p.grad is not None and p.dim() > 1}


def test_layout_safe_instance_norm_is_instance_norm():
    """Same values and gradients as nn.InstanceNorm2d in float64; with a channels-last gradient at
    batch 1 it stays right where torch's own instance norm (torch 2.14, CPU) does not."""
    torch.manual_seed(0)
    x = torch.randn(1, 8, 6, 6, dtype=torch.float64, requires_grad=True)
    g = torch.randn(1, 8, 6, 6, dtype=torch.float64)
    ours, theirs = LayoutSafeInstanceNorm(8), torch.nn.InstanceNorm2d(8)
    assert torch.allclose(ours(x), theirs(x), atol=1e-12)
    (ref,) = torch.autograd.grad(theirs(x), x, g)
    for grad in (g, g.contiguous(memory_format=torch.channels_last)):
        (got,) = torch.autograd.grad(ours(x), x, grad)
        assert torch.allclose(got, ref, atol=1e-10)
    assert torch.autograd.gradcheck(lambda t: (ours(t) * g).sum(), (x,))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # statistics in float32, result in the input's type
        assert ours(x.to(torch.bfloat16)).dtype == torch.bfloat16


@pytest.mark.parametrize("cls", [CycleGAN, CUT, FastCUT, MemoryBankCycleGAN])
def test_training_gradients_do_not_depend_on_the_instance_norm_kernel(cls, data, tmp_path, home):
    """One step's weight gradients with torch's instance norm equal those with the layout-safe one.

    Fails where a loss hands torch's instance norm a channels-last gradient at batch 1 (its
    backward is wrong then): CUT's PatchNCE did so through ``gather_patches`` until version 3.
    """
    plain = weight_grads(make(cls), data, tiny_run(tmp_path / "a", home))
    safe = make(cls)
    for net in safe.networks().values():
        use_layout_safe_norms_(net)
    swapped = weight_grads(safe, data, tiny_run(tmp_path / "b", home))
    for name, g in plain.items():
        # the wrong gradients were off by more than their own size; float32 rounding (through the
        # L1 losses' sign, which flips where two images agree to the last bit) stays below 1%
        assert (g - swapped[name]).abs().max() <= 0.05 * g.abs().max(), name


@pytest.mark.parametrize("cls", [CycleGAN, CUT])
def test_channels_last_fp32_gives_the_same_losses(cls, data, tmp_path, home):
    plain = steps(make(cls), data, tiny_run(tmp_path / "a", home), 3)
    nhwc = steps(make(cls, channels_last="true"), data, tiny_run(tmp_path / "b", home), 3)
    for a, b in zip(plain, nhwc, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), k


def test_bf16_losses_stay_near_fp32(data, tmp_path, home):
    fp32 = steps(make(CycleGAN), data, tiny_run(tmp_path / "a", home), 2)
    bf16 = steps(make(CycleGAN, precision="bf16"), data, tiny_run(tmp_path / "b", home), 2)
    for a, b in zip(fp32, bf16, strict=True):
        for k in ("cycle_A", "cycle_B", "idt_A", "idt_B"):  # L1 terms of O(1): bf16 keeps ~3 digits
            assert b[k] == pytest.approx(a[k], rel=0.05), k
        assert a != b  # bf16 did run: the numbers are not bit-identical


def test_fp16_scaler_is_checkpointed_and_restored(data, tmp_path, home):
    method = make(CycleGAN, precision="fp16")
    run = tiny_run(tmp_path / "run", home)
    train(method, data, run, stop_after=1)
    saved = torch.load(run.checkpoint_dir / CHECKPOINT, weights_only=True)["method"]
    assert saved["scaler"]["scale"] == method.scaler.get_scale() > 0
    fresh = make(CycleGAN, precision="fp16")
    fresh.load_state_dict({**saved, "scaler": {**saved["scaler"], "scale": 123.0, "_growth_tracker": 7}})
    assert fresh.scaler.get_scale() == 123.0 and fresh.scaler.state_dict()["_growth_tracker"] == 7
    assert "scaler" not in make(CycleGAN).state_dict()  # fp32 checkpoints hold what they held before


def test_bf16_channels_last_resumes_exactly(data, tmp_path, home):
    straight = make(CycleGAN, precision="bf16", channels_last="true", checkpoint_every=2)
    train(straight, data, tiny_run(tmp_path / "a", home, seed=2), stop_after=4)
    run = tiny_run(tmp_path / "b", home, seed=2)
    train(make(CycleGAN, precision="bf16", channels_last="true", checkpoint_every=2), data, run, stop_after=2)
    resumed = make(CycleGAN, precision="bf16", channels_last="true", checkpoint_every=2)
    assert train(resumed, data, run, stop_after=2) == 4
    for key, net in straight.networks().items():
        for (name, a), b in zip(net.state_dict().items(), resumed.networks()[key].state_dict().values(), strict=True):
            assert torch.equal(a, b), f"{key}.{name}"
