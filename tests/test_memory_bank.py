"""Memory bank: cache round trip, fingerprints, patch storage, search geometries, recall,
the memory budget (IVF-PQ + subsampling) and semantic banks from generated masks."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch
from helpers_bank import make_masks, make_photos
from PIL import Image

from benchmark.core.errors import ArtshiftError
from methods.memory_bank import (
    BankSpec,
    bank_fingerprint,
    build_bank,
    chunked_search,
    fingerprint_files,
    load_resized,
    parse_scales,
    to_unit,
    topk_rows,
    unfold_patches,
)

SIZE = 24


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photos(tmp_path_factory.mktemp("ph") / "photos", n=12, size=32, seed=0)


def all_patches(photos, size, patch, stride) -> np.ndarray:
    """Independent reference: resize with PIL, cut windows with NumPy slicing, (C, y, x) order."""
    out = []
    for p in photos:
        a = np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BICUBIC), np.float64) / 127.5 - 1
        for y in range(0, size - patch + 1, stride):
            for x in range(0, size - patch + 1, stride):
                out.append(a[y:y + patch, x:x + patch].transpose(2, 0, 1).ravel())
    return np.stack(out)


def test_parse_scales():
    assert parse_scales("16:6,8:5") == ((16, 6), (8, 5))
    assert parse_scales("16:6, 8:5 ,4:3") == ((16, 6), (8, 5), (4, 3))
    for bad in ("16", "16:x", "16:6,8:5,4:3,2:1", "1:1", "16:6,16:6", ""):
        with pytest.raises(ArtshiftError):
            parse_scales(bad)


def test_build_then_load_round_trip(photos, tmp_path):
    spec = BankSpec(image_size=SIZE, scales=((8, 4), (6, 5)), index="flat")
    bank = build_bank(photos, spec, tmp_path, recall_queries=40)
    root = bank.root
    assert root.parent == tmp_path / "banks" and not list(root.parent.glob(".*tmp"))
    stamp = (root / "meta.json").stat().st_mtime_ns
    again = build_bank(photos, spec, tmp_path)
    assert again.root == root and (root / "meta.json").stat().st_mtime_ns == stamp  # loaded, not rebuilt
    for sb in again.scales:
        ref = all_patches(photos, SIZE, sb.patch, sb.stride)
        ci = sb.classes["all"]
        assert len(ci) == len(ref) == sb.per_image * len(photos)
        got = sb.gather(torch.arange(len(ci))).double().numpy()
        np.testing.assert_allclose(got, ref, atol=1e-6)  # patches are exactly the photos' windows
        np.testing.assert_allclose(ci.mean.double().numpy(), ref.mean(0), atol=1e-5)
        # an exact bank finds every bank patch as its own nearest neighbour
        ids = ci.search(ci.to_search(torch.from_numpy(ref[:30]).float()), 3)
        assert torch.equal(ids[:, 0], torch.arange(30))
        rec = again.meta["scales"][sb.key]["recall"]
        assert rec["recall"] == 1.0 and rec["k"] == 5 and rec["n_queries"] == 40
    assert "recall@5 1.000" in again.describe()


def test_fingerprint_tracks_photos_and_spec(photos, tmp_path):
    spec = BankSpec(image_size=SIZE)
    base = bank_fingerprint(spec, fingerprint_files(photos))
    moved = [shutil.copy(p, tmp_path / p.name) for p in photos]
    assert bank_fingerprint(spec, fingerprint_files(moved)) == base  # content, not location
    changed = list(moved)
    arr = np.asarray(Image.open(changed[3])).copy()
    arr[0, 0] ^= 1
    Image.fromarray(arr).save(changed[3])
    assert bank_fingerprint(spec, fingerprint_files(changed)) != base
    assert bank_fingerprint(spec, fingerprint_files(moved[:-1])) != base
    for other in (BankSpec(image_size=SIZE + 4), BankSpec(image_size=SIZE, scales="16:6"),
                  BankSpec(image_size=SIZE, geometry="l2"), BankSpec(image_size=SIZE, index="hnsw"),
                  BankSpec(image_size=SIZE, hnsw_m=16), BankSpec(image_size=SIZE, memory_gb=1)):
        assert bank_fingerprint(other, fingerprint_files(photos)) != base
    # search-time effort does not change what is stored: same bank, searched harder or lighter
    assert bank_fingerprint(BankSpec(image_size=SIZE, ef_search=16, nprobe=3), fingerprint_files(photos)) == base
    assert bank_fingerprint(spec, fingerprint_files(photos), "masks") != base


@pytest.mark.parametrize("geometry", ["cosine", "l2"])
def test_search_geometry_and_torch_backend(photos, tmp_path, geometry):
    spec = BankSpec(image_size=SIZE, scales=((8, 4),), index="flat", geometry=geometry)
    build_bank(photos, spec, tmp_path, recall_queries=20)  # fills the cache the loop below loads from
    ref = all_patches(photos, SIZE, 8, 4)
    mu = ref.mean(0)
    rng = np.random.default_rng(0)
    q = rng.uniform(-1, 1, size=(15, ref.shape[1]))
    if geometry == "cosine":
        a = (q - mu) / np.linalg.norm(q - mu, axis=1, keepdims=True)
        b = (ref - mu) / np.linalg.norm(ref - mu, axis=1, keepdims=True)
        want = np.argsort(-(a @ b.T), axis=1)[:, :4]
    else:
        want = np.argsort(((q[:, None] - ref[None]) ** 2).sum(-1), axis=1)[:, :4]
    qt = torch.from_numpy(q).float()
    for backend in ("faiss", "torch"):
        b2 = build_bank(photos, spec, tmp_path, backend=backend)
        ci = b2.scales[0].classes["all"]
        assert ci.backend == backend
        got = ci.search(ci.to_search(qt), 4).numpy()
        np.testing.assert_array_equal(got, want)


def test_approximate_index_recall_and_budget(tmp_path):
    """IVF-PQ with exact re-ranking, and a budget so small the bank must be subsampled."""
    photos = make_photos(tmp_path / "photos", n=40, size=40, seed=5)
    # 4-bit codes: training 256-centroid sub-quantisers takes minutes on a busy 2-core machine
    spec = BankSpec(image_size=40, scales=((8, 2),), index="ivfpq", ivf_nlist=16, nprobe=4, pq_m=24,
                    pq_bits=4, refine=4)
    bank = build_bank(photos, spec, tmp_path / "c1", recall_queries=100)
    info = bank.meta["scales"]["p8s2"]
    assert info["classes"]["all"]["factory"] == "IVF16,PQ24x4" and info["classes"]["all"]["n"] == 40 * 17 * 17
    assert 0.3 < info["recall"]["recall"] <= 1.0
    # budget: images take 40*40*40*3 bytes; leave room for about half of the PQ codes
    need = 40 * 17 * 17 * (24 * 4 / 8 + 16)
    tight = BankSpec(image_size=40, scales=((8, 2),), index="ivfpq", ivf_nlist=16, pq_m=24, pq_bits=4,
                     memory_gb=(40 * 40 * 40 * 3 + need / 2) / 1024**3)
    small = build_bank(photos, tight, tmp_path / "c2", recall_queries=100)
    s = small.meta["scales"]["p8s2"]
    assert small.meta["budget"]["keep"] == pytest.approx(0.5, abs=0.02)
    assert s["classes"]["all"]["n"] == pytest.approx(s["n_patches"] / 2, rel=0.02)
    assert s["recall"]["recall"] < info["recall"]["recall"]  # what subsampling costs is reported
    ids = small.scales[0].classes["all"].ids
    assert np.all(np.diff(ids) > 0) and ids.max() < s["n_patches"]


def test_pca_hnsw_reranks_exactly(tmp_path):
    photos = make_photos(tmp_path / "photos", n=30, size=40, seed=6)
    spec = BankSpec(image_size=40, scales=((8, 2),), index="hnsw", pca=16, refine=4)
    bank = build_bank(photos, spec, tmp_path, recall_queries=100, query_images=photos[:3])
    info = bank.meta["scales"]["p8s2"]
    assert info["classes"]["all"]["factory"] == "PCA16,HNSW32,Flat"
    assert 0.3 < info["recall"]["recall"] <= 1.0  # noise images are not low-rank; real patches reach ~0.9
    ci = bank.scales[0].classes["all"]
    q = ci.to_search(torch.rand(10, 192) * 2 - 1)
    ids = ci.search(q, 5)
    sim = (ci.to_search(bank.scales[0].gather(ids.flatten())).view(10, 5, -1) @ q[:, :, None]).squeeze(-1)
    assert (sim[:, :-1] >= sim[:, 1:] - 1e-6).all()  # re-ranked by the exact similarity


def test_auto_index_choice(tmp_path):
    photos = make_photos(tmp_path / "photos", n=6, size=32, seed=1)
    spec = BankSpec(image_size=32, scales=((8, 4), (4, 2)), exact_max=400)
    bank = build_bank(photos, spec, tmp_path, recall_queries=30, query_images=photos[:2])
    kinds = {k: v["classes"]["all"]["kind"] for k, v in bank.meta["scales"].items()}
    assert kinds == {"p8s4": "flat", "p4s2": "hnsw"}  # 294 patches exact, 1,350 approximate
    assert "query images" in bank.meta["scales"]["p4s2"]["recall"]["queries"]


def test_semantic_banks_from_generated_masks(tmp_path):
    photos = make_photos(tmp_path / "photos", n=8, size=32, seed=2)
    masks = make_masks(tmp_path / "masks", photos, 32, labels=(0, 1, 2), skip=(7,))
    spec = BankSpec(image_size=32, scales=((8, 4),), index="flat")
    bank = build_bank(photos, spec, tmp_path / "cache", masks_dir=masks, recall_queries=20)
    plain = build_bank(photos, spec, tmp_path / "cache", recall_queries=20)
    assert plain.root != bank.root  # masks are part of the fingerprint
    sb = bank.scales[0]
    assert set(sb.classes) == {"all", "c0", "c1", "c2"}
    ref = all_patches(photos, 32, 8, 4)
    for c in (0, 1, 2):
        want = []
        for i, p in enumerate(photos):
            mp = masks / f"{p.stem}.png"
            if not mp.exists():
                continue  # a photo without a mask is only in the class-agnostic bank
            lab = np.asarray(Image.open(mp))
            for r, y in enumerate(range(0, 32 - 8 + 1, 4)):
                for col, x in enumerate(range(0, 32 - 8 + 1, 4)):
                    if (lab[y:y + 8, x:x + 8] == c).mean() >= 0.5:
                        want.append(i * 49 + r * 7 + col)
        ci = sb.classes[f"c{c}"]
        np.testing.assert_array_equal(ci.ids, want)
        np.testing.assert_allclose(ci.mean.double().numpy(), ref[want].mean(0), atol=1e-5)
        got = ci.search(ci.to_search(torch.from_numpy(ref[want[:5]]).float()), 1)
        assert got[:, 0].tolist() == want[:5]  # searches return global ids of that class only
    assert sb.index_for(1) is sb.classes["c1"]
    assert sb.index_for(9) is sb.classes["c0"]  # class missing from the bank -> background
    assert sb.index_for(None) is sb.classes["all"]
    del sb.classes["c0"]
    assert sb.index_for(9) is sb.classes["all"]


def test_semantic_loss_uses_class_banks(tmp_path):
    from methods.contextual import ContextualLoss, cx_loss

    photos = make_photos(tmp_path / "photos", n=6, size=24, seed=4)
    masks = make_masks(tmp_path / "masks", photos, 24, labels=(0, 1))
    bank = build_bank(photos, BankSpec(image_size=24, scales=((8, 4),), index="flat"), tmp_path / "c",
                      masks_dir=masks, recall_queries=10)
    torch.manual_seed(0)
    img = torch.rand(1, 3, 24, 24) * 2 - 1
    labels = torch.zeros(1, 24, 24, dtype=torch.long)
    labels[:, 12:] = 3  # class 3 is not in the bank: background bank
    loss = ContextualLoss(bank, k=2)(img, labels)
    sb = bank.scales[0]
    raw = unfold_patches(img, 8, 4)[0]
    top = torch.arange(25)[torch.arange(25) // 5 < 2]  # rows y=0,4 -> all label 0
    bottom = torch.arange(25)[torch.arange(25) // 5 >= 3]  # rows y=12,16 -> all label 3
    mixed = torch.arange(25)[torch.arange(25) // 5 == 2]  # y=8: half 0, half 3 -> both classes
    want = 0.0
    ci = sb.classes["c0"]
    for idx in (torch.cat([top, mixed]), torch.cat([mixed, bottom])):
        idx = idx.sort().values
        ids = torch.unique(ci.search(ci.to_search(raw[idx]), 2))
        want += float(cx_loss(raw[idx], sb.gather(ids), ci.mean))
    assert float(loss) == pytest.approx(want, rel=1e-5)


def test_resize_matches_training_loader(photos):
    """The bank resizes like CycleGAN's loader (PIL bicubic, then x / 127.5 - 1)."""
    arr, used = load_resized(photos[:2], 20)
    assert arr.shape == (2, 20, 20, 3) and arr.dtype == np.uint8 and used == list(photos[:2])
    ref = np.asarray(Image.open(photos[0]).convert("RGB").resize((20, 20), Image.BICUBIC))
    np.testing.assert_array_equal(arr[0], ref)
    assert float(to_unit(torch.tensor([0, 255], dtype=torch.uint8)).abs().max()) == 1.0


