"""The translate-size policy (issue 11 §4): one effective resolution per table.

Every method, "original" included, translates at the profile's translate size and is resized
back; the reference photos get the same down-up resize; the size is part of the run id and is
recorded. Expected pixels are computed here with PIL directly, not with the code under test.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.core.spec import RunSpec, canonical
from benchmark.data import resolution
from benchmark.pipeline import runner


def _image(path: Path, h: int, w: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR).save(path)  # smooth, not noise
    return path


def _pil_down_up(path: Path, work: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        return np.asarray(im.resize(work, Image.Resampling.BICUBIC).resize(im.size, Image.Resampling.BICUBIC))


def test_work_size_scales_the_shorter_side_then_caps_the_longer():
    assert resolution.work_size(256, 256, 64) == (64, 64)
    assert resolution.work_size(64, 48, 32) == (43, 32)  # 64 * 32 / 48 = 42.67, aspect kept
    assert resolution.work_size(20, 30, 64) == (64, 96)  # smaller paintings are brought to the size too
    assert resolution.work_size(256, 256, None) == (256, 256)
    assert resolution.work_size(4000, 3000, None, max_side=1024) == (1024, 768)
    assert resolution.work_size(100, 4000, 64, max_side=1024) == (26, 1024)  # side first, then the cap


def test_profiles_ci_and_smoke_translate_at_their_training_crop_and_quick_paper_native():
    from baselines.cyclegan import CycleGAN

    for profile in ("ci", "smoke"):
        assert resolution.side_for(profile) == CycleGAN.default_config(profile).crop_size
    assert resolution.side_for("quick") is None and resolution.side_for("paper") is None


def test_the_side_is_part_of_the_run_id_and_native_specs_keep_their_old_ids():
    base = dict(method="cyclegan", artist="monet", profile="paper", seed=0, overrides={}, data_fingerprint="fp")
    native = RunSpec.make(**base, method_version="1")
    assert "translate_side" not in native.as_dict()
    # the id a native spec had before the field existed: the same fields, hashed independently
    old = {"method": "cyclegan", "artist": "monet", "profile": "paper", "seed": 0, "overrides": [],
           "data_fingerprint": "fp", "spec_version": 2, "config_hash": "", "method_version": "1"}
    assert native.run_id == hashlib.sha256(canonical(old).encode()).hexdigest()[:12]
    at64 = RunSpec.make(**base | {"profile": "smoke"}, method_version="1", translate_side=64)
    assert at64.as_dict()["translate_side"] == 64
    assert at64.run_id != RunSpec.make(**base | {"profile": "smoke"}, method_version="1").run_id
    assert RunSpec.from_json(at64.canonical_json()) == at64
    assert RunSpec.from_json(native.canonical_json()).translate_side is None


def test_reference_copies_are_the_down_up_images_cached_by_content(tmp_path):
    photos = [_image(tmp_path / "a.png", 48, 64, 0), _image(tmp_path / "b.png", 32, 32, 1)]
    assert resolution.reference_copies(photos, None, tmp_path / "cache") == photos  # native: the files
    copies = resolution.reference_copies(photos, 32, tmp_path / "cache")
    assert np.array_equal(np.asarray(Image.open(copies[0])), _pil_down_up(photos[0], (43, 32)))
    assert np.array_equal(np.asarray(Image.open(copies[1])), np.asarray(Image.open(photos[1]).convert("RGB")))
    stamp = copies[0].stat().st_mtime_ns
    assert resolution.reference_copies(photos, 32, tmp_path / "cache") == copies and copies[0].stat().st_mtime_ns == stamp
    other = resolution.reference_copies(photos, 16, tmp_path / "cache")
    assert other[0] != copies[0]  # another side, another copy
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    from benchmark.data import BadImageError

    with pytest.raises(BadImageError):
        resolution.reference_copies([bad], 32, tmp_path / "cache")
    assert resolution.reference_copies([bad, photos[0]], 32, tmp_path / "cache", skip_bad=True) == copies[:1]


class _Spy:
    """A method that records the size it is handed and returns its input (so the output is the
    harness's resize alone)."""

    name = "spy"
    device = torch.device("cpu")

    def __init__(self):
        self.sizes: list[tuple[int, int]] = []

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append((x.shape[-1], x.shape[-2]))
        return x


def test_translate_all_hands_every_method_the_translate_size_and_resizes_back(tmp_path):
    src = [_image(tmp_path / "wide.png", 48, 64, 2), _image(tmp_path / "small.png", 24, 24, 3)]
    spy = _Spy()
    outs = runner.translate_all(spy, [(p, p.name) for p in src], tmp_path / "out", 0, False, progress=False, side=32)
    assert spy.sizes == [(43, 32), (32, 32)]
    for s, o, work in zip(src, outs, [(43, 32), (32, 32)]):
        got = np.asarray(Image.open(o))
        assert got.shape == np.asarray(Image.open(s)).shape[:2] + (3,)
        # identity in between: exactly the down-up resize (the to/from tensor round trip is exact on uint8)
        assert np.abs(got.astype(int) - _pil_down_up(s, work).astype(int)).max() <= 1


def _tiny_root(root: Path) -> Path:
    for split, seed in (("paintings/monet/train", 0), ("paintings/monet/test", 1), ("photos/train", 2),
                        ("photos/test", 3)):
        (root / split).mkdir(parents=True)
        for i in range(4):
            _image(root / split / f"{i}.png", 48, 64 if i % 2 else 48, seed * 10 + i)
    return root


def test_a_ci_run_of_original_is_the_down_up_painting_measured_against_down_up_photos(tmp_path, home, monkeypatch):
    root = _tiny_root(tmp_path / "data")
    seen = {}
    real_evaluate = runner.evaluate_paths

    def spy(fake, real, *a, **k):
        seen["fake"], seen["real"] = list(fake), list(real)
        return real_evaluate(fake, real, *a, **k)

    monkeypatch.setattr(runner, "evaluate_paths", spy)
    res = runner.execute("original", "monet", profile="ci", data_root=root, home=home, progress=False)
    assert res.spec.translate_side == 32
    info = json.loads((res.run_dir / "spec.json").read_text())
    assert info["translate"]["side"] == 32 and info["translate"]["max_side"] == resolution.MAX_TRANSLATE_SIDE
    tests = sorted((root / "paintings/monet/test").iterdir())
    for p in tests:
        out = np.asarray(Image.open(res.run_dir / "translated" / f"{p.name}.png"))
        with Image.open(p) as im:
            work = (43, 32) if im.width == 64 else (32, 32)
        assert np.abs(out.astype(int) - _pil_down_up(p, work).astype(int)).max() <= 1
    photos = sorted((root / "photos/test").iterdir())
    assert len(seen["real"]) == len(photos)
    for p, copy in zip(photos, seen["real"]):
        assert copy != p and str(copy).startswith(str(home / "cache" / "resized"))
        with Image.open(p) as im:
            work = (43, 32) if im.width == 64 else (32, 32)
        assert np.array_equal(np.asarray(Image.open(copy)), _pil_down_up(p, work))


def test_the_leaderboard_labels_rows_measured_at_another_translate_size():
    from reports.leaderboard import tags_of

    spec = {"method": "original", "artist": "monet", "profile": "smoke", "seed": 0, "overrides": [],
            "data_fingerprint": "", "spec_version": 2, "config_hash": "", "method_version": "1"}
    assert "translated at native size, now 64 px" in tags_of("original", "smoke", "run", json.dumps(spec), "")
    assert "translated at" not in tags_of("original", "smoke", "run", json.dumps(spec | {"translate_side": 64}), "")
    assert "translated at" not in tags_of("original", "paper", "run", json.dumps(spec | {"profile": "paper"}), "")


def test_shift_refuses_runs_made_at_different_translate_sizes(tmp_path):
    from benchmark.analyses.shift import ImageSet, translate_side
    from benchmark.core.errors import ArtshiftError

    class Store:
        specs = {"r64": {"translate_side": 64}, "rnative": {}, "r64b": {"translate_side": 64}}

        def run(self, run_id):
            return {"spec_json": json.dumps(self.specs[run_id])}

    sets = [ImageSet("original", [], None), ImageSet("cyclegan", [], "r64"), ImageSet("cut", [], "r64b")]
    assert translate_side(Store(), sets, "paper") == 64  # the runs decide, not the profile asked for
    assert translate_side(Store(), sets[:1], "smoke") == 64 and translate_side(Store(), sets[:1], "paper") is None
    with pytest.raises(ArtshiftError, match="different sizes.*native: gatys \\(rnative\\)"):
        translate_side(Store(), sets + [ImageSet("gatys", [], "rnative")], "smoke")
