"""Leaderboards: golden strings for every format on a small fixed store, and what a cell may average
(seeds of one spec on one data fingerprint, never runs with other --set values), best/second marks
per profile, missing-cell reasons, and the one-line errors of `bench leaderboard`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.core.errors import ArtshiftError
from benchmark.core.store import MetricRow, Store
from benchmark.metrics import display_name
from reports import leaderboard as L

RI = "random-init:sd-1:cal-2"
PRE = "pretrained:6726825d1234"


def _row(layer, value, metric="fid", ext=RI, tag="random-init", n_fake=10, std=None):
    return MetricRow(metric, layer, display_name(metric, layer, tag), value, 402, n_fake, ext, "clean",
                     f"{metric}-1", std=std)


def _spec(overrides=(), version=2, profile="smoke"):
    from benchmark.data.resolution import side_for

    return json.dumps({"method": "m", "overrides": [list(o) for o in overrides], "spec_version": version,
                       "translate_side": side_for(profile)})


def _add(store, rid, method, artist, rows, seed=0, profile="smoke", status="done", fp="fpA", overrides=(),
         version=2, weights=None):
    store.start_run(rid, kind="run", method=method, artist=artist, profile=profile, seed=seed,
                    spec_json=_spec(overrides, version, profile), run_dir=None, data_fingerprint=fp)
    store.add_metrics(rid, rows)
    store.finish_run(rid, status, {"fit_s": 1.0}, method_weights=weights)


def fixed_store(path) -> Store:
    """Two seeds + one run on other data + one with --set; a failed cell; a pretrained block; KID."""
    s = Store(path)
    _add(s, "r1", "cyclegan", "monet", [_row("inception:2048", 50.0), _row("inception:2048", 0.012, "kid", std=1e-3)])
    _add(s, "r2", "cyclegan", "monet", [_row("inception:2048", 54.0), _row("inception:2048", 0.014, "kid", std=1e-3)],
         seed=1)
    _add(s, "r3", "cyclegan", "monet", [_row("inception:2048", 80.0)], seed=2, fp="fpB")
    _add(s, "r4", "cyclegan", "monet", [_row("inception:2048", 45.0)], overrides=[("lr", "0.001")])
    _add(s, "r5", "original", "monet", [_row("inception:2048", 74.5)])
    _add(s, "r6", "original", "vangogh", [_row("inception:2048", 166.7)])
    _add(s, "r7", "ours", "monet", [], status="failed")
    _add(s, "r8", "ours", "vangogh", [_row("inception:2048", 99.0)])
    _add(s, "r9", "original", "monet", [_row("inception:2048", 70.25, ext=PRE, tag="")], profile="paper")
    _add(s, "r10", "cyclegan", "monet", [_row("inception:2048", 60.0, ext=PRE, tag="")], profile="paper")
    return s


@pytest.fixture(autouse=True)
def _no_provenance(monkeypatch):
    """Each run's provenance asks git twice; these stores have ten runs and need none of it."""
    monkeypatch.setattr("benchmark.core.store.provenance", lambda: {})


@pytest.fixture
def store(tmp_path) -> Store:
    return fixed_store(tmp_path / "r.sqlite")


MD = r"""
### FID-2048 ↓ lower is better; layer inception:2048, extractor pretrained:6726825d1234, resize clean

| method | monet |
|---|---|
| original [paper] | 70.25 (n=10/402) |
| cyclegan [paper] | **60.00 (n=10/402)** |

### FID-2048[random-init] ↓ lower is better; layer inception:2048, extractor random-init:sd-1:cal-2, resize clean

| method | monet | vangogh |
|---|---|---|
| original [smoke] | 74.50 (n=10/402) | 166.70 (n=10/402) |
| cyclegan [smoke] | <ins>52.00 +- 2.83 (2 seeds) (n=10/402) [1]</ins> | - (no run) |
| cyclegan [smoke; lr=0.001] | **45.00 (n=10/402)** | - (no run) |
| ours [smoke; retrieval loss geometry; patch = 1/4 of the crop] | - (1 failed) | **99.00 (n=10/402)** |

### KID-2048[random-init] (x1e3) ↓ lower is better; layer inception:2048, extractor random-init:sd-1:cal-2, resize clean

| method | monet |
|---|---|
| cyclegan [smoke] | 13.00 +- 1.41 (2 seeds) (n=10/402) |

Cells: mean +- sample std over seeds (seed count) (n=generated/real images). Best per column in bold, second underlined, among rows of one profile. Arrows: which direction is better.

[1] cyclegan [smoke] / monet: 1 run on other data (not the data fingerprint fpA of the cell) not averaged in
"""[1:]  # noqa: E501

