"""Run identity v2: what makes two runs the same run, and file naming that never collides."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.core.spec import RunSpec
from benchmark.pipeline import runner

FIXTURE = Path(__file__).parent / "fixtures" / "results_v1.sqlite"


def _id(overrides=None, fp="fp", method="cyclegan", profile="smoke", seed=0):
    return runner.make_spec(method, "monet", profile, seed, overrides or {}, fp)[2].run_id


def test_overrides_hash_by_value_not_by_text():
    assert _id({"lr": "1e-3"}) == _id({"lr": "0.001"}) == _id({"lr": "0.0010"})
    assert _id({"lr": "1e-3"}) != _id({"lr": "2e-3"})
    assert _id({"flip": "false"}) == _id({"flip": "0"})
    # an override equal to the default resolves to the same config (the override stays on display)
    base = runner.make_spec("cyclegan", "monet", "smoke", 0, {}, "fp")[2]
    same_cfg = runner.make_spec("cyclegan", "monet", "smoke", 0, {"lr": "0.0002"}, "fp")[2]
    assert same_cfg.config_hash == base.config_hash


def test_changed_default_and_method_version_are_new_runs(monkeypatch):
    from baselines.cyclegan import CycleGAN

    before = _id()
    original = CycleGAN.default_config

    def other_default(profile):
        return dataclasses.replace(original(profile), lambda_A=original(profile).lambda_A + 1)

    monkeypatch.setattr(CycleGAN, "default_config", staticmethod(other_default))
    assert _id() != before
    monkeypatch.setattr(CycleGAN, "default_config", original)
    assert _id() == before
    monkeypatch.setattr(CycleGAN, "VERSION", "2")
    assert _id() != before


def test_seed_profile_data_and_method_change_the_id():
    ids = {_id(), _id(seed=1), _id(profile="ci"), _id(fp="other"), _id(method="ours")}
    assert len(ids) == 5


def test_v1_specs_keep_their_ids_and_are_never_a_v2_run(tmp_path):
    con = sqlite3.connect(FIXTURE)
    rows = con.execute("SELECT run_id, spec_json FROM runs").fetchall()
    assert rows
    for run_id, spec_json in rows:
        spec = RunSpec.from_json(spec_json)
        assert spec.spec_version == 1 and spec.run_id == run_id
    v1 = RunSpec.from_json(rows[0][1])
    v2 = runner.make_spec(v1.method, v1.artist, v1.profile, v1.seed, dict(v1.overrides), v1.data_fingerprint)[2]
    assert v2.spec_version == 2 and v2.run_id != v1.run_id
    assert RunSpec.from_json(v2.canonical_json()) == v2


# --- per-image seeds and output names ---------------------------------------------------------

class _Noisy:
    """A stochastic 'method': output = input + noise from the global torch generator."""

    name = "noisy"
    device = torch.device("cpu")

    def translate(self, x):
        return (x + 0.5 * torch.randn_like(x)).clamp(-1, 1)


def _img(path: Path, value: int, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3), value, np.uint8)
    arr[0, 0] = (value * 7) % 256
    Image.fromarray(arr).save(path)
    return path


def _read(p):
    return np.asarray(Image.open(p))


def test_per_image_seed_follows_content_not_position(tmp_path):
    a, b, c = _img(tmp_path / "in" / "a.png", 10), _img(tmp_path / "in" / "b.png", 200), _img(tmp_path / "in" / "c.png", 90)
    one = runner.translate_all(_Noisy(), [(a, "a.png"), (b, "b.png"), (c, "c.png")], tmp_path / "o1", 3, False, False)
    two = runner.translate_all(_Noisy(), [(c, "c.png"), (b, "b.png")], tmp_path / "o2", 3, False, False)
    assert np.array_equal(_read(one[2]), _read(two[0])) and np.array_equal(_read(one[1]), _read(two[1]))
    other_seed = runner.translate_all(_Noisy(), [(a, "a.png")], tmp_path / "o3", 4, False, False)
    assert not np.array_equal(_read(one[0]), _read(other_seed[0]))


def test_same_stem_and_same_name_in_two_classes_never_collide(tmp_path):
    a_jpg = tmp_path / "in" / "a.jpg"
    a_jpg.parent.mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), 30, np.uint8)).save(a_jpg, quality=95)
    a_png = _img(tmp_path / "in" / "a.png", 220, (8, 8))
    dog = _img(tmp_path / "pacs" / "dog" / "pic_001.jpg.src.png", 50)
    horse = _img(tmp_path / "pacs" / "horse" / "pic_001.jpg.src.png", 150)
    sources = [(a_jpg, "a.jpg"), (a_png, "a.png"), (dog, "dog/pic_001.jpg"), (horse, "horse/pic_001.jpg")]
    outs = runner.translate_all(_Noisy(), sources, tmp_path / "out", 0, False, False)
    assert [o.relative_to(tmp_path / "out").as_posix() for o in outs] == [
        "a.jpg.png", "a.png.png", "dog/pic_001.jpg.png", "horse/pic_001.jpg.png"]
    assert len({_read(o).tobytes() for o in outs}) == 4
    with pytest.raises(Exception, match="share the name"):
        runner.translate_all(_Noisy(), [(a_jpg, "x.jpg"), (a_png, "x.jpg")], tmp_path / "dup", 0, False, False)


def test_spec_json_of_a_v2_spec_roundtrips_overrides():
    spec = runner.make_spec("cyclegan", "monet", "smoke", 0, {"lr": "1e-3", "flip": "no"}, "fp")[2]
    assert dict(spec.overrides) == {"flip": "false", "lr": "0.001"}
    assert json.loads(spec.canonical_json())["method_version"] == "1"


def test_a_file_moved_between_train_and_test_is_a_new_run(tmp_path):
    root = tmp_path / "data"
    for i, split in enumerate(("paintings/monet/train", "paintings/monet/test", "photos/train", "photos/test")):
        for j in range(3):
            _img(root / split / f"{split.replace('/', '_')}_{j}.png", 40 * i + j)

    def run_id():
        return runner._resolve_run("cyclegan", "monet", "ci", 0, {}, root, tmp_path / "home", False)[3].run_id

    before = run_id()
    assert run_id() == before  # stable
    moved = root / "photos" / "train" / "photos_train_0.png"
    moved.rename(root / "photos" / "test" / moved.name)
    after = run_id()
    assert after != before
    (root / "photos" / "test" / moved.name).rename(moved)  # moved back: the same run again
    assert run_id() == before


def test_a_run_of_an_older_method_version_is_not_rebuilt_with_todays_code(tmp_path):
    """CUT v1 checkpoints do not fit CUT v2's networks: `bench translate` says why and what still
    works, instead of failing on a state-dict mismatch inside fit()."""
    from baselines.cut import CUT
    from benchmark.core.errors import ArtshiftError
    from benchmark.core.spec import RunSpec
    from benchmark.pipeline.runner import load_trained
    from benchmark.pipeline.runs import FinishedRun

    old = RunSpec("cut", "cezanne", "ci", 0, (), "fp", 2, "cfg", "1")
    assert CUT.VERSION != "1"
    run = FinishedRun(old.run_id, tmp_path, "cut", "cezanne", "ci", 0, {}, tmp_path, old)
    with pytest.raises(ArtshiftError, match=f"made by cut v1; this code is cut v{CUT.VERSION}") as exc:
        load_trained(run, tmp_path)
    assert f"bench eval --run {old.run_id}" in str(exc.value)


def test_a_setting_added_later_keeps_old_ids_at_its_default_and_is_hashed_otherwise():
    """``residual`` was added after runs were stored: its default must leave every run id as it
    was (the hash of the config without the field), and its other value must be a new run."""
    from baselines.cyclegan import CycleGAN
    from benchmark.core.spec import canonical, config_hash

    for profile in ("ci", "smoke", "paper"):
        config = CycleGAN.default_config(profile)
        without = {k: v for k, v in dataclasses.asdict(config).items() if k != "residual"}
        assert config_hash(config) == hashlib.sha256(canonical(without).encode()).hexdigest()[:16]
    def cfg(overrides):
        return runner.make_spec("cyclegan", "monet", "smoke", 0, overrides, "fp")[2].config_hash

    assert cfg({"residual": "true"}) != cfg({}) == cfg({"residual": "false"})
    assert _id({"residual": "true"}) != _id()
