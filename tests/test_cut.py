"""CUT / FastCUT: PatchNCE against its definition, shared patch locations across taps, the
reference's taps (by receptive field), anti-aliased networks and xavier init, the plain
variant, gradient flow, configs, run identity, and exact resume of a killed run."""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import pytest
import torch
from helpers_methods import painting_batch, tiny_data, tiny_run
from torch import nn

from baselines import cut as C
from baselines.networks import (
    CUT_NCE_LAYERS,
    BlurDownsample,
    BlurUpsample,
    ResnetGenerator,
)
from benchmark.core.errors import ArtshiftError
from benchmark.core.profiles import apply_overrides
from benchmark.core.spec import RunSpec
from benchmark.pipeline.training import CHECKPOINT, train

# fidelity.md: the reference's --nce_layers 0,4,8,12,16 of its default generator see 1, 9, 15,
# 35 and 99 input pixels; the taps this benchmark used before (pad, stem, down1, down2, res1 of
# the plain generator) saw 1, 7, 9, 13 and 29
REFERENCE_RF = [1, 9, 15, 35, 99]
OLD_TAPS, OLD_RF = ("pad", "stem", "down1", "down2", "res1"), [1, 7, 9, 13, 29]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("tiny"))


def make(cls=C.CUT, **overrides):
    config = apply_overrides(cls.default_config("ci"), {k: str(v) for k, v in overrides.items()})
    return cls(config, "cpu")


