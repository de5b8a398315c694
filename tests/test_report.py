"""``bench report`` and ``bench ci``: static pages built from the store alone, opened in a real
headless browser (Debian's chromium); ``bench ci`` end to end on one method and one artist."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.core.errors import ArtshiftError
from reports import html as H
from reports import leaderboard as L

METHODS = ("original", "cyclegan", "ours")
METRICS = (("fid", "inception:2048", "FID-2048[random-init]"), ("kid", "inception:2048", "KID-2048[random-init]"))


def _rows(offset: float):
    from benchmark.core.store import MetricRow

    return [MetricRow(metric, layer, name, 10.0 + offset + i, n_real=402, n_fake=10,
                      extractor_id="random-init:sd-000000:cal-000000", resize_mode="clean", metric_version="1")
            for i, (metric, layer, name) in enumerate(METRICS)]


@pytest.fixture
def filled(shared_data, home):
    """cezanne at smoke: three measured methods, one failed gatys run, a shift figure in the home."""
    from test_grids import fake_run

    from benchmark.core.store import Store
    from benchmark.data import ensure_domain

    domain = ensure_domain("cezanne", shared_data, home, allow_download=False, progress=False)
    store = Store(home / "results.sqlite")
    ids = {}
    for i, m in enumerate(METHODS):
        ids[m] = fake_run(home, domain, m, "smoke", (48, 64))
        store.add_metrics(ids[m], _rows(i))
    store.start_run("f00000000001", kind="run", method="gatys", artist="cezanne", profile="smoke", seed=0,
                    spec_json=json.dumps({"method": "gatys"}), run_dir=None, data_fingerprint="x", spec_version=2)
    store.finish_run("f00000000001", "failed", error="NaN loss at iteration 3")
    shift = home / "reports" / "shift" / "cezanne-smoke"
    shift.mkdir(parents=True)
    Image.fromarray(np.full((20, 30, 3), 128, np.uint8)).save(shift / "shift_distance.png")
    (shift / "shift.csv").write_text("layer,set,kid\n")
    return domain, Store.for_reading(home / "results.sqlite"), ids


def _error(res) -> str:
    """The one-line error `bench` prints (main() turns an ArtshiftError into exit status 2)."""
    assert isinstance(res.exception, ArtshiftError), res.output
    return str(res.exception)


def _build(filled, home, out: Path, **kw):
    domain, store, _ = filled
    return H.build_report(store, out, home=home, domain_fn=lambda a: domain, **kw)


def test_pages_hold_the_leaderboard_grid_figures_and_provenance(filled, home, tmp_path):
    _, store, ids = filled
    report = _build(filled, home, tmp_path / "rep")
    page = report.pages["cezanne"]
    assert set(report.pages) == {"cezanne"} and report.index.is_file()
    text = page.path.read_text(encoding="utf-8")
    # every cell text of `bench leaderboard` for this artist is on the page, 3 methods x 2 blocks of rows
    board = L.build(*L.load(store), artists=["cezanne"])
    assert page.leaderboard_rows == len(METHODS) * len(METRICS)
    assert len(re.findall(r"<tr><th>[^<]*</th><td", text.split("<h2>Figures")[0])) == len(METHODS) * len(METRICS)
    for block in board:
        for cell in block.cells.values():
            assert cell.text in text
    # provenance: every run id, the failed run's reason, spec and config of each run
    for run_id in [*ids.values(), "f00000000001"]:
        assert f'id="run-{run_id}"' in text
    assert "NaN loss at iteration 3" in text and '&quot;config&quot;' in text
    # figures are copied beside the page and referenced relatively; nothing points outside the folder
    srcs = re.findall(r'(?:src|href)="([^"]+)"', text)
    assert srcs and all(not s.startswith(("http:", "https:", "/", "file:")) for s in srcs)
    for s in srcs:
        if not s.startswith("#"):
            assert (page.path.parent / s).is_file(), s
    assert any(s.endswith("shift_distance.png") for s in srcs) and any(s.endswith("grid_cezanne.png") for s in srcs)
    assert "[random-init]" in text and "not comparable" in text
    index = report.index.read_text(encoding="utf-8")
    assert 'href="cezanne.html"' in index and "1 failed" in index and "3 done" in index


def test_report_from_a_moved_folder_still_opens_its_images(filled, home, tmp_path):
    report = _build(filled, home, tmp_path / "rep")
    moved = Path(shutil.move(str(tmp_path / "rep"), str(tmp_path / "elsewhere")))
    shutil.rmtree(home / "reports")  # the home's figures are gone: the report has its own copies
    for page in report.pages.values():
        text = (moved / page.path.name).read_text(encoding="utf-8")
        for src in re.findall(r'<img src="([^"]+)"', text):
            with Image.open(moved / src) as im:
                assert im.size[0] > 0


def test_report_filters_and_bad_input(filled, home, tmp_path):
    with pytest.raises(ArtshiftError, match="no runs of artist 'cezane'") as exc:
        _build(filled, home, tmp_path / "a", artists=["cezane"])
    assert "cezanne" in str(exc.value.hint)
    with pytest.raises(ArtshiftError, match="no runs in the store"):
        _build(filled, home, tmp_path / "b", profiles=["paper"])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ArtshiftError, match="cannot write"):
        _build(filled, home, blocker / "sub")


def test_cli_report_and_errors(filled, home, tmp_path, shared_data):
    runner = CliRunner()
    res = runner.invoke(app, ["report", "--out", str(tmp_path / "r"), "--data-root", str(shared_data)])
    assert res.exit_code == 0, res.output
    assert "6 leaderboard rows" in res.output and (tmp_path / "r" / "index.html").is_file()
    res = runner.invoke(app, ["report", "--out", str(tmp_path / "r"), "--profile", "smok"])
    assert "unknown profile 'smok'" in _error(res) and "did you mean 'smoke'" in _error(res)
    empty = tmp_path / "empty_home"
    res = runner.invoke(app, ["report", "--home", str(empty), "--out", str(tmp_path / "x")])
    assert "no results store" in _error(res) and "bench run --method original" in _error(res)
    assert not (tmp_path / "x").exists()


# --- the browser ---------------------------------------------------------------------------------

def test_report_in_a_headless_browser(filled, home, tmp_path):
    from test_study_browser import start_chromium

    report = _build(filled, home, tmp_path / "rep")
    driver = start_chromium(tmp_path / "chromium-profile", network_log=True)
    from selenium.webdriver.common.by import By

    try:
        for url in (report.index.as_uri(), report.pages["cezanne"].path.as_uri()):
            driver.get(url)
            driver.execute_script("return document.readyState")
        imgs = driver.find_elements(By.TAG_NAME, "img")
        assert len(imgs) == 2  # the grid and the shift figure
        widths = [driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) for i in imgs]
        assert all(w and w > 0 for w in widths), widths
        rows = driver.find_elements(By.CSS_SELECTOR, "table.leaderboard tbody tr")
        assert len(rows) == len(METHODS) * len(METRICS)
        requests = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
        sent = [m["params"] for m in requests if m.get("method") == "Network.requestWillBeSent"]
    finally:
        driver.quit()
    # what our pages asked for: only files beside them (chrome:// entries are the browser's own start page)
    ours = [p["request"]["url"] for p in sent if p.get("documentURL", "").startswith("file://")]
    assert any(u.endswith("grid_cezanne.png") for u in ours) and any(u.endswith("shift_distance.png") for u in ours)
    assert all(u.startswith(("file://", "data:")) for u in ours), ours
    # and nothing at all went to the network, from any frame
    leaving = [p["request"]["url"] for p in sent if p["request"]["url"].split(":")[0] in ("http", "https", "ws", "wss")
               and not p["request"]["url"].startswith(("http://127.0.0.1", "ws://127.0.0.1"))]
    assert not leaving, leaving


# --- bench ci ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_bench_ci_end_to_end_and_resume(shared_data, home, tmp_path):
    runner = CliRunner()
    args = ["ci", "--methods", "original", "--artists", "cezanne", "--out", str(tmp_path / "ci"),
            "--data-root", str(shared_data)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    out = tmp_path / "ci"
    md = (out / "leaderboard.md").read_text(encoding="utf-8")
    assert md.startswith("# ci profile: a pipeline check, not results") and "original [ci]" in md
    assert md in res.output.replace("\r", "")  # the Markdown leaderboard ends the command's output
    for stage in ("runs", "leaderboard", "grids", "report"):
        assert re.search(rf"stage {stage}: [0-9.]+s", res.output)
    assert (out / "leaderboard.html").is_file() and (out / "grids" / "grid_cezanne.png").is_file()
    assert (out / "report" / "cezanne.html").is_file()
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings["stages_s"]) == {"runs", "leaderboard", "grids", "report"} and not timings["failed"]
    res = runner.invoke(app, args)  # resumable: the finished cell is reused, not run again
    assert res.exit_code == 0 and "reused" in res.output


def test_bench_ci_unknown_method_fails_before_running(home, tmp_path, shared_data):
    res = CliRunner().invoke(app, ["ci", "--methods", "cyclegn", "--out", str(tmp_path / "ci"),
                                   "--data-root", str(shared_data)])
    assert "unknown method 'cyclegn'" in _error(res) and "did you mean 'cyclegan'" in _error(res)
    assert not (tmp_path / "ci").exists()
