"""`bench reproduce tomei2018`: the published tables as data, Kendall tau with named discordant pairs,
verdicts against the seed spread, and the report on real ci-profile runs (Van Gogh) with --no-run.

The end-to-end part runs `original` and `cyclegan` at the ci profile on a small copy of the Van Gogh
subset (all 40 test paintings, few training images and photos) so that calibrating the random-init
Inception and embedding the photos take seconds; the layout stays the subset layout."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from scipy.stats import kendalltau
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.core.errors import ArtshiftError
from benchmark.core.store import Store
from benchmark.data import list_images
from benchmark.pipeline import runner
from reports import paper

cli = CliRunner()


def test_reference_tables_are_the_published_numbers():
    ref = paper.reference("tomei2018")
    assert ref.artists == ("monet", "cezanne", "vangogh") and ref.methods == ("original", "gatys", "cyclegan", "ours")
    assert ref.value(2048, "original", "vangogh") == 166.72
    assert ref.value(768, "ours", "cezanne") == 0.37 and ref.value(192, "cyclegan", "vangogh") == 0.19
    assert all(len(ref.values[d]) == 4 and all(len(r) == 3 for r in ref.values[d].values()) for d in ref.dims)
    assert "ECCV 2018" in ref.source and ref.direction == "lower"
    # every published number of Table 1 appears in the reference notes the file was transcribed from
    source = Path("/work/shared/reference/tomei2018.md")
    if source.is_file():
        text = source.read_text()
        assert all(f"{v:.2f}" in text for d in ref.dims for r in ref.values[d].values() for v in r.values())
    assert ref.raw["table2"]["rows"][0]["ours"] == 58.4 and ref.raw["table3"]["rows"][2]["generated"] == 12.0
    with pytest.raises(ArtshiftError, match="unknown paper 'tomei2019'"):
        paper.reference("tomei2019")
    with pytest.raises(ArtshiftError, match="no column for ukiyoe"):
        paper.check_artists(ref, ["ukiyoe"])
    assert paper.check_artists(ref, ["vangogh", "monet"]) == ["monet", "vangogh"]


def test_kendall_tau_names_the_discordant_pairs():
    published = {"original": 166.72, "gatys": 101.54, "cyclegan": 86.82, "ours": 81.74}
    ours = {"original": 150.0, "gatys": 80.0, "cyclegan": 90.0, "ours": 70.0}
    tau, pairs, left = paper.kendall(published, ours)
    assert tau == pytest.approx(kendalltau(list(published.values()), list(ours.values())).statistic)
    assert pairs == [("gatys", "cyclegan")] and left == [] and tau == pytest.approx(4 / 6)
    tau, pairs, left = paper.kendall(published, {"original": 1.0, "ours": 2.0})
    assert tau == -1.0 and pairs == [("original", "ours")] and left == ["gatys", "cyclegan"]
    assert paper.kendall(published, {"ours": 1.0})[0] is None


def test_verdicts_judge_swaps_against_two_seed_sds():
    ref = paper.reference("tomei2018")
    published = {m: ref.value(2048, m, "vangogh") for m in ref.methods}
    same = {m: paper.Ours(v / 2, 1.0, 3, 40, 402) for m, v in published.items()}
    assert paper.verdict(ref, published, same) == ("Kendall tau = 1.00; no discordant pair", "verdict: order reproduced")
    swapped = dict(same, gatys=paper.Ours(40.0, 0.5, 3, 40, 402), cyclegan=paper.Ours(45.0, 1.0, 3, 40, 402))
    line, verdict = paper.verdict(ref, published, swapped)
    assert "discordant: gatys/cyclegan" in line
    assert "gatys/cyclegan swapped (paper: cyclegan better; ours: gatys 40.00, cyclegan 45.00; gap 5.00 > 2 seed sd " \
           "(2.00): a real swap)" in verdict
    noisy = dict(swapped, cyclegan=paper.Ours(45.0, 3.0, 3, 40, 402))
    assert "within seed noise" in paper.verdict(ref, published, noisy)[1]
    single = dict(swapped, cyclegan=paper.Ours(45.0, None, 1, 40, 402))
    assert "single seed" in paper.verdict(ref, published, single)[1]


# --- end to end on real ci runs ---------------------------------------------------------------

@pytest.fixture(scope="module")
def small_vangogh(shared_data, tmp_path_factory) -> Path:
    """Van Gogh's 40 test paintings, 8 training paintings, 16 training and 80 test photos (subset layout)."""
    root = tmp_path_factory.mktemp("data")
    picks = {"paintings/vangogh/test": None, "paintings/vangogh/train": 8, "photos/train": 16, "photos/test": 80}
    for rel, n in picks.items():
        (root / rel).mkdir(parents=True)
        for p in list_images(shared_data / rel)[:n]:
            shutil.copy(p, root / rel / p.name)
    return root