# ----------------------------------------------------------------------------- chunked exact search
def _exact_reference(q: np.ndarray, v: np.ndarray, k: int, geometry: str) -> tuple[np.ndarray, np.ndarray]:
    """float64 NumPy: similarity (inner product, or -squared distance), best first, ties to the lower row."""
    if geometry == "cosine":
        sim = q @ v.T
    else:
        sim = -((q[:, None, :] - v[None]) ** 2).sum(-1)
    order = np.stack([np.lexsort((np.arange(len(v)), -row))[:k] for row in sim])
    return np.take_along_axis(sim, order, 1), order


@pytest.mark.parametrize("geometry", ["cosine", "l2"])
@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 0])
def test_chunked_search_equals_exact_search_ties_included(geometry, chunk):
    """Small integers make every score exact in float32 and give many ties (several rows are
    repeated on purpose): indices and distances must equal a one-shot float64 search whose ties go
    to the lower row, for any block size."""
    rng = np.random.default_rng(3)
    v = rng.integers(-2, 3, size=(50, 6)).astype(np.float64)
    v[[10, 20, 30, 49]] = v[5]  # duplicates: equal scores for every query
    q = rng.integers(-2, 3, size=(9, 6)).astype(np.float64)
    q[0] = v[5]
    k = 7
    want_sim, want_pos = _exact_reference(q, v, k, geometry)
    qt, vt = torch.from_numpy(q).float(), torch.from_numpy(v).float()
    got_sim, got_pos = chunked_search(qt, vt, k, geometry, chunk)
    np.testing.assert_array_equal(got_pos.numpy(), want_pos)
    if geometry == "cosine":
        np.testing.assert_array_equal(got_sim.numpy(), want_sim)
    else:  # the search's score is |q|^2 - |q - v|^2
        np.testing.assert_array_equal((q ** 2).sum(1, keepdims=True) - got_sim.double().numpy(), -want_sim)
    if geometry == "l2":  # the query is row 5: it and its four copies, at distance 0, lowest rows first
        assert got_pos[0, :5].tolist() == [5, 10, 20, 30, 49]
    # more neighbours than rows: every row, once
    _, all_pos = chunked_search(qt, vt[:4], 10, geometry, 3)
    assert all_pos.shape == (9, 4) and all(sorted(r) == [0, 1, 2, 3] for r in all_pos.tolist())


