"""Registry, profiles/overrides, run spec and store: the harness plumbing (leaderboards: test_leaderboard.py)."""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest

from benchmark.core import registry
from benchmark.core.errors import ArtshiftError
from benchmark.core.profiles import apply_overrides, check_profile, parse_overrides
from benchmark.core.spec import RunSpec
from benchmark.core.store import MetricRow, Store
from benchmark.metrics import display_name


def test_registry_did_you_mean_and_no_duplicates():
    with pytest.raises(ArtshiftError, match="did you mean 'cyclegan'"):
        registry.methods.entry("cyclgan")
    with pytest.raises(ValueError, match="already registered"):
        registry.methods.register("cyclegan", "x:y", "dup")
    assert {"original", "cyclegan", "ours", "cut", "fastcut", "gatys"} <= set(registry.methods.names())


def test_registry_is_lazy_until_get():
    r = registry.Registry("thing")
    r.register("json_dumps", "json:dumps", "stdlib")
    assert "json_dumps" in r
    import json

    assert r.get("json_dumps") is json.dumps


@dataclasses.dataclass(frozen=True)
class _Cfg:
    lr: float = 2e-4
    n_blocks: int = 9
    flip: bool = True
    scales: tuple[str, ...] = ("16:6", "8:5")
    name: str | None = None


def test_overrides_are_typed_and_checked():
    cfg = apply_overrides(_Cfg(), parse_overrides(["lr=1e-3", "n_blocks=6", "flip=false", "scales=8:5",
                                                   "name=none"]))
    assert cfg == _Cfg(lr=1e-3, n_blocks=6, flip=False, scales=("8:5",), name=None)
    with pytest.raises(ArtshiftError, match="did you mean 'lr'"):
        apply_overrides(_Cfg(), {"lrr": "1"})
    with pytest.raises(ArtshiftError, match="cannot read this as int"):
        apply_overrides(_Cfg(), {"n_blocks": "six"})
    with pytest.raises(ArtshiftError, match="key=value"):
        parse_overrides(["lr"])
    with pytest.raises(ArtshiftError, match="did you mean 'smoke'"):
        check_profile("smok")


def test_run_id_depends_on_every_spec_field_and_roundtrips():
    base = RunSpec.make("cyclegan", "monet", "smoke", 0, {"lr": "1"}, "abc")
    variants = [RunSpec.make("ours", "monet", "smoke", 0, {"lr": "1"}, "abc"),
                RunSpec.make("cyclegan", "cezanne", "smoke", 0, {"lr": "1"}, "abc"),
                RunSpec.make("cyclegan", "monet", "paper", 0, {"lr": "1"}, "abc"),
                RunSpec.make("cyclegan", "monet", "smoke", 1, {"lr": "1"}, "abc"),
                RunSpec.make("cyclegan", "monet", "smoke", 0, {"lr": "2"}, "abc"),
                RunSpec.make("cyclegan", "monet", "smoke", 0, {"lr": "1"}, "abd")]
    ids = {v.run_id for v in variants}
    assert len(ids) == len(variants) and base.run_id not in ids
    assert RunSpec.from_json(base.canonical_json()) == base
    # override order does not matter
    assert RunSpec.make("m", "monet", "smoke", 0, {"a": "1", "b": "2"}, "").run_id == \
        RunSpec.make("m", "monet", "smoke", 0, {"b": "2", "a": "1"}, "").run_id


def _row(dims, value, n_fake=10, metric="fid", ext="random-init:sd-1:cal-2", tag="random-init"):
    layer = f"inception:{dims}"
    return MetricRow(metric, layer, display_name(metric, layer, tag), value, 402, n_fake, ext, "clean", "fid-1")


def _add(store, run_id, method, artist, rows, seed=0, profile="smoke", status="done"):
    store.start_run(run_id, kind="run", method=method, artist=artist, profile=profile, seed=seed, spec_json="{}",
                    run_dir=None, data_fingerprint="x")
    store.add_metrics(run_id, rows)
    store.finish_run(run_id, status, {"fit_s": 1.0})


def test_the_printed_run_command_reproduces_the_run_id():
    """Every hint prints ``RunSpec.command()``; fed back through --set parsing it must rebuild the
    same config, hence the same run id, for list, bool and None values too (lists once printed as
    Python lists, which --set cannot read)."""
    from benchmark.core.registry import methods
    from benchmark.pipeline.runner import make_spec

    for method, overrides in (("cut", {"nce_layers": "pad,down1_conv,res2", "flip": "false"}),
                              ("ours", {"bank_image_size": "none", "lr": "1e-4"})):
        _, _, spec = make_spec(method, "monet", "ci", 3, overrides, "fp")
        words = spec.command().split()
        assert words[:9] == ["bench", "run", "--method", method, "--artist", "monet", "--profile", "ci", "--seed"]
        again = dict(parse_overrides([words[i + 1] for i, w in enumerate(words) if w == "--set"]))
        assert make_spec(method, "monet", "ci", int(words[9]), again, "fp")[2].run_id == spec.run_id
        assert set(again) == set(overrides) and methods.get(method)


def test_store_roundtrip_wal_and_only_done_runs_in_results(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    _add(store, "a", "cyclegan", "monet", [_row(2048, 50.0), _row(64, 0.5)])
    _add(store, "b", "ours", "monet", [_row(2048, 40.0)], status="failed")
    df = store.results()
    assert set(df.run_id) == {"a"} and len(df) == 2
    assert (df.n_real == 402).all() and (df.n_fake == 10).all()
    run = store.run("a")
    assert run["status"] == "done" and "torch" in run["provenance_json"]
    mode = sqlite3.connect(tmp_path / "r.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