@pytest.fixture(scope="module")
def ci_home(small_vangogh, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("reproduce_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ARTSHIFT_HOME", str(home))
        mp.setenv("ARTSHIFT_WEIGHTS", str(home / "weights"))
        mp.setenv("ARTSHIFT_OFFLINE", "1")
        for method in ("original", "cyclegan"):
            runner.execute(method, "vangogh", profile="ci", data_root=small_vangogh, home=home, progress=False)
    return home


@pytest.mark.slow
def test_reproduce_on_ci_runs(ci_home, monkeypatch):
    monkeypatch.setenv("ARTSHIFT_HOME", str(ci_home))
    monkeypatch.setenv("ARTSHIFT_WEIGHTS", str(ci_home / "weights"))
    runs_before = len(Store(ci_home / "results.sqlite").results().run_id.unique())

    res = cli.invoke(app, ["reproduce", "tomei2018", "--profile", "ci", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "would run (profile ci, seed 0): gatys / vangogh" in res.output
    assert "would run (profile ci, seed 0): ours / monet" in res.output
    assert "would run (profile ci, seed 0): original / vangogh" not in res.output
    assert "would measure with inception-tv2018: run" in res.output

    res = cli.invoke(app, ["reproduce", "tomei2018", "--profile", "ci", "--no-run"])
    assert res.exit_code == 0, res.output
    out = res.output
    # the published Van Gogh original beside ours, with n and the delta
    assert re.search(r"\| original \(Original paintings\) \| 74\.45 \| - \(no run\) \| - \| 176\.51 \| - \(no run\) "
                     r"\| - \| 166\.72 \| \d+\.\d\d \(n=40/80\) \| [+-]\d+\.\d\d \|", out), out
    # the installed wheel's real FID Inception made the rows: the notice blames the profile and the data only,
    # and the delta says which Inception and resize made it
    notice = next(line for line in out.splitlines() if line.startswith("NOT COMPARABLE"))
    assert "profile ci, not paper" in notice and "random-init" not in notice
    assert "### extractor inception (fid-inception:" in out
    assert "artshift measured with the FID Inception (TF 2015-12-05 weights" in out and "resize clean" in out
    assert "local subset data" in out and "Only the ranks (Kendall tau) carry information" in out
    assert re.search(r"- vangogh: Kendall tau = -?1\.00 over 2 of 4 methods \(missing: gatys, ours\)", out), out
    assert "- monet: tau: - (fewer than 2 methods measured)" in out
    assert "| gatys (Style Transfer (Gatys et al. 2016)) | 58.02 | - (no run) |" in out
    assert re.search(r"photo floor \(test photos vs the rest\): \d+\.\d\d \+- \d+\.\d\d \(n=40/40, 5 draws\)", out)
    assert out.count("## FID-") == 3 and "extractor inception-tv2018: no rows" in out
    assert "No p-value is given" in out
    assert len(Store(ci_home / "results.sqlite").results().run_id.unique()) == runs_before  # --no-run ran nothing

    # (one test, so that pytest-xdist never builds the runs twice) the finished runs measured with the
    # 2018 pytorch-fid Inception get their own table beside the FID Inception's
    monkeypatch.setenv("ARTSHIFT_OFFLINE", "1")
    ref = paper.reference("tomei2018")
    plan = paper.plan(ref, "ci", ["vangogh"], home=ci_home)
    assert sorted(r["method"] for r in plan.to_measure) == ["cyclegan", "original"]
    steps = list(paper.execute_plan(paper.Plan([], plan.to_measure), "ci", home=ci_home, progress=False))
    assert all(s.startswith("measured run") for s in steps) and len(steps) == 2
    assert paper.plan(ref, "ci", ["vangogh"], home=ci_home).to_measure == []
    text = paper.report(ref, "ci", ["vangogh"], home=ci_home, no_run=True)
    block = text.split("### extractor inception-tv2018 (random-init:")[1]
    assert re.search(r"\| 166\.72 \| \d+\.\d\d \(n=40/80\) \|", block)
    assert "vangogh: Kendall tau" in block
