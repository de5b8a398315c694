"""Shared network blocks: reflection padding that is legal under deterministic algorithms,
the anti-aliasing filters against their formulas, receptive fields, init statistics, and
state-dict keys that old checkpoints depend on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from baselines.networks import (
    BlurDownsample,
    BlurUpsample,
    PatchDiscriminator,
    ReflectionPad,
    ResnetGenerator,
    binomial_filter,
    init_weights,
    receptive_field,
    reflection_pad,
)


@pytest.fixture
def deterministic():
    """torch's deterministic mode on for one test, restored afterwards."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def autograd_nodes(t: torch.Tensor) -> set[str]:
    """Names of every backward node that produced ``t``."""
    seen, names, stack = set(), set(), [t.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        stack.extend(f for f, _ in fn.next_functions)
    return names


# --- reflection padding ------------------------------------------------------------------------
PADS = [1, 2, 3, (1, 2, 0, 3), (0, 0, 2, 1), (3, 0, 1, 0)]
SHAPES = [(2, 3, 8, 8), (1, 2, 7, 9), (1, 1, 5, 4), (2, 1, 4, 11)]


@pytest.mark.parametrize("pad", PADS)
@pytest.mark.parametrize("shape", SHAPES)
def test_flipped_slice_padding_equals_reflection_pad_values_and_gradients(pad, shape):
    sides = (pad,) * 4 if isinstance(pad, int) else pad
    gen = torch.Generator().manual_seed(sum(shape) * 10 + sum(sides))
    x = torch.randn(*shape, dtype=torch.float64, generator=gen, requires_grad=True)
    ref = nn.ReflectionPad2d(sides)(x)
    got = reflection_pad(x, sides)
    assert got.shape == ref.shape
    assert torch.equal(got, ref)
    upstream = torch.randn(ref.shape, dtype=torch.float64, generator=gen)
    (g_ref,) = torch.autograd.grad(ref, x, upstream)
    (g_got,) = torch.autograd.grad(got, x, upstream)
    torch.testing.assert_close(g_got, g_ref, rtol=1e-12, atol=1e-12)
    # the border pixels really collect several contributions (a plain copy would not)
    assert not torch.allclose(g_ref, upstream[..., sides[2]:sides[2] + shape[2], sides[0]:sides[0] + shape[3]])


def test_flipped_slice_padding_refuses_what_reflection_pad_refuses():
    x = torch.zeros(1, 1, 4, 6)
    for sides in [(6, 0, 0, 0), (0, 0, 4, 0), (0, 0, 0, 5), (-1, 0, 0, 0)]:
        with pytest.raises(ValueError):
            reflection_pad(x, sides)
    assert reflection_pad(x, (5, 5, 3, 3)).shape == (1, 1, 10, 16)  # the largest legal pads


def test_pad_module_uses_flipped_slices_only_in_deterministic_mode(deterministic):
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    pad = ReflectionPad(2)
    y_det = pad(x)
    torch.use_deterministic_algorithms(False)
    y_fast = pad(x)
    assert torch.equal(y_det, y_fast)
    assert "ReflectionPad2DBackward0" not in autograd_nodes(y_det) and "CatBackward0" in autograd_nodes(y_det)
    assert "ReflectionPad2DBackward0" in autograd_nodes(y_fast)


def test_networks_in_deterministic_mode_have_no_reflection_pad_backward(deterministic):
    """CUDA refuses ReflectionPad2d's backward under deterministic algorithms; none may remain."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    for antialias in (False, True):
        g = init_weights(ResnetGenerator(ngf=4, n_blocks=2, antialias=antialias))
        d = init_weights(PatchDiscriminator(ndf=4, antialias=antialias))
        y = d(g(x)).mean()
        names = autograd_nodes(y)
        assert not any(n.startswith("ReflectionPad") for n in names), names
        assert "CatBackward0" in names
        torch.use_deterministic_algorithms(False)
        y_fast = d(g(x)).mean()
        torch.use_deterministic_algorithms(True)
        assert torch.equal(y, y_fast)  # the same forward values either way


# --- anti-aliasing filters ---------------------------------------------------------------------
def test_binomial_filters_equal_the_formulas():
    three = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    four = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
    assert torch.equal(binomial_filter(3), torch.outer(three, three) / 16)
    assert torch.equal(binomial_filter(4), torch.outer(four, four) / 64)
    down, up = BlurDownsample(5), BlurUpsample(5)
    assert down.filt.shape == (5, 1, 3, 3) and up.filt.shape == (5, 1, 4, 4)
    for c in range(5):  # one identical filter per channel (depthwise)
        assert torch.equal(down.filt[c, 0].double(), torch.outer(three, three) / 16)
        assert torch.equal(up.filt[c, 0].double(), torch.outer(four, four) / 64 * 4)
    # a formula, not state: checkpoints carry learned tensors only
    assert not down.state_dict() and not up.state_dict()


def reference_blur_downsample(x: np.ndarray) -> np.ndarray:
    """Reflect-pad 1, [1,2,1]x[1,2,1]/16, every second pixel from the first: written out with loops."""
    k = np.array([1.0, 2.0, 1.0])
    k = np.outer(k, k) / 16
    c, h, w = x.shape
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    out = np.zeros((c, (h + 1) // 2, (w + 1) // 2))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = (p[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3] * k).sum(axis=(1, 2))
    return out


@pytest.mark.parametrize("size", [(8, 8), (7, 10), (5, 3)])
def test_blur_downsample_is_the_reflect_padded_binomial_blur_at_stride_2(size):
    x = torch.randn(1, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(size[0]))
    got = BlurDownsample(3).double()(x)
    np.testing.assert_allclose(got[0].numpy(), reference_blur_downsample(x[0].numpy()), rtol=1e-12, atol=1e-12)


def test_blur_downsample_removes_the_aliased_checkerboard():
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 2.0 - 1.0
    x = checker[None, None].double()
    # plain stride 2 aliases the finest pattern into a constant image of full amplitude
    assert torch.equal(x[..., ::2, ::2], torch.full((1, 1, 8, 8), -1.0, dtype=torch.float64))
    assert float(BlurDownsample(1).double()(x).abs().max()) < 1e-12  # blurred first: the Nyquist pattern is gone


@pytest.mark.parametrize("size", [(4, 4), (5, 7), (1, 3)])
def test_blur_upsample_is_half_pixel_bilinear_interpolation(size):
    """The transposed [1,3,3,1] filter with gain 4 and replication at the border interpolates
    bilinearly at half-pixel offsets: exactly ``F.interpolate(align_corners=False)``."""
    x = torch.randn(2, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    got = BlurUpsample(3).double()(x)
    expected = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


# --- architecture ------------------------------------------------------------------------------
def test_antialiased_networks_resample_only_through_the_blur_filters():
    g = ResnetGenerator(ngf=4, n_blocks=2, antialias=True)
    d = PatchDiscriminator(ndf=4, antialias=True)
    for net in (g, d):
        convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        assert all(isinstance(m, nn.Conv2d) and m.stride == (1, 1) for m in convs)
    assert sum(isinstance(m, BlurDownsample) for m in g.modules()) == 2
    assert sum(isinstance(m, BlurUpsample) for m in g.modules()) == 2
    assert sum(isinstance(m, BlurDownsample) for m in d.modules()) == 3
    x = torch.rand(1, 3, 64, 64)
    assert g(x).shape == x.shape
    assert d(x).shape == PatchDiscriminator(ndf=4).forward(x).shape  # same logit grid as the plain PatchGAN


def measured_rf(net: nn.Module, size: int) -> int:
    """Rows of the input that the centre logit depends on (positive weights: nothing cancels)."""
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(0.01)
    net = nn.Sequential(*[m for m in net.model if not isinstance(m, nn.LeakyReLU)])
    x = torch.rand(1, 3, size, size, dtype=torch.float64, requires_grad=True)
    out = net.double()(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = x.grad[0].abs().sum(dim=(0, 2)).nonzero()
    return int(rows.max() - rows.min() + 1)


def test_patchgan_receptive_fields_plain_and_antialiased():
    plain = PatchDiscriminator(ndf=4, norm="none")
    smooth = PatchDiscriminator(ndf=4, norm="none", antialias=True)
    assert receptive_field(plain) == 70 and receptive_field(smooth) == 84
    assert measured_rf(plain, 160) == 70
    assert measured_rf(smooth, 200) == 84


def test_plain_networks_keep_the_state_dict_keys_of_earlier_checkpoints():
    """The padding modules were swapped in place (no parameters): every key, hence every
    checkpoint of CycleGAN, ours and CUT v1, stays loadable."""
    g = ResnetGenerator(ngf=2, n_blocks=1)
    assert list(g.state_dict()) == [
        "stem.0.weight", "stem.0.bias", "down1.0.weight", "down1.0.bias", "down2.0.weight", "down2.0.bias",
        "blocks.0.body.1.weight", "blocks.0.body.1.bias", "blocks.0.body.5.weight", "blocks.0.body.5.bias",
        "up1.0.weight", "up1.0.bias", "up2.0.weight", "up2.0.bias", "head.1.weight", "head.1.bias"]
    assert list(ResnetGenerator(ngf=2, n_blocks=1, use_dropout=True).state_dict())[6:10] == [
        "blocks.0.body.1.weight", "blocks.0.body.1.bias", "blocks.0.body.6.weight", "blocks.0.body.6.bias"]
    d = PatchDiscriminator(ndf=2, n_layers=3)
    assert list(d.state_dict()) == ["model.0.weight", "model.0.bias", "model.2.weight", "model.2.bias",
                                    "model.5.weight", "model.5.bias", "model.8.weight", "model.8.bias",
                                    "model.11.weight", "model.11.bias"]


# --- initialisation ----------------------------------------------------------------------------
def xavier_std(w: torch.Tensor, gain: float) -> float:
    receptive = w[0, 0].numel() if w.dim() > 2 else 1
    fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def test_xavier_init_statistics_per_layer():
    g = ResnetGenerator(ngf=32, n_blocks=2, antialias=True)
    heads = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 256))
    for net in (g, heads):
        init_weights(net, 0.02, torch.Generator().manual_seed(3), "xavier")
        layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert layers
        for m in layers:
            expected = xavier_std(m.weight, 0.02)
            z = m.weight.detach().flatten() / expected
            tol = 4 / math.sqrt(2 * z.numel())  # 4 standard errors of a sample std
            assert abs(float(z.std()) - 1) < tol, (m, float(z.std()))
            assert abs(float(z.mean())) < 4 / math.sqrt(z.numel())
            if m.bias is not None:
                assert float(m.bias.detach().abs().max()) == 0
    # the same rule as torch's xavier_normal_ (what the reference calls)
    w = torch.empty(64, 32, 3, 3)
    nn.init.xavier_normal_(w, gain=0.02)
    assert abs(float(w.std()) / xavier_std(w, 0.02) - 1) < 0.03
    # and far from the plain N(0, 0.02) init for wide layers
    assert xavier_std(g.blocks[0].body[1].weight, 0.02) < 0.001


def test_init_is_seeded_and_normal_init_is_unchanged():
    a = init_weights(ResnetGenerator(ngf=4, n_blocks=1), 0.02, torch.Generator().manual_seed(1), "xavier")
    b = init_weights(ResnetGenerator(ngf=4, n_blocks=1), 0.02, torch.Generator().manual_seed(1), "xavier")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    # "normal" draws exactly what it drew before xavier existed: N(0, gain) in module order
    c = init_weights(ResnetGenerator(ngf=4, n_blocks=1), 0.02, torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(1)
    for m in c.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            assert torch.equal(m.weight, torch.randn(m.weight.shape, generator=gen) * 0.02)
    with pytest.raises(ValueError, match="init_type"):
        init_weights(c, 0.02, None, "kaiming")


def test_a_residual_generator_starts_as_the_identity_and_learns_a_change():
    torch.manual_seed(0)
    g = init_weights(ResnetGenerator(3, 3, ngf=8, n_blocks=1, residual=True), 0.02, torch.Generator().manual_seed(1))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert (g(x) - x).abs().max() > 0.01  # the random head draws a change ...
    g.start_at_identity_()
    y = g(x)
    # ... which start_at_identity_ removes: the input back, to the atanh clamp (below a uint8 level)
    assert torch.allclose(y, x.clamp(-1 + 1e-3, 1 - 1e-3), atol=1e-6)
    assert torch.equal(g.forward_with_features(x, ["res1"])[0], y)
    # the zeroed head still gets a gradient, so one optimiser step changes the output, inside (-1, 1)
    opt = torch.optim.SGD(g.parameters(), lr=0.1)
    ((g(x) - 0.5) ** 2).mean().backward()
    assert g.head[1].weight.grad.abs().sum() > 0
    opt.step()
    z = g(x)
    assert (z - x).abs().max() > 1e-3 and z.abs().max() < 1
    with pytest.raises(ValueError):
        ResnetGenerator(3, 3, ngf=8, n_blocks=1).start_at_identity_()


def test_gans_built_residual_start_their_generators_at_the_identity():
    from baselines.cut import CUT
    from baselines.cyclegan import CycleGAN
    from benchmark.core.profiles import apply_overrides

    x = torch.rand(1, 3, 32, 32) * 2 - 1
    for cls, names in ((CycleGAN, ("G_A", "G_B")), (CUT, ("G",))):
        method = cls(apply_overrides(cls.default_config("ci"), {"residual": "true"}))
        for name in names:
            with torch.no_grad():
                assert torch.allclose(getattr(method, name)(x), x.clamp(-0.999, 0.999), atol=1e-6), (cls, name)
