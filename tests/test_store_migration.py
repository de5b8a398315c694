"""Store schema v2: a store written by the v1 code migrates on open without losing a value."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from benchmark.core.errors import ArtshiftError
from benchmark.core.store import SCHEMA_VERSION, MetricRow, Store
from reports import leaderboard

FIXTURE = Path(__file__).parent / "fixtures" / "results_v1.sqlite"


def _v1_rows(path):
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM metrics")]
    runs = [dict(r) for r in con.execute("SELECT * FROM runs")]
    version = con.execute("PRAGMA user_version").fetchone()[0]
    con.close()
    return rows, runs, version


def test_v1_store_migrates_on_open(tmp_path):
    path = tmp_path / "results.sqlite"
    shutil.copy(FIXTURE, path)
    old_rows, old_runs, version = _v1_rows(path)
    assert version == 0 and "dims" in old_rows[0]
    store = Store(path)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    new = {(r["run_id"], r["metric"], r["layer"]): r for r in (dict(zip([d[0] for d in c.description], x))
           for c in [con.execute("SELECT * FROM metrics")] for x in c.fetchall())}
    assert len(new) == len(old_rows)
    for r in old_rows:
        m = new[(r["run_id"], r["metric"], f"inception:{r['dims']}")]
        for col in ("display_name", "value", "std", "n_real", "n_fake", "extractor_id", "resize_mode",
                    "metric_version", "created_at"):
            assert m[col] == r[col], col
        assert m["direction"] == "lower" and m["low"] is None and m["high"] is None
    runs = {r["run_id"]: r for r in (store.run(x["run_id"]) for x in old_runs)}
    assert all(r["spec_version"] == 1 for r in runs.values())
    assert {r["status"] for r in runs.values()} == {"done", "failed"}
    # still listed: the leaderboard reads the migrated rows, with arrows and layer ids
    md = leaderboard.to_markdown(leaderboard.build(store.results()))
    assert "### FID-2048[random-init] \u2193 lower is better; layer inception:2048" in md
    assert "| cyclegan [smoke] |" in md and "200.50 +- 1.41 (2 seeds)" in md
    # opening again is a no-op, and new rows go in with the new columns
    store = Store(path)
    store.add_metrics(old_runs[0]["run_id"], [MetricRow("kid", "vgg19:relu4_2", "KID-vgg19:relu4_2", 0.5, 402, 10,
                                                        "pretrained:abc", "clean", "kid-1", std=0.1,
                                                        direction="lower", low=0.4, high=0.6)])
    got = [m for m in store.metrics_for(old_runs[0]["run_id"]) if m["layer"] == "vgg19:relu4_2"]
    assert got[0]["low"] == 0.4 and got[0]["high"] == 0.6


def test_fresh_store_has_the_version_and_a_newer_one_is_refused(tmp_path):
    path = tmp_path / "r.sqlite"
    Store(path)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    with pytest.raises(ArtshiftError, match="schema version 99"):
        Store(path)