LATEX = r"""
% Cells: mean +- sample std over seeds (seed count) (n=generated/real images). Best per column in bold, second underlined, among rows of one profile. Arrows: which direction is better.
\begin{table}
\centering
\caption{FID-2048 $\downarrow$ lower is better; layer inception:2048, extractor pretrained:6726825d1234, resize clean}
\begin{tabular}{lr}
\toprule
method & monet \\
\midrule
original [paper] & 70.25 (n=10/402) \\
cyclegan [paper] & \textbf{60.00 (n=10/402)} \\
\bottomrule
\end{tabular}
\end{table}

\begin{table}
\centering
\caption{FID-2048[random-init] $\downarrow$ lower is better; layer inception:2048, extractor random-init:sd-1:cal-2, resize clean}
\begin{tabular}{lrr}
\toprule
method & monet & vangogh \\
\midrule
original [smoke] & 74.50 (n=10/402) & 166.70 (n=10/402) \\
cyclegan [smoke] & \underline{52.00 $\pm$ 2.83 (2 seeds) (n=10/402) [1]} & - (no run) \\
cyclegan [smoke; lr=0.001] & \textbf{45.00 (n=10/402)} & - (no run) \\
ours [smoke; retrieval loss geometry; patch = 1/4 of the crop] & - (1 failed) & \textbf{99.00 (n=10/402)} \\
\bottomrule
\end{tabular}
\end{table}

\begin{table}
\centering
\caption{KID-2048[random-init] (x1e3) $\downarrow$ lower is better; layer inception:2048, extractor random-init:sd-1:cal-2, resize clean}
\begin{tabular}{lr}
\toprule
method & monet \\
\midrule
cyclegan [smoke] & 13.00 $\pm$ 1.41 (2 seeds) (n=10/402) \\
\bottomrule
\end{tabular}
\end{table}
% [1] cyclegan [smoke] / monet: 1 run on other data (not the data fingerprint fpA of the cell) not averaged in
"""[1:]  # noqa: E501

CSV = r"""
method,profile,artist,seed,method_weights,display_name,metric,layer,direction,value,std,low,high,n_fake,n_real,extractor_id,resize_mode,metric_version,run_id,kind,overrides,data_fingerprint
cyclegan,smoke,monet,0,,FID-2048[random-init],fid,inception:2048,lower,50.0,,,,10,402,random-init:sd-1:cal-2,clean,fid-1,r1,run,,fpA
cyclegan,paper,monet,0,,FID-2048,fid,inception:2048,lower,60.0,,,,10,402,pretrained:6726825d1234,clean,fid-1,r10,run,,fpA
cyclegan,smoke,monet,1,,FID-2048[random-init],fid,inception:2048,lower,54.0,,,,10,402,random-init:sd-1:cal-2,clean,fid-1,r2,run,,fpA
cyclegan,smoke,monet,2,,FID-2048[random-init],fid,inception:2048,lower,80.0,,,,10,402,random-init:sd-1:cal-2,clean,fid-1,r3,run,,fpB
cyclegan,smoke,monet,0,,FID-2048[random-init],fid,inception:2048,lower,45.0,,,,10,402,random-init:sd-1:cal-2,clean,fid-1,r4,run,lr=0.001,fpA
original,smoke,monet,0,,FID-2048[random-init],fid,inception:2048,lower,74.5,,,,10,402,random-init:sd-1:cal-2,clean,fid-1,r5,run,,fpA
original,paper,monet,0,,FID-2048,fid,inception:2048,lower,70.25,,,,10,402,pretrained:6726825d1234,clean,fid-1,r9,run,,fpA
original,smoke,vangogh,0,,FID-2048[random-init],fid,inception:2048,lower,166.7,,,,10,402,random-init:sd-1:cal-2,clean,fid-1,r6,run,,fpA
ours,smoke,vangogh,0,,FID-2048[random-init],fid,inception:2048,lower,99.0,,,,10,402,random-init:sd-1:cal-2,clean,fid-1,r8,run,,fpA
cyclegan,smoke,monet,0,,KID-2048[random-init],kid,inception:2048,lower,0.012,0.001,,,10,402,random-init:sd-1:cal-2,clean,kid-1,r1,run,,fpA
cyclegan,smoke,monet,1,,KID-2048[random-init],kid,inception:2048,lower,0.014,0.001,,,10,402,random-init:sd-1:cal-2,clean,kid-1,r2,run,,fpA
"""[1:]  # noqa: E501