def test_topk_rows_breaks_ties_towards_the_lower_column():
    s = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    vals, cols = topk_rows(s, 3)
    assert cols.tolist() == [[1, 2, 4], [0, 1, 2]] and vals.tolist() == [[3, 3, 3], [0, 0, 0]]


@pytest.mark.parametrize("geometry", ["cosine", "l2"])
def test_torch_backend_searches_in_blocks(photos, tmp_path, geometry, monkeypatch):
    """The bank's torch search with tiny blocks returns what faiss' exact index returns, and never
    scores more than a block of the bank at once."""
    from methods import memory_bank as mb

    spec = BankSpec(image_size=SIZE, scales=((8, 4),), index="flat", geometry=geometry, search_chunk=11)
    faiss_bank = build_bank(photos, spec, tmp_path, recall_queries=20, backend="faiss")
    torch_bank = build_bank(photos, spec, tmp_path, backend="torch")
    widths = []
    real_scores = mb.scores
    monkeypatch.setattr(mb, "scores", lambda q, v, g, sq=None: widths.append(len(v)) or real_scores(q, v, g, sq))
    q = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, size=(13, 192))).float()
    a, b = faiss_bank.scales[0].classes["all"], torch_bank.scales[0].classes["all"]
    got = b.search(b.to_search(q), 5)
    assert widths and max(widths) == 11 and sum(widths) == len(b)
    assert torch.equal(got, a.search(a.to_search(q), 5))
    settings = b.settings()
    assert settings["backend"] == "torch" and settings["search_chunk"] == 11 and settings["exact"] is True
    assert ("raw patch pixels" in settings["retrieval_space"]) == (geometry == "l2")


