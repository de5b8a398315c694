"""CUT / FastCUT: PatchNCE against its definition, shared patch locations across taps, gradient
flow, configs, and exact resume of a killed run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_methods import painting_batch, tiny_data, tiny_run

from baselines import cut as C
from baselines.networks import CUT_NCE_LAYERS
from benchmark.profiles import apply_overrides
from benchmark.training import CHECKPOINT, train


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
    assert sorted(taps) == [(8, 8), (16, 16), (32, 32)]  # pad (cropped back to 32), stem, down1, down2/res1
    coarse = taps[(8, 8)][0]
    for (h, w), lists in taps.items():
        for ids in lists:  # query and key share indices
            assert torch.equal(ids, lists[0])
            assert torch.equal((ids // w) // (h // 8) * 8 + (ids % w) // (w // 8), coarse)
    assert len(coarse) == 64


def test_input_tap_is_the_image_itself():
    method = make()
    x = painting_batch(seed=3, size=32, n=1)
    taps = method._taps(x)
    assert method.nce_layers == CUT_NCE_LAYERS
    assert torch.equal(taps[0], x)  # the reflection border is cropped off
    assert [t.shape[1] for t in taps] == [3, 8, 16, 32, 32]


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
        assert c.nce_layers == CUT_NCE_LAYERS
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
    assert set(a.F.mlps) == set(CUT_NCE_LAYERS)
    n_params = sum(len(g["params"]) for g in a.opt_F.param_groups)
    assert n_params == len(list(a.F.parameters())) == 4 * len(CUT_NCE_LAYERS)
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