HTML = r"""
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>artshift leaderboard</title>
<style>table{border-collapse:collapse;margin:1em 0}caption{text-align:left;font-weight:bold}th,td{border:1px solid #bbb;padding:2px 8px}td{text-align:right}</style>
</head>
<body>
<h1>artshift leaderboard</h1>
<table class="leaderboard" data-metric="fid" data-layer="inception:2048">
<caption>FID-2048 ↓ lower is better; layer inception:2048, extractor pretrained:6726825d1234, resize clean</caption>
<thead><tr><th>method</th><th>monet</th></tr></thead>
<tbody>
<tr><th>original [paper]</th><td>70.25 (n=10/402)</td></tr>
<tr><th>cyclegan [paper]</th><td><b>60.00 (n=10/402)</b></td></tr>
</tbody>
</table>
<table class="leaderboard" data-metric="fid" data-layer="inception:2048">
<caption>FID-2048[random-init] ↓ lower is better; layer inception:2048, extractor random-init:sd-1:cal-2, resize clean</caption>
<thead><tr><th>method</th><th>monet</th><th>vangogh</th></tr></thead>
<tbody>
<tr><th>original [smoke]</th><td>74.50 (n=10/402)</td><td>166.70 (n=10/402)</td></tr>
<tr><th>cyclegan [smoke]</th><td><u>52.00 +- 2.83 (2 seeds) (n=10/402) [1]</u></td><td>- (no run)</td></tr>
<tr><th>cyclegan [smoke; lr=0.001]</th><td><b>45.00 (n=10/402)</b></td><td>- (no run)</td></tr>
<tr><th>ours [smoke; retrieval loss geometry; patch = 1/4 of the crop]</th><td>- (1 failed)</td><td><b>99.00 (n=10/402)</b></td></tr>
</tbody>
</table>
<table class="leaderboard" data-metric="kid" data-layer="inception:2048">
<caption>KID-2048[random-init] (x1e3) ↓ lower is better; layer inception:2048, extractor random-init:sd-1:cal-2, resize clean</caption>
<thead><tr><th>method</th><th>monet</th></tr></thead>
<tbody>
<tr><th>cyclegan [smoke]</th><td>13.00 +- 1.41 (2 seeds) (n=10/402)</td></tr>
</tbody>
</table>
<p>Cells: mean +- sample std over seeds (seed count) (n=generated/real images). Best per column in bold, second underlined, among rows of one profile. Arrows: which direction is better.</p>
<ol>
<li>cyclegan [smoke] / monet: 1 run on other data (not the data fingerprint fpA of the cell) not averaged in</li>
</ol>
</body>
</html>
"""[1:]  # noqa: E501

JSON = r"""
{
  "schema": "artshift-leaderboard",
  "schema_version": 1,
  "blocks": [
    {
      "title": "FID-768[random-init] ↓ lower is better; layer inception:768, extractor random-init:sd-1:cal-2, resize clean",
      "metric": "fid",
      "layer": "inception:768",
      "display_name": "FID-768[random-init]",
      "direction": "lower",
      "extractor_id": "random-init:sd-1:cal-2",
      "resize_mode": "clean",
      "text_scale": 1.0,
      "columns": [
        "cezanne"
      ],
      "rows": [
        {
          "label": "original [smoke]",
          "kind": "run",
          "method": "original",
          "profile": "smoke",
          "overrides": "",
          "method_weights": null,
          "cells": {
            "cezanne": {
              "mean": 1.5,
              "std": null,
              "seeds": 1,
              "n_fake": 10,
              "n_real": 402,
              "rank": null,
              "missing": null,
              "footnotes": [],
              "text": "1.50 (n=10/402)"
            }
          }
        },
        {
          "label": "cyclegan [smoke]",
          "kind": "run",
          "method": "cyclegan",
          "profile": "smoke",
          "overrides": "",
          "method_weights": null,
          "cells": {
            "cezanne": {
              "mean": 0.5,
              "std": null,
              "seeds": 1,
              "n_fake": 10,
              "n_real": 402,
              "rank": 1,
              "missing": null,
              "footnotes": [],
              "text": "0.50 (n=10/402)"
            }
          }
        }
      ]
    }
  ],
  "footnotes": []
}
"""[1:]  # noqa: E501


