"""Shared fixtures: an isolated ARTSHIFT_HOME for every test and the real data subset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n 2` on 2 cores: one intra-op thread per worker, or the workers' OpenMP pools
    # oversubscribe the cores and spin against each other (several times slower)
    import torch

    torch.set_num_threads(1)


def _shared_data() -> Path:
    env = os.environ.get("ARTSHIFT_DATA")  # README's command passes a relative path: tests symlink into it
    return (Path(env) if env else REPO.parent / "shared" / "data").resolve()


@pytest.fixture(autouse=True)
def home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own ARTSHIFT_HOME so nothing touches the user's real one."""
    path = tmp_path_factory.mktemp("artshift_home")
    monkeypatch.setenv("ARTSHIFT_HOME", str(path))
    monkeypatch.setenv("ARTSHIFT_WEIGHTS", str(path / "weights"))
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real painting/photo subsets (read-only); tests needing them skip when absent."""
    path = _shared_data()
    if not (path / "photos" / "test").is_dir():
        pytest.skip(f"real data subset not found at {path} (set ARTSHIFT_DATA)")
    return path


@pytest.fixture(autouse=True)
def _restore_torch_flags():
    """RunContext(deterministic=True) switches torch's deterministic mode on globally; undo it."""
    import torch

    flag = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(flag)