def unit_rows(rng, n, dim):
    x = rng.normal(size=(n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# --- PatchNCE ----------------------------------------------------------------------------------
def reference_nce(q: np.ndarray, k: np.ndarray, batch: int, tau: float) -> np.ndarray:
    """-log softmax of the positive among {positive} + {other patches of the same image}, float64."""
    p = len(q) // batch
    out = np.empty(len(q))
    for b in range(batch):
        for i in range(p):
            row = b * p + i
            logits = [q[row] @ k[row] / tau] + [q[row] @ k[b * p + j] / tau for j in range(p) if j != i]
            logits = np.array(logits)
            top = logits.max()
            out[row] = -(logits[0] - top - np.log(np.exp(logits - top).sum()))
    return out


@pytest.mark.parametrize("batch,patches,dim,tau", [(1, 6, 8, 0.07), (3, 5, 4, 0.07), (2, 7, 16, 0.5)])
def test_patch_nce_equals_its_cross_entropy(batch, patches, dim, tau):
    rng = np.random.default_rng(batch * 100 + patches)
    q, k = unit_rows(rng, batch * patches, dim), unit_rows(rng, batch * patches, dim)
    expected = reference_nce(q, k, batch, tau)
    got = C.patch_nce_loss(torch.from_numpy(q), torch.from_numpy(k), batch, tau)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)
    got32 = C.patch_nce_loss(torch.from_numpy(q).float(), torch.from_numpy(k).float(), batch, tau)
    np.testing.assert_allclose(got32.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_patch_nce_negatives_come_from_the_same_image_only():
    rng = np.random.default_rng(0)
    q, k = torch.from_numpy(unit_rows(rng, 8, 6)), torch.from_numpy(unit_rows(rng, 8, 6))
    base = C.patch_nce_loss(q, k, batch_size=2)
    k2 = k.clone()
    k2[4:] = torch.from_numpy(unit_rows(rng, 4, 6))  # change image 1's keys
    changed = C.patch_nce_loss(q, k2, batch_size=2)
    torch.testing.assert_close(changed[:4], base[:4], rtol=0, atol=0)
    assert not torch.allclose(changed[4:], base[4:])


def test_patch_nce_perfect_match_is_near_zero_and_keys_are_detached():
    eye = torch.eye(4, dtype=torch.float64)
    assert float(C.patch_nce_loss(eye, eye, 1, 0.07).max()) < 1e-5  # cos 1 vs 0 at tau 0.07
    q = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    k = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    C.patch_nce_loss(q, k, 2).sum().backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None


# --- patch locations ---------------------------------------------------------------------------
def test_locations_are_shared_and_distinct_on_every_tap():
    gen = torch.Generator().manual_seed(0)
    sizes = [(32, 40), (16, 20), (8, 10)]
    loc = C.sample_locations(sizes[-1], 50, gen)
    assert loc.shape == (50, 2) and float(loc.min()) >= 0 and float(loc.max()) < 1
    ids = [C.location_indices(loc, s) for s in sizes]
    for s, i in zip(sizes, ids, strict=True):
        assert len(set(i.tolist())) == len(i), f"duplicate patches on the {s} tap"
    # each finer cell lies inside the coarser cell of the same location
    for (hf, wf), fine, (hc, wc), coarse in zip(sizes, ids, sizes[1:], ids[1:], strict=False):
        rf, cf = fine // wf, fine % wf
        rc, cc = coarse // wc, coarse % wc
        assert torch.equal(rf // (hf // hc), rc) and torch.equal(cf // (wf // wc), cc)
    # the count is capped by the coarsest grid, as the reference caps it per tap
    assert len(C.sample_locations((4, 4), 256, gen)) == 16


def coordinate_map(h, w):
    """[1, 2, h, w] features holding each cell's normalised centre (y, x)."""
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) / w
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"))[None]


def test_gathered_patches_come_from_the_same_image_location_on_every_tap():
    gen = torch.Generator().manual_seed(1)
    sizes = [(64, 64), (32, 32), (16, 16)]
    loc = C.sample_locations(sizes[-1], 256, gen)
    centres = [C.gather_patches(coordinate_map(*s), C.location_indices(loc, s)) for s in sizes]
    for (h, _), c in zip(sizes, centres, strict=True):
        assert float((c - loc).abs().max()) <= 0.5 / h + 1e-12  # within half a cell of the location
    assert float((centres[0] - centres[-1]).abs().max()) <= 0.5 / 16


def test_cut_samples_the_same_locations_on_its_taps(monkeypatch):
    """Through CUT.nce_loss: the indices used on each tap map back to one set of locations."""
    method = make()
    seen = []
    real_gather = C.gather_patches

    def spy(feature, indices):
        seen.append((tuple(feature.shape[-2:]), indices.clone()))
        return real_gather(feature, indices)

    monkeypatch.setattr(C, "gather_patches", spy)
    x = painting_batch(seed=0, size=32, n=2)
    method.nce_loss(x, method.G(x))
    taps = {}
    for size, ids in seen:
        taps.setdefault(size, []).append(ids)
    assert sorted(taps) == [(8, 8), (16, 16), (32, 32)]  # pad (cropped to 32), down1_conv; down2_conv; res1/2
    coarse = taps[(8, 8)][0]
    for (h, w), lists in taps.items():
        for ids in lists:  # query and key share indices
            assert torch.equal(ids, lists[0])
            assert torch.equal((ids // w) // (h // 8) * 8 + (ids % w) // (w // 8), coarse)
    assert len(coarse) == 64


def test_training_takes_the_keys_from_the_translating_pass(monkeypatch):
    """An unflipped iteration encodes only the translations (the queries): the real images' keys
    are the taps of the pass that translated them, with the values a separate pass would give."""
    method = make(C.CUT)
    x = painting_batch(seed=5, size=32, n=2)
    fake, keys = method._translate_with_taps(x)
    assert torch.equal(fake, method.net(method.G, x))
    for got, want in zip(keys, method._taps(x), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)  # the same patch locations for both losses
    loss_reused = method.nce_loss(x[:1], fake[:1], keys=[k[:1] for k in keys])
    torch.manual_seed(0)
    torch.testing.assert_close(loss_reused, method.nce_loss(x[:1], fake[:1]), rtol=1e-5, atol=1e-6)

    encoded = []
    real_encode = method.G.encode
    monkeypatch.setattr(method.G, "encode", lambda images, layers: encoded.append(images.shape[0]) or
                        real_encode(images, layers))
    batch = {"A": x[:1], "B": x[1:], "flip": False}
    method.train_step(batch, 0)
    assert encoded == [1, 1]  # NCE's and NCE_Y's queries; no pass for the keys
    encoded.clear()
    method.train_step({**batch, "flip": True}, 1)
    assert encoded == [1, 1, 1, 1]  # flipped: the translating pass saw the mirror image, keys re-encoded


def test_input_tap_is_the_image_itself():
    method = make()
    x = painting_batch(seed=3, size=32, n=1)
    taps = method._taps(x)
    assert method.nce_layers == ("pad", "down1_conv", "down2_conv", "res1", "res2")
    assert torch.equal(taps[0], x)  # the reflection border is cropped off
    # anti-aliased: each downsampling conv runs at its input's resolution, before the blur-pool
    assert [tuple(t.shape[1:]) for t in taps] == [(3, 32, 32), (16, 32, 32), (32, 16, 16), (32, 8, 8), (32, 8, 8)]
    conv = method.G.down1[0]
    torch.testing.assert_close(taps[1], conv(method.G.stem(method.G.pad(x))))  # before its norm


# --- the reference's taps, by receptive field ---------------------------------------------------
def measured_receptive_field(g: ResnetGenerator, tap: str, size: int = 192) -> int:
    """Input rows one feature at the centre of ``tap`` depends on, by its gradient.

    Positive weights, no norm and a positive input keep every ReLU open and let nothing
    cancel, so the gradient is non-zero exactly on the receptive field (instance norm's
    statistics, which see the whole image, are left out, as in the reference's count).
    """
    with torch.no_grad():
        for p in g.parameters():
            p.fill_(0.01)
    g = g.double()
    x = torch.rand(1, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.5
    x.requires_grad_(True)
    (f,) = g.encode(x, [tap])
    f[0, :, f.shape[2] // 2, f.shape[3] // 2].sum().backward()
    rows = x.grad[0].abs().sum(dim=(0, 2)).nonzero()
    cols = x.grad[0].abs().sum(dim=(0, 1)).nonzero()
    height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
    assert height == width and rows.min() > 0 and rows.max() < size - 1  # square, clear of the borders
    return height


@pytest.mark.parametrize("cls", [C.CUT, C.FastCUT])
def test_paper_taps_see_what_the_reference_taps_see(cls):
    config = cls.default_config("paper")
    g = ResnetGenerator(3, 3, ngf=2, n_blocks=config.n_blocks, norm="none", antialias=config.antialias)
    measured = [measured_receptive_field(g, tap) for tap in config.nce_layers]
    assert measured == REFERENCE_RF
    assert [g.receptive_field(tap) for tap in config.nce_layers] == REFERENCE_RF  # the analytic count agrees


def test_receptive_field_measurement_reproduces_the_old_taps_numbers():
    """The same measurement gives fidelity.md's numbers for the taps used before, so a return
    to them (or any tap one stage off) fails the test above."""
    g = ResnetGenerator(3, 3, ngf=2, n_blocks=1, norm="none", antialias=False)
    assert [measured_receptive_field(g, tap, 96) for tap in OLD_TAPS] == OLD_RF
    plain = ResnetGenerator(3, 3, ngf=2, n_blocks=5, norm="none", antialias=False)
    assert [plain.receptive_field(t) for t in CUT_NCE_LAYERS] == [1, 9, 13, 29, 93]  # the plain variant's


def test_ci_profile_records_the_taps_it_uses():
    """ci's generator has 2 residual blocks, so res5 does not exist: its taps are a config field,
    part of the recorded config, the config hash and so the run id, and logged with their sizes."""
    ci, paper = C.CUT.default_config("ci"), C.CUT.default_config("paper")
    assert ci.n_blocks < 5 and ci.nce_layers == ("pad", "down1_conv", "down2_conv", "res1", "res2")
    assert dataclasses.asdict(ci)["nce_layers"] == ci.nce_layers
    assert C.CUT.default_config("smoke").nce_layers == paper.nce_layers == CUT_NCE_LAYERS
    shallower = dataclasses.replace(ci, nce_layers=("pad", "down1_conv", "down2_conv", "res1"))
    ids = {RunSpec.make("cut", "monet", "ci", 0, {}, "fp", config=c, method_version=C.CUT.VERSION).run_id
           for c in (ci, shallower)}
    assert len(ids) == 2
    assert make().tap_receptive_fields() == {"pad": 1, "down1_conv": 9, "down2_conv": 15, "res1": 35, "res2": 51}
    # and tables name them, since no --set does
    assert C.CUT.label_tags(ci) == ("NCE taps pad,down1_conv,down2_conv,res1,res2",)
    assert C.FastCUT.label_tags(C.FastCUT.default_config("smoke")) == C.CUT.label_tags(paper) == ()


def test_taps_that_the_generator_lacks_are_refused_before_any_work():
    with pytest.raises(ArtshiftError, match="res5"):
        apply_overrides(C.CUT.default_config("smoke"), {"n_blocks": "3"})
    with pytest.raises(ArtshiftError, match="init_type"):
        apply_overrides(C.CUT.default_config("ci"), {"init_type": "kaiming"})
    with pytest.raises(ArtshiftError, match="twice"):
        apply_overrides(C.CUT.default_config("ci"), {"nce_layers": "pad,res1,res1"})
    ok = apply_overrides(C.CUT.default_config("smoke"), {"n_blocks": "3", "nce_layers": "pad,down1_conv,res3"})
    assert ok.nce_layers == ("pad", "down1_conv", "res3")


def test_fit_logs_taps_and_network_variant(tmp_path, home, data, caplog):
    method = make()
    run = tiny_run(tmp_path, home)
    method.setup(data, run)
    with caplog.at_level(logging.INFO, logger=run.log.name):
        method.prepare(data, run)
    text = caplog.text
    assert "res2 (51 px)" in text and "down2_conv (15 px)" in text and "anti-aliased" in text and "xavier" in text


# --- the reference's networks and init ---------------------------------------------------------
@pytest.mark.parametrize("cls", [C.CUT, C.FastCUT])
def test_paper_networks_are_anti_aliased_with_xavier_init(cls):
    config = cls.default_config("paper")
    assert config.antialias is True and config.init_type == "xavier" and config.init_gain == 0.02
    method = cls(dataclasses.replace(config, ngf=8, ndf=8, netF_nc=32), "cpu")
    for net in (method.G, method.D):
        strided = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.stride != (1, 1)]
        assert not strided and any(isinstance(m, BlurDownsample) for m in net.modules())
    assert sum(isinstance(m, BlurUpsample) for m in method.G.modules()) == 2
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in method.G.modules())
    # every conv / linear layer of G, D and the heads is xavier-normal with gain 0.02
    z = []
    for net in (method.G, method.D, method.F):
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
                z.append(m.weight.detach().flatten() / (0.02 * math.sqrt(2 / (fan_in + fan_out))))
                assert m.bias is None or float(m.bias.detach().abs().max()) == 0
    zs = torch.cat(z)
    assert abs(float(zs.std()) - 1) < 0.01 and abs(float(zs.mean())) < 0.01
    wide = method.G.blocks[0].body[1].weight  # 32 -> 32 channels, 3x3: xavier std 0.02 * sqrt(2/576)
    assert float(wide.detach().std()) < 0.002  # the plain N(0, 0.02) init would give 0.02


def test_plain_variant_still_works(tmp_path, home, data):
    """``antialias=false init_type=normal``: the networks and init VERSION 1 trained, old taps allowed."""
    method = make(antialias="false", init_type="normal", nce_layers="pad,stem,down1,down2,res1")
    assert any(isinstance(m, nn.ConvTranspose2d) for m in method.G.modules())
    assert not any(isinstance(m, (BlurDownsample, BlurUpsample)) for n in (method.G, method.D) for m in n.modules())
    assert method.G.down1[0].stride == (2, 2) and method.D.model[0].stride == (2, 2)
    assert list(method.G.state_dict())[:4] == ["stem.0.weight", "stem.0.bias", "down1.0.weight", "down1.0.bias"]
    convs = torch.cat([m.weight.detach().flatten() for m in method.G.modules() if isinstance(m, nn.Conv2d)])
    assert abs(float(convs.std()) - 0.02) < 0.002
    assert method.tap_receptive_fields() == dict(zip(OLD_TAPS, OLD_RF, strict=True))
    run = tiny_run(tmp_path, home)
    method.setup(data, run)
    method.prepare(data, run)
    before = [p.detach().clone() for p in method.G.parameters()]
    losses = method.train_step(method.batch(0, 0), 0)
    assert all(math.isfinite(float(v)) for v in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, method.G.parameters(), strict=True))
    x = painting_batch(seed=1, size=40, n=1)
    assert method.translate(x).shape == x.shape


def test_plain_and_antialiased_checkpoints_do_not_mix():
    """A checkpoint of one variant is refused by the other instead of loading half the weights."""
    plain, smooth = make(antialias="false", init_type="normal"), make()
    with pytest.raises(RuntimeError):
        smooth.load_state_dict(plain.state_dict())
    with pytest.raises(RuntimeError):
        plain.load_state_dict(smooth.state_dict())


def test_version_and_changed_defaults_give_new_run_ids():
    """Runs made with the old taps/networks are not reused: the method version and the config hash
    both differ from what VERSION 1 recorded for the same spec."""
    assert C.CUT.VERSION == C.FastCUT.VERSION != "1"
    new = C.CUT.default_config("smoke")
    old = dataclasses.replace(new, nce_layers=OLD_TAPS, antialias=False, init_type="normal")
    spec = lambda config, version: RunSpec.make("cut", "monet", "smoke", 0, {}, "fp", config=config,  # noqa: E731
                                                method_version=version)
    assert spec(new, C.CUT.VERSION).run_id != spec(old, "1").run_id
    assert spec(new, C.CUT.VERSION).config_hash != spec(old, C.CUT.VERSION).config_hash
    assert spec(old, C.CUT.VERSION).run_id != spec(old, "1").run_id


def autograd_nodes(t: torch.Tensor) -> set[str]:
    seen, names, stack = set(), set(), [t.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        stack.extend(f for f, _ in fn.next_functions)
    return names


@pytest.mark.parametrize("cls", [C.CUT, C.FastCUT])
def test_deterministic_mode_uses_no_op_that_cuda_refuses(cls):
    """``--deterministic`` on CUDA raises on ReflectionPad2d's backward and on NLLLoss; a CUT
    loss graph built in deterministic mode (here on the CPU) contains neither."""
    method = make(cls)
    x = painting_batch(seed=5, size=32, n=2)
    torch.use_deterministic_algorithms(True)  # the autouse fixture restores it
    fake = method.G(x.flip(-1))
    loss = method.nce_loss(x, fake, flipped=True) + method.D(fake).mean()
    names = autograd_nodes(loss)
    assert not {n for n in names if n.startswith(("ReflectionPad", "NllLoss"))}, names
    assert "CatBackward0" in names and "LogSoftmaxBackward0" in names


# --- training ----------------------------------------------------------------------------------
def test_gradients_reach_encoder_and_heads():
    method = make()
    x = painting_batch(seed=2, size=32, n=1)
    loss = method.nce_loss(x, method.G(x))
    loss.backward()
    assert method.G.stem[0].weight.grad.abs().sum() > 0
    assert method.G.down2[0].weight.grad.abs().sum() > 0
    assert method.G.head[1].weight.grad.abs().sum() > 0  # through the translated image
    for name in method.nce_layers:
        assert method.F.mlps[name][0].weight.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cls", [C.CUT, C.FastCUT])
def test_train_step_updates_every_network(cls, tmp_path, home, data):
    method = make(cls)
    run = tiny_run(tmp_path, home)
    method.setup(data, run)
    method.prepare(data, run)
    before = {k: [p.detach().clone() for p in net.parameters()] for k, net in method.networks().items()}
    losses = method.train_step(method.batch(0, 0), 0)
    expected = {"D_fake", "D_real", "G_GAN", "NCE"} | ({"NCE_Y"} if cls is C.CUT else set())
    assert set(losses) == expected
    for k, net in method.networks().items():
        assert any(not torch.equal(a, b) for a, b in zip(before[k], net.parameters(), strict=True)), f"{k} did not change"


def test_configs_follow_the_paper():
    cut, fast = C.CUT.default_config("paper"), C.FastCUT.default_config("paper")
    assert (cut.lambda_NCE, cut.nce_idt, cut.flip_equivariance) == (1.0, True, False)
    assert (fast.lambda_NCE, fast.nce_idt, fast.flip_equivariance) == (10.0, False, True)
    for c in (cut, fast):
        assert (c.num_patches, c.netF_nc, c.nce_T, c.lr, c.beta1, c.beta2) == (256, 256, 0.07, 2e-4, 0.5, 0.999)
        assert c.nce_layers == CUT_NCE_LAYERS == ("pad", "down1_conv", "down2_conv", "res1", "res5")
        assert (c.n_blocks, c.antialias, c.init_type) == (9, True, "xavier")
    for profile in ("ci", "smoke", "quick"):
        assert C.FastCUT.default_config(profile).lambda_NCE == 10.0
        assert C.CUT.default_config(profile).nce_idt


def test_flip_coin_is_seeded_and_fastcut_only(tmp_path, home, data):
    fast, cut = make(C.FastCUT), make(C.CUT)
    for m in (fast, cut):
        run = tiny_run(tmp_path, home)
        m.setup(data, run)
        m.prepare(data, run)
    flips = [fast.batch(0, i)["flip"] for i in range(40)]
    assert flips == [fast.batch(0, i)["flip"] for i in range(40)]
    assert 5 < sum(flips) < 35
    assert not any(cut.batch(0, i)["flip"] for i in range(40))
    b1, b2 = fast.batch(0, 3), fast.batch(0, 3)
    assert torch.equal(b1["A"], b2["A"]) and torch.equal(b1["B"], b2["B"])


def test_heads_exist_before_training_so_a_checkpoint_loads_into_a_fresh_method():
    a, b = make(), make()
    assert set(a.F.mlps) == set(a.nce_layers) and len(a.nce_layers) == 5
    n_params = sum(len(g["params"]) for g in a.opt_F.param_groups)
    assert n_params == len(list(a.F.parameters())) == 4 * len(a.nce_layers)
    x = painting_batch(seed=0, size=32, n=1)
    a.train_step({"A": x, "B": x, "flip": False}, 0)
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.translate(x), a.translate(x))


@pytest.mark.parametrize("cls", [C.CUT, C.FastCUT])
def test_killed_run_resumes_to_identical_weights(cls, tmp_path, home, data):
    straight = make(cls, checkpoint_every=4)
    assert train(straight, data, tiny_run(tmp_path / "a", home, seed=3, deterministic=True)) == 20

    run = tiny_run(tmp_path / "b", home, seed=3, deterministic=True)
    assert train(make(cls, checkpoint_every=4), data, run, stop_after=7) == 7
    resumed = make(cls, checkpoint_every=4)
    assert train(resumed, data, run) == 20
    sa, sb = straight.state_dict(), resumed.state_dict()
    for key in ("G", "D", "F"):
        for name, tensor in sa[key].items():
            assert torch.equal(tensor, sb[key][name]), f"{key}.{name} differs after resume"
    for key in ("opt_G", "opt_D", "opt_F"):
        for pid, st in sa[key]["state"].items():
            for name, value in st.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(sb[key]["state"][pid][name])), key
    x = painting_batch(seed=4, size=40, n=1)
    assert torch.equal(straight.translate(x), resumed.translate(x))
    assert torch.load(run.checkpoint_dir / CHECKPOINT, weights_only=True)["iteration"] == 20