@pytest.mark.parametrize("fmt, golden", [("md", MD), ("latex", LATEX), ("csv", CSV), ("html", HTML)])
def test_golden_strings(store, fmt, golden):
    assert L.render(store, fmt) == golden


def test_golden_json_with_schema_version(tmp_path):
    t = Store(tmp_path / "t.sqlite")
    _add(t, "a", "original", "cezanne", [_row("inception:768", 1.5)])
    _add(t, "b", "cyclegan", "cezanne", [_row("inception:768", 0.5)])
    text = L.render(t, "json")
    assert text == JSON
    assert json.loads(text)["schema_version"] == L.JSON_SCHEMA_VERSION


def test_what_a_cell_averages(store):
    board = L.build(*L.load(store))
    block = next(b for b in board if b.title.startswith("FID-2048[random-init]"))
    seeds = block.cells["cyclegan [smoke]", "monet"]
    # seeds 0 and 1 on fpA averaged (ddof 1); seed 2 on fpB only footnoted; the lr run is its own row
    assert (seeds.mean, round(seeds.std, 4), seeds.seeds) == (52.0, 2.8284, 2)
    assert seeds.notes == [1] and board.footnotes[0].startswith("cyclegan [smoke] / monet: 1 run on other data")
    assert block.cells["cyclegan [smoke; lr=0.001]", "monet"].mean == 45.0
    # best and second only among rows of one profile: the paper block ranks its own two rows
    assert [block.cells[r.label, "monet"].rank for r in block.rows] == [0, 2, 1, 0]
    assert block.cells["ours [smoke; retrieval loss geometry; patch = 1/4 of the crop]", "monet"].text == "- (1 failed)"
    assert block.cells["cyclegan [smoke]", "vangogh"].text == "- (no run)"
    paper = next(b for b in board if b.extractor_id == PRE)
    assert [r.profile for r in paper.rows] == ["paper", "paper"]
    assert "70.25" not in "".join(c.text for c in block.cells.values())  # pretrained never in a random-init block


def test_v1_text_overrides_and_v2_coerced_values_make_rows(tmp_path):
    s = Store(tmp_path / "r.sqlite")
    _add(s, "a", "cut", "monet", [_row("inception:2048", 1.0)], overrides=[("lr", "1e-3")], version=1)
    _add(s, "b", "cut", "monet", [_row("inception:2048", 2.0)], overrides=[("lr", "0.001")])
    _add(s, "c", "cut", "monet", [_row("inception:2048", 3.0)], overrides=[("tag", json.dumps("x y"))])
    rows = [r.label for r in L.build(*L.load(s))[0].rows]
    assert rows == ["cut [smoke; lr=0.001]", "cut [smoke; lr=1e-3]", "cut [smoke; tag=x y]"]


def test_filters_and_bad_input(store, tmp_path):
    md = L.render(store, "md", artists=["vangogh"], metrics=["fid"])
    assert "monet" not in md and "KID" not in md and "166.70" in md
    assert len(L.render(store, "csv", metrics=["kid"]).splitlines()) == 1 + 2
    for kwargs, needle in (({"fmt": "tex"}, "unknown format 'tex'"),
                           ({"fmt": "md", "artists": ["vangog"]}, "unknown artist 'vangog'"),
                           ({"fmt": "md", "metrics": ["fdi"]}, "unknown metric 'fdi'")):
        with pytest.raises(ArtshiftError, match=needle) as exc:
            L.render(store, **kwargs)
        assert exc.value.hint and "\n" not in str(exc.value).split("\n  -> ")[0]
    with pytest.raises(ArtshiftError, match="no finished runs with artist cezanne"):
        L.render(store, "md", artists=["cezanne"])
    failed = Store(tmp_path / "f.sqlite")
    _add(failed, "x", "cyclegan", "monet", [], status="failed")
    with pytest.raises(ArtshiftError, match=r"no finished runs in the store \(1 failed\)") as exc:
        L.render(failed, "html")
    assert "log.txt" in exc.value.hint
    assert L.render(Store(tmp_path / "e.sqlite"), "json") == L.EMPTY


