"""Instance norm and memory layout: torch 2.14's CPU instance norm gets the backward wrong for a
channels-last gradient at batch 1, so no training loss may hand it one (CUT's PatchNCE did)."""

from __future__ import annotations

import pytest
import torch
from helpers_methods import tiny_data, tiny_run

from baselines.cut import CUT, FastCUT
from baselines.cyclegan import CycleGAN
from baselines.networks import LayoutSafeInstanceNorm, use_layout_safe_norms_
from benchmark.profiles import apply_overrides
from benchmark.training import iteration_seed, seed_everything
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