# ----------------------------------------------------------------------------- recall guard
def _clustered_photos(folder, n=30, size=32, seed=0):
    """Photos of a few flat colours plus noise: patches form tight clusters, each split over many
    IVF lists when nlist is large, so a one-list probe misses most true neighbours."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    centres = rng.uniform(40, 215, size=(4, 3))
    paths = []
    for i in range(n):
        img = centres[i % 4][None, None, :] + rng.normal(0, 30, size=(size, size, 3))
        p = folder / f"c{i:03d}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB").save(p)
        paths.append(p)
    return paths


def test_recall_guard_refuses_a_low_recall_index_and_passes_the_exact_one(tmp_path):
    from methods.memory_bank import LowRecallError, recall_guard

    photos = _clustered_photos(tmp_path / "photos")
    low = BankSpec(image_size=32, scales=((8, 4),), index="ivf", ivf_nlist=64, nprobe=1)
    bank = build_bank(photos, low, tmp_path / "c", recall_queries=50)
    with pytest.raises(LowRecallError) as info:
        recall_guard(bank, photos[:5], k=5, n_queries=200, min_recall=0.9)
    first, *rest = str(info.value).splitlines()  # one line saying what, then the usual hint line
    assert "8:4" in first and "nprobe=1" in first and "min_recall=0.9" in first and "recall@5" in first
    assert len(rest) == 1 and "min_recall=0" in rest[0]
    # told to train anyway: measured and recorded, not refused
    rec = recall_guard(bank, photos[:5], k=5, n_queries=200, min_recall=0)
    measured = rec["scales"]["p8s4"]
    assert measured["recall"] < 0.9 and measured["n_queries"] == 200 and measured["search"]["index"] == "ivf"
    # more probes find more true neighbours (the guard measures the search as loaded)
    more = build_bank(photos, dataclasses.replace(low, nprobe=64), tmp_path / "c")
    assert more.root == bank.root  # nprobe is search-time only: the same bank
    assert recall_guard(more, photos[:5], k=5, n_queries=200, min_recall=0.9)["scales"]["p8s4"]["recall"] > 0.99
    exact = build_bank(photos, dataclasses.replace(low, index="flat"), tmp_path / "c")
    for backend in ("faiss", "torch"):
        loaded = build_bank(photos, dataclasses.replace(low, index="flat", search_chunk=100), tmp_path / "c",
                            backend=backend)
        assert loaded.root == exact.root
        got = recall_guard(loaded, photos[:5], k=5, n_queries=200, min_recall=0.9)["scales"]["p8s4"]
        assert got["recall"] == 1.0 and got["search"]["backend"] == backend


def test_recall_guard_uses_fewer_queries_on_a_small_bank(photos, tmp_path):
    from methods.memory_bank import recall_guard

    bank = build_bank(photos[:2], BankSpec(image_size=SIZE, scales=((8, 4),), index="flat"), tmp_path,
                      recall_queries=10)
    rec = recall_guard(bank, None, k=5, n_queries=500, min_recall=0.9)["scales"]["p8s4"]
    assert rec["n_queries"] == len(bank.scales[0].classes["all"]) == 2 * 25 and rec["recall"] == 1.0


def test_recall_counts_tied_neighbours_as_hits(tmp_path):
    """A bank of six identical photos: each query patch has six equally near copies and the exact
    top 5 holds five of them. An index that returns the sixth instead is still exact: id overlap
    would say 0.8, the recall here says 1.0; a far patch is a miss."""
    from methods.memory_bank import exact_search, recall_at_k

    p = make_photos(tmp_path / "one", n=1, size=SIZE, seed=4)[0]
    copies = [shutil.copy(p, tmp_path / f"copy{i}.png") for i in range(6)]
    bank = build_bank(copies, BankSpec(image_size=SIZE, scales=((8, 4),), index="flat"), tmp_path / "c",
                      recall_queries=10)
    sb = bank.scales[0]
    per = sb.per_image
    q = sb.classes["all"].to_search(sb.gather(torch.arange(10)))
    exact_v, exact_i = exact_search(sb, q, 5, chunk_images=2)
    found = exact_i.clone()
    for row in range(10):
        assert set(exact_i[row].tolist()) <= {row + c * per for c in range(6)}
        (missing,) = {row + c * per for c in range(6)} - set(exact_i[row].tolist())
        found[row, 4] = missing
    assert recall_at_k(sb, q, found, exact_v) == 1.0
    vecs = sb.classes["all"].to_search(sb.gather(torch.arange(per)))
    far = int(torch.argmin(vecs @ q[0]))
    assert recall_at_k(sb, q[:1], torch.full((1, 5), far), exact_v[:1]) == 0.0


# ----------------------------------------------------------------------------- build speed, same answers
def test_patches_at_equals_the_unfolded_rows():
    """The strided-window cut gives exactly the rows of unfolding whole photos (values and order)."""
    from methods.memory_bank import _patch_vectors, _patches_at

    images = np.random.default_rng(0).integers(0, 256, size=(5, 29, 29, 3), dtype=np.uint8)
    for patch, stride in ((8, 5), (6, 3), (29, 1)):
        every = _patch_vectors(images, 0, len(images), patch, stride)
        ids = np.sort(np.random.default_rng(1).choice(len(every), size=min(40, len(every)), replace=False))
        assert torch.equal(_patches_at(images, ids, patch, stride), every[torch.from_numpy(ids)])
        assert torch.equal(_patches_at(images, np.arange(len(every)), patch, stride), every)


def test_recall_queries_pick_the_same_patches_as_unfolding_every_query_image(photos):
    """Query patches are cut only where picked; the picks (and the rng stream after them) are the
    ones unfolding every query image and indexing into it gave."""
    from methods.memory_bank import _patch_vectors, _recall_queries

    spec = BankSpec(image_size=SIZE, scales=((8, 4), (6, 5)))
    got = _recall_queries(photos[:5], None, spec, 30, np.random.default_rng(3), False)
    rng = np.random.default_rng(3)
    qimgs, _ = load_resized(photos[:5], SIZE)
    for patch, stride in spec.scales:
        raw = _patch_vectors(qimgs, 0, len(qimgs), patch, stride)
        pick = rng.choice(len(raw), size=30, replace=False)
        assert torch.equal(got[(patch, stride)], raw[torch.from_numpy(np.sort(pick))])


def test_ivfpq_skips_polysemous_training_with_the_same_search_answers():
    """index_factory's IVF-PQ trains its PQ for polysemous search (minutes at PQ96x8, whatever the
    bank size); that only relabels the codes, so the bank's index (trained without it) returns the
    same distances and ids as the factory's default."""
    import faiss

    from methods.memory_bank import _build_index

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((3000, 48)).astype(np.float32))
    spec = BankSpec(image_size=SIZE, scales=((4, 2),), geometry="l2", index="ivfpq", ivf_nlist=16, nprobe=4,
                    pq_bits=4)
    timings: dict[str, float] = {}
    index, factory = _build_index("ivfpq", iter([x[:1700], x[1700:]]), len(x), 48, spec, x, timings)
    assert factory == "IVF16,PQ6x4" and set(timings) == {"train_s", "add_s"}
    assert not faiss.downcast_index(faiss.extract_index_ivf(index)).do_polysemous_training
    ref = faiss.index_factory(48, factory, faiss.METRIC_L2)
    assert faiss.downcast_index(faiss.extract_index_ivf(ref)).do_polysemous_training  # the factory default
    ref.train(x.numpy())
    ref.add(x.numpy())
    faiss.extract_index_ivf(ref).nprobe = 4
    q = x.numpy()[::37] + 0.05
    d_got, i_got = index.search(q, 10)
    d_ref, i_ref = ref.search(q, 10)
    np.testing.assert_array_equal(i_got, i_ref)
    np.testing.assert_array_equal(d_got, d_ref)


