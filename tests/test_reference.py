"""Issue 23: measuring against another photo reference set, and folder evals at a run's translate side.

1. ``--reference DIR`` on `bench run`, `bench eval` and `bench shift` measures against a folder of
   photos; those rows go to the run's row keyed by the folder's content hash (``<id>@ref-<sha12>``,
   the mechanism of `bench eval --data-root OTHER`), and the run's id, own rows and folder are unchanged.
2. `bench eval --images` of a `bench translate` folder scores it at the run's translate side (from the
   folder's manifest, or ``--translate-side``), so it agrees exactly with the run's own evaluation.

Real ``ci``-profile runs on a tiny generated data set, through the CLI in this process (seconds each).
"""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from helpers_methods import write_set
from test_reliability import _env, bench, error_line, run_dir, tiny_root, tree_digest


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A home with finished ci runs of original and cyclegan (seed 0) on a tiny data set."""
    from benchmark.pipeline import runner

    base = tmp_path_factory.mktemp("reference")
    root, home = tiny_root(base / "data"), base / "home"
    write_set(root / "photos" / "test", 8, 3)  # bench shift needs 8 photos (the first 4 are tiny_root's)
    env = {"ARTSHIFT_HOME": str(home), "ARTSHIFT_WEIGHTS": str(home / "weights"), "ARTSHIFT_OFFLINE": "1",
           "ARTSHIFT_DATA": str(root), "HF_HUB_OFFLINE": "1"}
    with _env(env):
        for method in ("original", "cyclegan"):
            runner.execute(method, "monet", profile="ci", seed=0, data_root=root, home=home, progress=False)
    return {"root": root, "home": home, "env": env, "base": base}


@pytest.fixture
def world(finished, tmp_path, monkeypatch):
    """A private copy of the finished home (test_reliability.copy_home), the environment pointing at it,
    and a reference folder of 8 other photos."""
    from test_reliability import copy_home

    home = copy_home(finished["home"], tmp_path / "home")
    for k, v in {**finished["env"], "ARTSHIFT_HOME": str(home), "ARTSHIFT_WEIGHTS": str(home / "weights")}.items():
        monkeypatch.setenv(k, v)
    ref = tmp_path / "ref"
    write_set(ref, 8, 11)
    return {"root": finished["root"], "home": home, "tmp": tmp_path, "ref": ref}


def _store(home):
    from benchmark.core.store import Store

    return Store(home / "results.sqlite", read_only=True)


def _evals(home, label):
    """The store rows of the folder evaluations labelled ``label`` (``Store.find_runs`` lists trained runs only)."""
    con = sqlite3.connect(home / "results.sqlite")
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM runs WHERE kind='eval' AND method=?", (label,))]
    finally:
        con.close()


def _values(rows):
    return sorted((m["metric"], m["layer"], m["extractor_id"], m["value"]) for m in rows)


def _rows(home):
    """Every run and metric row in the store (what a refused command must not change)."""
    con = sqlite3.connect(home / "results.sqlite")
    try:
        return (con.execute("SELECT run_id, status, updated_at FROM runs ORDER BY run_id").fetchall(),
                con.execute("SELECT run_id, metric, layer, value, created_at FROM metrics ORDER BY 1, 2, 3").fetchall())
    finally:
        con.close()


def _ref_hash(folder):
    from benchmark import data

    return data.fingerprint(data.list_images(folder))


# --- 1. --reference -------------------------------------------------------------------------------

def test_run_with_reference_keeps_the_run_and_measures_only_the_new_rows(world):
    from benchmark.pipeline import runner

    home, ref = world["home"], world["ref"]
    rd = run_dir(home, "cyclegan")
    store = _store(home)
    own = _values(store.metrics_for(rd.name))
    before = tree_digest(rd)
    out, _ = bench("run", "--method", "cyclegan", "--artist", "monet", "--profile", "ci", "--reference", ref,
                   "--quiet")
    assert f"run {rd.name} stored result" in out  # the run id is not changed by --reference, nothing retrained
    h = _ref_hash(ref)
    target = f"{rd.name}@ref-{h[:12]}"
    assert target in out
    row = store.run(target)
    assert row["kind"] == "eval" and row["data_fingerprint"] == h and row["status"] == "done"
    assert json.loads(row["spec_json"])["reference"] == str(ref.resolve())
    measured = store.metrics_for(target)
    assert sorted(m[:3] for m in _values(measured)) == sorted(m[:3] for m in own)
    assert _values(measured) != own  # really measured against the other photos
    assert _values(store.metrics_for(rd.name)) == own and tree_digest(rd) == before  # the run's own: untouched

    def boom(*a, **k):
        raise AssertionError("already measured against this reference: nothing to measure")

    with pytest.MonkeyPatch.context() as mp:  # (monkeypatch.undo() would also undo the fixture's environment)
        mp.setattr(runner, "_measure", boom)
        bench("run", "--method", "cyclegan", "--artist", "monet", "--profile", "ci", "--reference", ref, "--quiet")
    # `bench eval --run --reference` is the same row and the same numbers (one mechanism)
    bench("eval", "--run", rd.name, "--reference", ref, "--quiet")
    assert _values(store.metrics_for(target)) == _values(measured)
    assert _values(store.metrics_for(rd.name)) == own

    table, _ = bench("leaderboard", "--format", "csv")
    assert f"reference photos {h[:12]}" in table and h in table  # its own leaderboard row, with its hash
    bench("store", "rebuild")  # kept in <home>/evals like every re-measurement
    assert bench("leaderboard", "--format", "csv")[0] == table


def test_a_new_run_with_reference_has_its_usual_id_and_own_rows(world):
    from benchmark import data
    from benchmark.pipeline import runner

    home, root, ref = world["home"], world["root"], world["ref"]
    res = runner.execute("original", "monet", profile="ci", seed=3, data_root=root, home=home, progress=False,
                         reference=ref)
    domain = data.ensure_domain("monet", root, home, progress=False)
    *_, spec = runner.make_spec("original", "monet", "ci", 3, {}, data.split_fingerprint(domain))
    assert res.run_id == spec.run_id and not res.reused
    # "original" ignores its seed: its own rows are those of seed 0, made without --reference
    assert _values(res.metrics) == _values(_store(home).metrics_for(run_dir(home, "original").name))
    assert res.reference_id == f"{res.run_id}@ref-{_ref_hash(ref)[:12]}"
    assert _values(res.reference_metrics) != _values(res.metrics)
    assert _values(json.loads((res.run_dir / "metrics.json").read_text())) == _values(
        res.metrics)  # the run folder holds only its own rows
    # --force makes new translations: their rows against the reference are measured again, not kept
    again = runner.execute("original", "monet", profile="ci", seed=3, data_root=root, home=home, progress=False,
                           reference=ref, force=True)
    assert again.reference_id == res.reference_id
    assert min(m["created_at"] for m in again.reference_metrics) > max(m["created_at"] for m in res.reference_metrics)
    # --force without --reference: the rows against the reference described the replaced
    # translations, so they go (store row, metric rows and the copy `bench store rebuild` reads)
    copy = home / "evals" / f"{res.reference_id.replace('/', '_')}.json"
    assert copy.exists()
    runner.execute("original", "monet", profile="ci", seed=3, data_root=root, home=home, progress=False, force=True)
    assert _store(home).run(res.reference_id) is None and not _store(home).metrics_for(res.reference_id)
    assert not copy.exists()
    assert _store(home).run(res.run_id)["status"] == "done"


def test_eval_with_the_runs_own_photos_as_reference_is_its_own_row(world):
    home, root, tmp = world["home"], world["root"], world["tmp"]
    rid = run_dir(home, "original").name
    copy = tmp / "same"
    shutil.copytree(root / "photos" / "test", copy)
    bench("eval", "--run", rid, "--reference", copy, "--quiet")
    con = sqlite3.connect(home / "results.sqlite")
    assert not con.execute("SELECT run_id FROM runs WHERE run_id LIKE '%@ref-%'").fetchall()
    con.close()


def test_shift_with_reference_stores_on_the_reference_row(world):
    from benchmark.analyses.shift import run_shift

    home, ref = world["home"], world["ref"]
    rid = run_dir(home, "cyclegan").name
    kw = dict(runs=[rid], profile="ci", networks="effnet-lite0", layers="effnet-lite0:1280", home=home,
              progress=False, bootstrap=20)  # the CLI's --reference is in the bad-input test below
    own = run_shift("monet", **kw)
    res = run_shift("monet", **kw, reference=ref)
    h = _ref_hash(ref)
    target = f"{rid}@ref-{h[:12]}"
    assert target in res.stored and all("@ref-" in k for k in res.stored)  # (the original run's rows too)
    assert rid in own.stored and not any("@ref-" in k for k in own.stored)
    assert any(h[:12] in note for note in res.notes)
    store = _store(home)
    on_ref = {(m["metric"], m["layer"]): m["value"] for m in store.metrics_for(target)}
    on_own = {(m["metric"], m["layer"]): m["value"] for m in store.metrics_for(rid)}
    key = ("shift_kid", "effnet-lite0:1280")
    assert key in on_ref and on_ref[key] != on_own[key]
    assert store.run(target)["data_fingerprint"] == h
    assert res.out_dir.name == f"monet-ci-ref-{h[:12]}" and own.out_dir.name == "monet-ci"  # one CSV each
    assert (res.out_dir / "shift.csv").is_file() and (own.out_dir / "shift.csv").is_file()


@pytest.mark.parametrize("case", ["missing", "empty", "unreadable"])
def test_a_bad_reference_folder_is_one_error_line_and_nothing_is_recorded(world, case):
    home, tmp = world["home"], world["tmp"]
    folder = tmp / "bad"
    if case != "missing":
        folder.mkdir()
    if case == "unreadable":
        (folder / "a.png").write_text("not an image")
    rid = run_dir(home, "cyclegan").name
    before = _rows(home), tree_digest(home, skip=("results.sqlite", "results.sqlite-wal", "results.sqlite-shm"))
    needle = {"missing": "does not exist", "empty": "holds no images", "unreadable": "a.png"}[case]
    for args in (["run", "--method", "cyclegan", "--artist", "monet", "--profile", "ci"],
                 ["eval", "--run", rid], ["shift", "--artist", "monet", "--profile", "ci", "--runs", rid,
                                          "--networks", "vgg19", "--weights", "random"],
                 ["eval", "--images", run_dir(home, "cyclegan") / "translated", "--artist", "monet",
                  "--name", "x"]):
        _, err = bench(*args, "--reference", folder, "--quiet", code=2)
        assert str(folder) in error_line(err) and needle in error_line(err), (args, err)
        assert "-> " in err  # the fix
    assert (_rows(home), tree_digest(home, skip=("results.sqlite", "results.sqlite-wal", "results.sqlite-shm"))) \
        == before


# --- 2. folder evals at the run's translate side ---------------------------------------------------

def test_a_translated_folder_is_scored_at_the_runs_translate_side(world):
    home, root, tmp = world["home"], world["root"], world["tmp"]
    rd = run_dir(home, "cyclegan")
    store = _store(home)
    out = tmp / "out"
    bench("translate", "--run", rd.name, "--images", root / "paintings" / "monet" / "test", "--out", out, "--quiet")
    assert json.loads((out / "artshift-translations.json").read_text())["translate"]["side"] == 32

    def fid(run_id):
        return sorted((m["layer"], m["extractor_id"], m["value"]) for m in store.metrics_for(run_id)
                      if m["metric"] == "fid")

    own = fid(rd.name)
    assert own
    bench("eval", "--images", out, "--artist", "monet", "--name", "mine", "--quiet")
    [row] = _evals(home, "mine [translated at 32 px]")
    assert json.loads(row["spec_json"])["translate_side"] == 32  # the side is in the row's spec
    assert fid(row["run_id"]) == own  # exactly the run's own evaluation

    bench("eval", "--images", out, "--artist", "monet", "--name", "mine", "--translate-side", "32", "--quiet")
    assert [r["run_id"] for r in _evals(home, "mine [translated at 32 px]")] == [row["run_id"]]  # the same row

    bench("eval", "--images", out, "--artist", "monet", "--name", "mine", "--translate-side", "native", "--quiet")
    [native] = _evals(home, "mine")
    assert "translate_side" not in json.loads(native["spec_json"])
    assert fid(native["run_id"]) != own and len(fid(native["run_id"])) == len(own)  # sharp photos: other numbers

    for bad in ("0", "-3", "big"):
        _, err = bench("eval", "--images", out, "--artist", "monet", "--name", "x", "--translate-side", bad,
                       "--quiet", code=2)
        assert "--translate-side" in error_line(err) and "native" in err
    _, err = bench("eval", "--run", rd.name, "--translate-side", "32", "--quiet", code=2)
    assert "--images" in error_line(err)
