"""The CLI is a thin face: user errors print one clear message (no traceback) and exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from benchmark.cli import app

runner = CliRunner()


def _bench(*args, env=None):
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_methods_lists_every_registered_method_one_line_each():
    res = runner.invoke(app, ["methods"])
    assert res.exit_code == 0
    lines = res.output.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == ["original", "cyclegan", "ours", "cut", "fastcut", "gatys"]


@pytest.mark.parametrize("args,needle", [
    (["run", "--method", "cyclegn", "--artist", "monet"], "did you mean 'cyclegan'"),
    (["run", "--method", "cyclegan", "--artist", "monnet"], "did you mean 'monet'"),
    (["run", "--method", "cyclegan", "--artist", "monet", "--profile", "fast"], "unknown profile"),
    (["run", "--method", "cyclegan", "--artist", "monet", "--set", "lr"], "key=value"),
])
def test_user_errors_exit_2_without_traceback(args, needle, tmp_path):
    import os

    env = dict(os.environ, ARTSHIFT_DATA=str(tmp_path / "nodata"))
    res = _bench(*args, env=env)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_data_says_where_and_how(tmp_path):
    import os

    env = dict(os.environ, ARTSHIFT_DATA=str(tmp_path / "nodata"), ARTSHIFT_OFFLINE="1")
    res = _bench("run", "--method", "original", "--artist", "cezanne", env=env)
    assert res.returncode == 2
    assert str(tmp_path / "nodata") in res.stderr and "bench data fetch" in res.stderr
    assert "Traceback" not in res.stderr


def test_leaderboard_empty_store_is_helpful():
    res = runner.invoke(app, ["leaderboard"])
    assert res.exit_code == 0 and "No finished runs yet" in res.output
