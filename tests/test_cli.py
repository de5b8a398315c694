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
    assert [ln.split()[0] for ln in lines] == ["original", "cyclegan", "ours", "cut", "fastcut", "gatys",
                                                 "adain", "johnson", "munit", "unit"]


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


def test_stats_fid_reads_pytorch_fid_npz_and_agrees_with_it(tmp_path):
    import numpy as np
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(0)
    files = []
    for i, shift in enumerate((0.0, 0.7)):
        f = rng.normal(size=(300, 16)) + shift
        mu, sigma = f.mean(0), np.cov(f, rowvar=False)
        np.savez(tmp_path / f"s{i}.npz", mu=mu, sigma=sigma)  # exactly what pytorch-fid --save-stats writes
        files.append((mu, sigma))
    res = runner.invoke(app, ["stats", "fid", str(tmp_path / "s0.npz"), str(tmp_path / "s1.npz")])
    assert res.exit_code == 0, res.output
    expected = calculate_frechet_distance(files[0][0], files[0][1], files[1][0], files[1][1])
    assert float(res.output.strip()) == pytest.approx(expected, rel=1e-5)
    bad = tmp_path / "bad.npz"
    np.savez(bad, mean=np.zeros(3))
    res = _bench("stats", "fid", str(bad), str(tmp_path / "s0.npz"))
    assert res.returncode == 2 and "'mu' and 'sigma'" in res.stderr


def test_core_package_never_imports_reports_or_methods():
    """Below ``benchmark/cli`` (the top floor, where every command group lives), the harness never
    imports ``reports`` or ``methods``: their methods and tables reach it through the registry only."""
    import ast
    from pathlib import Path

    import benchmark

    offenders = []
    root = Path(benchmark.__file__).parent
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] in ("reports", "methods")]
    assert not offenders, offenders


def test_help_lists_every_registered_command_group():
    import re

    from benchmark.core import registry

    res = runner.invoke(app, ["--help"], terminal_width=160)
    assert res.exit_code == 0, res.output
    listed = re.findall(r"^│ ([a-z]\S*) ", res.output, flags=re.MULTILINE)
    assert registry.commands.names()  # the groups are registered, not hard-wired
    for name in registry.commands.names():
        assert name in listed, (name, listed)
    assert {"methods", "run", "eval", "leaderboard", "data", "weights", "stats", "bank"} <= set(listed)
    res = runner.invoke(app, ["methods"])
    assert res.exit_code == 0 and res.output.split()[0] == "original"


def test_build_app_adds_the_groups_of_a_registry_and_unknown_names_get_did_you_mean():
    import typer

    from benchmark.cli import build_app
    from benchmark.core.errors import ArtshiftError
    from benchmark.core.registry import Registry

    groups = Registry("command group")
    groups.register("leaderboard", "benchmark.cli.leaderboard:register", "leaderboard")
    only = build_app(groups)
    assert [c.name for c in typer.main.get_group(only).commands.values()] == ["leaderboard"]
    with pytest.raises(ArtshiftError, match="unknown command group 'leaderbord'") as exc:
        groups.get("leaderbord")
    assert "did you mean 'leaderboard'" in str(exc.value)
