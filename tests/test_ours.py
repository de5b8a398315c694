"""Memory-bank CycleGAN: profiles extend CycleGAN's, the bank lands in the cache and follows the
photos, the contextual term joins the generator objective, semantic masks ride through crops."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from helpers_bank import make_masks, make_photos
from helpers_methods import tiny_data, tiny_run
from PIL import Image

from baselines.cyclegan import CycleGAN
from benchmark.core.profiles import PROFILES, apply_overrides
from benchmark.pipeline.training import train
from methods.ours import MemoryBankCycleGAN, OursConfig, bank_spec


@pytest.mark.parametrize("profile", list(PROFILES))
def test_profiles_extend_cyclegan(profile):
    ours = MemoryBankCycleGAN.default_config(profile)
    base = CycleGAN.default_config(profile)
    assert isinstance(ours, OursConfig)
    for f in dataclasses.fields(base):
        assert getattr(ours, f.name) == getattr(base, f.name), f.name
    spec = bank_spec(ours)
    assert spec.image_size == ours.load_size and spec.scales == ((16, 6), (8, 5))
    assert ours.lambda_cx == 0.1 and ours.k == 5 and ours.h == 1.0
    # the official code retrieves by raw pixels; ci/smoke keep the loss-geometry variant
    assert spec.geometry == ("l2" if profile in ("quick", "paper") else "cosine")
    # the 16 px patch is a quarter of smoke's (and cpu's) 64 px crop and half of ci's 32: the row says so
    coarse = {"ci": ("patch = 1/2 of the crop",), "smoke": ("patch = 1/4 of the crop",),
              "cpu": ("patch = 1/4 of the crop",)}.get(profile, ())
    assert MemoryBankCycleGAN.label_tags(ours) == (
        ("retrieval raw-pixel L2",) if profile in ("quick", "paper") else ("retrieval loss geometry",)) + coarse


def test_bank_settings_are_written_once():
    """OursConfig takes its bank defaults from BankSpec and bank_spec maps every BankSpec field
    (but the seed) back: a setting added to BankSpec without a config field fails here."""
    from methods.memory_bank import BankSpec

    base = OursConfig()
    assert bank_spec(base) == BankSpec(image_size=base.load_size)
    for f in dataclasses.fields(BankSpec):
        if f.name in ("seed", "image_size", "scales"):
            continue
        name = {"geometry": "search_geometry", "index": "bank_index", "exact_max": "bank_exact_max",
                "memory_gb": "bank_memory_gb"}.get(f.name, f.name)
        value = getattr(base, name)
        if isinstance(value, str):
            changed = {"geometry": "l2", "index": "hnsw"}[f.name]
        else:
            changed = (not value) if isinstance(value, bool) else value + 3
        assert getattr(bank_spec(dataclasses.replace(base, **{name: changed})), f.name) == changed, f.name
    assert bank_spec(dataclasses.replace(base, scales="8:4", bank_image_size=40)).scales == ((8, 4),)
    assert bank_spec(dataclasses.replace(base, bank_image_size=40)).image_size == 40


def test_fit_builds_bank_and_adds_cx(tmp_path, home):
    data = tiny_data(tmp_path / "d")
    cfg = MemoryBankCycleGAN.default_config("ci")
    method = MemoryBankCycleGAN(cfg)
    run = tiny_run(tmp_path / "run", home)
    train(method, data, run, stop_after=2)
    banks = list((home / "cache" / "banks").iterdir())
    assert len(banks) == 1 and (banks[0] / "meta.json").exists()
    info = json.loads((run.run_dir / "bank.json").read_text())
    assert info["fingerprint"] == banks[0].name
    # the run records how it searches and what the guard measured before training
    for key in ("p16s6", "p8s5"):
        assert info["search"][key]["all"]["backend"] == "faiss" and info["search"][key]["all"]["index"] == "flat"
        assert "retrieval_space" in info["search"][key]["all"]
        guard = info["recall_guard"]["scales"][key]
        assert guard["recall"] == 1.0 and guard["k"] == cfg.k and 0 < guard["n_queries"] <= cfg.recall_guard_queries
    assert info["recall_guard"]["min_recall"] == cfg.min_recall == 0.9
    losses = method.train_step(method.batch(0, 2), 2)
    assert "cx" in losses and torch.isfinite(losses["cx"]) and float(losses["cx"]) > 0
    # the term is lambda_cx * L_CX of G_A's output
    with torch.no_grad():
        fake = method.G_A(method.batch(0, 3)["A"])
        direct = cfg.lambda_cx * method.cx(fake)
    assert float(direct) > 0
    off = MemoryBankCycleGAN(apply_overrides(cfg, {"lambda_cx": "0"}))
    off.cx = method.cx
    assert off.extra_generator_losses(fake, fake) == {}

    # the bank follows the photos: change one photo's pixels -> a new bank next to the old one
    arr = np.asarray(Image.open(data.photos[0])).copy()
    arr[1, 1] = 255 - arr[1, 1]
    Image.fromarray(arr).save(data.photos[0])
    again = MemoryBankCycleGAN(cfg)
    again.prepare(data, tiny_run(tmp_path / "run2", home))
    assert again.bank.fingerprint != banks[0].name
    assert len(list((home / "cache" / "banks").iterdir())) == 2


def test_gradient_of_cx_reaches_G_A_only(tmp_path, home):
    data = tiny_data(tmp_path / "d")
    method = MemoryBankCycleGAN(MemoryBankCycleGAN.default_config("ci"))
    method.prepare(data, tiny_run(tmp_path / "run", home))
    b = method.batch(0, 0)
    loss = method.extra_generator_losses(b["A"], method.G_A(b["A"]))["cx"]
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in method.G_A.parameters())
    assert sum(float(p.grad.abs().sum()) for p in method.G_A.parameters()) > 0
    assert all(p.grad is None for p in method.G_B.parameters())


def test_semantic_training_with_generated_masks(tmp_path, home):
    data = tiny_data(tmp_path / "d")
    masks = tmp_path / "masks"
    make_masks(masks / "photos", data.photos, 40, labels=(0, 1), seed=1)
    make_masks(masks / "paintings", data.paintings, 40, labels=(0, 2), seed=2, skip=(1,))  # class 2 not in photos
    cfg = apply_overrides(MemoryBankCycleGAN.default_config("ci"), {"masks_dir": str(masks)})
    method = MemoryBankCycleGAN(cfg)
    run = tiny_run(tmp_path / "run", home)
    method.setup(data, run)
    method.prepare(data, run)
    assert set(method.bank.scales[0].classes) >= {"all", "c0", "c1"}
    assert method.paintings.shape[1] == 4
    seen = set()
    for it in range(6):
        b = method.batch(0, it)
        assert b["A"].shape[1] == 3 and b["labels_A"].shape == b["A"].shape[:1] + b["A"].shape[2:]
        seen |= set(torch.unique(b["labels_A"]).tolist())
        losses = method.train_step(b, it)
        assert torch.isfinite(losses["cx"])
    assert seen <= {-1, 0, 2} and {0, 2} <= seen
    # the label channel moves with the pixels: the stored painting and its mask crop alike
    full = method.paintings[0, 3].long()
    assert set(torch.unique(full).tolist()) <= {0, 2, 255}



def test_bank_cli_builds_then_finds(tmp_path, home):
    """``bench bank build`` on a generated subset-layout data root: builds, then finds the same bank."""
    from typer.testing import CliRunner

    from benchmark.cli.bank import bank_app

    root = tmp_path / "data"
    make_photos(root / "photos" / "train", n=5, size=40, seed=1)
    make_photos(root / "photos" / "test", n=2, size=40, seed=2)
    make_photos(root / "paintings" / "cezanne" / "train", n=3, size=40, seed=3, prefix="p")
    make_photos(root / "paintings" / "cezanne" / "test", n=2, size=40, seed=4, prefix="p")
    args = ["build", "--artist", "cezanne", "--profile", "ci", "--data-root", str(root), "--scales", "8:4"]
    first = CliRunner().invoke(bank_app, args)
    assert first.exit_code == 0, first.output
    assert "built in" in first.output and "recall@5 1.000" in first.output and "8:4" in first.output
    where = [ln for ln in first.output.splitlines() if ln.startswith("location: ")][0].split(": ", 1)[1]
    assert where.startswith(str(home / "cache" / "banks"))
    second = CliRunner().invoke(bank_app, args)
    assert second.exit_code == 0 and "found existing" in second.output and where in second.output


def test_training_refuses_a_bank_whose_search_misses_neighbours(tmp_path, home):
    """IVF with one probed list over many lists misses most true neighbours of these noisy photos:
    training stops before its first iteration unless min_recall=0, and bank.json says why."""
    from benchmark.core.errors import ArtshiftError
    from methods.memory_bank import LowRecallError

    data = tiny_data(tmp_path / "d")
    data.photos = make_photos(tmp_path / "many", n=40, size=36, seed=7)
    sets = {"scales": "8:4", "bank_index": "ivf", "ivf_nlist": "50", "nprobe": "1"}
    cfg = apply_overrides(MemoryBankCycleGAN.default_config("ci"), sets)
    run = tiny_run(tmp_path / "run", home)
    with pytest.raises(LowRecallError, match="min_recall=0.9"):
        train(MemoryBankCycleGAN(cfg), data, run, stop_after=1)
    assert not (run.checkpoint_dir / "last.pt").exists() and not list(run.checkpoint_dir.iterdir())
    assert "min_recall" in json.loads((run.run_dir / "bank.json").read_text())["recall_guard"]["refused"]
    told = apply_overrides(cfg, {"min_recall": "0"})
    run2 = tiny_run(tmp_path / "run2", home)
    assert train(MemoryBankCycleGAN(told), data, run2, stop_after=1) == 1
    rec = json.loads((run2.run_dir / "bank.json").read_text())
    assert rec["recall_guard"]["scales"]["p8s4"]["recall"] < 0.9
    assert rec["search"]["p8s4"]["all"]["nprobe"] == 1 and rec["search"]["p8s4"]["all"]["index"] == "ivf"
    with pytest.raises(ArtshiftError):
        apply_overrides(cfg, {"min_recall": "1.5"})
