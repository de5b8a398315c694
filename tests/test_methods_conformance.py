"""Every registered method meets the Method contract on tiny generated data.

fit (ci profile) -> checkpoint -> a new instance's fit finds it (and, for iterative methods,
loads no training images) -> translate a [2, 3, 64, 64] batch: same shape, finite, in [-1, 1],
input untouched, and the same output from the fresh instance as from the trained one.

Methods whose module does not exist yet are skipped (only that ModuleNotFoundError: any other
import error fails), so a new method is tested as soon as its file lands.

``OVERRIDES``: per-method ``--set``-style settings applied on top of ``default_config("ci")``
for what this machine cannot provide, e.g. pretrained VGG weights (none can be downloaded in
tests). Keep each entry minimal and say why.
"""

from __future__ import annotations

import importlib
import time

import pytest
import torch
from helpers_methods import painting_batch, tiny_data, tiny_run

from benchmark.core.profiles import apply_overrides
from benchmark.core.registry import methods
from benchmark.pipeline.training import CHECKPOINT, IterativeMethod

OVERRIDES: dict[str, dict[str, str]] = {
    "gatys": {"weights": "random"},  # no ImageNet VGG-19 file in tests; the random-init one is labelled
    "adain": {"weights": "random"},  # the same VGG-19 policy as gatys (ci's "auto" would try a download)
    "johnson": {"weights": "random"},  # likewise
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("tiny"))


def load_method(name: str):
    module = methods.entry(name).target.split(":")[0]
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            pytest.skip(f"{module} is not written yet")
        raise
    return methods.get(name)


@pytest.mark.parametrize("name", methods.names())
def test_method_contract(name, tmp_path, home, data, monkeypatch):
    cls = load_method(name)
    config = apply_overrides(cls.default_config("ci"), OVERRIDES.get(name, {}))
    run = tiny_run(tmp_path / "run", home, seed=0)

    method = cls(config, "cpu")
    t0 = time.perf_counter()
    method.fit(data, run)
    first_fit = time.perf_counter() - t0
    x = painting_batch(seed=1, size=64, n=2)
    x_copy = x.clone()
    y = method.translate(x)
    assert torch.equal(x, x_copy), "translate modified its input"
    assert y.shape == x.shape and y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert float(y.min()) >= -1.0 and float(y.max()) <= 1.0

    fresh = cls(config, "cpu")
    if isinstance(method, IterativeMethod):
        ckpt = run.checkpoint_dir / CHECKPOINT
        state = torch.load(ckpt, weights_only=True)
        assert state["iteration"] == method.total_iterations() > 0
        monkeypatch.setattr(fresh, "prepare", lambda *a: pytest.fail(f"{name}: a finished run reloaded its data"))
        t0 = time.perf_counter()
        fresh.fit(data, run)
        assert time.perf_counter() - t0 < max(2.0, first_fit)
        assert torch.equal(fresh.translate(x), y), f"{name}: the checkpoint does not reproduce the translation"
    else:
        fresh.fit(data, run)
        y2 = fresh.translate(x)
        assert y2.shape == x.shape and torch.isfinite(y2).all()
