"""``bench grid``: every cell of the written PNG holds exactly its source image at the common height."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.core.errors import ArtshiftError
from reports import grids


def fake_run(home: Path, domain, method: str, profile: str, size: tuple[int, int], seed: int = 0,
             skip: int = 0) -> str:
    """A finished run as `bench run` leaves it (store row, spec.json, DONE, translations) without training;
    its translations are noise of ``size`` (not the paintings' aspect), the first ``skip`` left out."""
    from benchmark import data
    from benchmark.core.spec import SPEC_VERSION
    from benchmark.core.store import Store
    from benchmark.pipeline.runner import make_spec, run_dir_for
    from benchmark.pipeline.runs import output_name

    _, _, spec = make_spec(method, domain.artist, profile, seed, {}, data.split_fingerprint(domain))
    run_dir = run_dir_for(home, spec)
    rng = np.random.default_rng(abs(hash((method, profile, seed))) % 2**32)
    for p in domain.paintings_test[skip:]:
        out = run_dir / "translated" / output_name(domain.relpath(p))
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(out)
    (run_dir / "spec.json").write_text(json.dumps({"spec": spec.as_dict(), "run_id": spec.run_id, "config": {},
                                                   "data_root": str(domain.root), "layout": domain.layout},
                                                  default=str))
    store = Store(home / "results.sqlite")
    store.start_run(spec.run_id, kind="run", method=method, artist=domain.artist, profile=profile, seed=seed,
                    spec_json=spec.canonical_json(), run_dir=str(run_dir), data_fingerprint=spec.data_fingerprint,
                    spec_version=SPEC_VERSION)
    store.finish_run(spec.run_id, "done", {})
    (run_dir / "DONE").write_text("done\n")
    return spec.run_id


@pytest.fixture
def domain(shared_data, home):
    from benchmark.data import ensure_domain

    return ensure_domain("cezanne", shared_data, home, allow_download=False, progress=False)


def test_every_cell_is_its_source_resized(domain, home, tmp_path):
    from benchmark.core.store import Store
    from benchmark.pipeline.runs import find_run

    ids = {"cyclegan": fake_run(home, domain, "cyclegan", "smoke", (96, 64)),
           "ours": fake_run(home, domain, "ours", "smoke", (40, 80))}
    fake_run(home, domain, "gatys", "ci", (64, 64))  # another profile: not in a smoke grid
    store = Store.for_reading(home / "results.sqlite")
    grid = grids.make_grid(store, domain, tmp_path / "out", profile="smoke", n=3, seed=1)
    assert grid.titles == ["painting", "cyclegan [smoke]", "ours [smoke]"]
    assert grid.png.is_file() and grid.pdf.read_bytes().startswith(b"%PDF")
    assert len(grid.paintings) == 3 and set(grid.paintings) <= set(domain.paintings_test)
    assert grid.paintings == grids.choose_paintings(domain, 3, 1)
    runs = [find_run(store, run_id=ids[m]) for m in ("cyclegan", "ours")]
    png = np.asarray(Image.open(grid.png).convert("RGB"))
    assert len(grid.cells) == 3 * 3
    for cell in grid.cells:
        painting = grid.paintings[cell.row]
        expected = painting if cell.col == 0 else runs[cell.col - 1].output(domain.relpath(painting))
        assert cell.source == expected
        left, top, right, bottom = cell.box
        want = np.asarray(grids.cell_image(expected))
        assert bottom - top == grids.HEIGHT and want.shape == (bottom - top, right - left, 3)
        assert np.array_equal(png[top:bottom, left:right], want), cell
    widths = {c.col: c.box[2] - c.box[0] for c in grid.cells if c.col > 0}
    assert widths == {1: round(96 * grids.HEIGHT / 64), 2: round(40 * grids.HEIGHT / 80)}  # own aspect kept


def test_seed_picks_the_same_paintings_for_every_column(domain):
    a, b = grids.choose_paintings(domain, 4, 7), grids.choose_paintings(domain, 4, 7)
    assert a == b and len(set(a)) == 4
    assert any(grids.choose_paintings(domain, 4, s) != a for s in range(8))
    assert len(grids.choose_paintings(domain, 10_000, 0)) == len(domain.paintings_test)


def test_cli_and_its_errors(domain, home, tmp_path, shared_data):
    from typer.testing import CliRunner

    from benchmark.cli import build_app

    app, runner = build_app(), CliRunner()
    base = ["grid", "--artist", "cezanne", "--home", str(home), "--data-root", str(shared_data)]
    res = runner.invoke(app, base + ["--out", str(tmp_path / "g")])
    assert res.exit_code != 0 and "bench run --method" in str(res.exception)  # no store at all
    fake_run(home, domain, "cyclegan", "ci", (64, 64))
    res = runner.invoke(app, base + ["--out", str(tmp_path / "g")])  # smoke by default: none
    assert res.exit_code != 0 and "--profile smoke" in str(res.exception)
    partial = fake_run(home, domain, "ours", "ci", (64, 64), skip=len(domain.paintings_test) // 2)
    res = runner.invoke(app, base + ["--profile", "ci", "--n", "100", "--out", str(tmp_path / "g")])
    assert res.exit_code != 0 and isinstance(res.exception, ArtshiftError)
    assert partial in str(res.exception) and "bench run --method ours" in res.exception.hint
    full = fake_run(home, domain, "cyclegan", "ci", (64, 64), seed=3)
    res = runner.invoke(app, base + ["--runs", full, "--n", "2", "--out", str(tmp_path / "g")])
    assert res.exit_code == 0, res.output
    assert "cyclegan [ci]" in res.output
    assert (tmp_path / "g" / "grid_cezanne.png").is_file() and (tmp_path / "g" / "grid_cezanne.pdf").is_file()