def test_recall_guard_reuses_exact_neighbours_across_search_settings(tmp_path, monkeypatch):
    """An nprobe grid on one bank runs the exact search once per query set; the answers equal
    measuring each setting from scratch."""
    import methods.memory_bank as mb

    photos = _clustered_photos(tmp_path / "photos")
    spec = BankSpec(image_size=32, scales=((8, 4),), index="ivf", ivf_nlist=64, nprobe=1)
    fresh = {n: mb.recall_guard(build_bank(photos, dataclasses.replace(spec, nprobe=n), tmp_path / "c",
                                           recall_queries=20), photos[:5], k=5, n_queries=200, min_recall=0)
             for n in (1, 8)}
    calls = []
    real = mb.exact_search
    monkeypatch.setattr(mb, "exact_search", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    cache: dict = {}
    for n in (1, 8):
        bank = build_bank(photos, dataclasses.replace(spec, nprobe=n), tmp_path / "c")
        got = mb.recall_guard(bank, photos[:5], k=5, n_queries=200, min_recall=0, exact_cache=cache)
        assert got["scales"]["p8s4"]["recall"] == fresh[n]["scales"]["p8s4"]["recall"]
    assert len(calls) == 1 and fresh[1]["scales"]["p8s4"]["recall"] < fresh[8]["scales"]["p8s4"]["recall"]


def test_paper_profile_searches_with_the_measured_effort():
    """docs/benchmarks.md: nprobe 16 / refine 4 gave recall@5 0.887 at 8:5 on 1,000 real photos;
    the paper profile uses the setting chosen there (raw-pixel L2, nprobe 32, refine 16)."""
    from methods.ours import MemoryBankCycleGAN, bank_spec

    spec = bank_spec(MemoryBankCycleGAN.default_config("paper"))
    assert (spec.geometry, spec.index, spec.nprobe, spec.refine, spec.scales) == ("l2", "auto", 32, 16, ((16, 6), (8, 5)))