def test_cli_formats_out_file_and_errors(store, tmp_path, monkeypatch):
    monkeypatch.setenv("ARTSHIFT_HOME", str(tmp_path))  # the fixture's store is tmp_path/r.sqlite
    (tmp_path / "r.sqlite").rename(tmp_path / "results.sqlite")
    for suffix in ("-wal", "-shm"):
        if (tmp_path / f"r.sqlite{suffix}").exists():
            (tmp_path / f"r.sqlite{suffix}").rename(tmp_path / f"results.sqlite{suffix}")
    cli = CliRunner()
    res = cli.invoke(app, ["leaderboard", "--format", "latex", "--out", str(tmp_path / "t" / "board.tex")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "t" / "board.tex").read_text() == LATEX
    res = cli.invoke(app, ["leaderboard", "-f", "csv", "--metric", "kid"])
    assert res.exit_code == 0 and res.output.count("\n") == 3
    (tmp_path / "dir").mkdir()
    res = cli.invoke(app, ["leaderboard", "--out", str(tmp_path / "dir")])
    assert isinstance(res.exception, ArtshiftError) and "cannot write" in str(res.exception)
    assert "--out" in res.exception.hint


def test_a_method_with_its_own_random_init_network_is_labelled(tmp_path):
    # (moved from test_core) Gatys with a random-init VGG is never shown as the paper's style-transfer row,
    # also when every other row has no method weights at all (NULL, read back as NaN)
    s = Store(tmp_path / "r.sqlite")
    _add(s, "p", "cut", "monet", [_row("inception:2048", 80.0)])
    _add(s, "q", "gatys", "monet", [_row("inception:2048", 70.0)], weights="random-init:seed0:sd-abc")
    board = L.build(*L.load(s))
    assert [r.label for r in board[0].rows] == ["gatys [smoke, random-init network; style photo random]", "cut [smoke]"]
    assert "nan" not in L.to_markdown(board)


def test_marks_follow_the_metric_direction_and_ties_read_alike(tmp_path):
    s = Store(tmp_path / "r.sqlite")
    for rid, method, value in (("a", "original", 0.50), ("b", "cut", 0.9001), ("c", "fastcut", 0.9004),
                               ("d", "ours", 0.70)):
        _add(s, rid, method, "monet", [MetricRow("acc", "vgg19:fc7", "ACC-vgg19:fc7", value, 402, 10, RI, "clean",
                                                 "acc-1", direction="higher")])
    block = L.build(*L.load(s))[0]
    assert "\u2191 higher is better" in block.title
    # 0.9001 and 0.9004 both read 0.90: both best; the next value shown is second
    assert {r.method: block.cells[r.label, "monet"].rank for r in block.rows} == {
        "original": 0, "cut": 1, "fastcut": 1, "ours": 2}


def test_row_notes_come_from_the_config_the_run_used_and_name_older_method_versions(tmp_path):
    """Gatys' style-photo policy is read from the run's own spec.json, not today's default, and a
    run of an older Gatys version gets its own row instead of being averaged with today's."""
    from baselines.gatys import Gatys

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "spec.json").write_text(json.dumps({"config": {"style_policy": "nearest"}}))
    now = json.dumps({"method": "gatys", "method_version": Gatys.VERSION, "translate_side": 64})
    assert L.tags_of("gatys", "smoke", "run", now, str(run_dir)) == "style photo nearest"
    assert L.tags_of("gatys", "smoke", "run", now, None) == "style photo random"  # no folder: today's default
    old = json.dumps({"method": "gatys", "method_version": "1", "translate_side": 64})
    assert L.tags_of("gatys", "smoke", "run", old, str(run_dir)) == f"style photo nearest; gatys v1, now v{Gatys.VERSION}"
    assert L.tags_of("my-folder", "smoke", "eval", now, None) == ""
    assert L._row_label("gatys", "smoke", "run", None, "", "style photo nearest") == "gatys [smoke; style photo nearest]"
