"""Where artshift reads and writes: flag > environment variable > per-user directory.

Tests and CI set ``ARTSHIFT_HOME`` to a temporary folder so nothing touches the user's home,
and point ``ARTSHIFT_DATA`` at a (possibly read-only) data root that is never written to.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "artshift"


def _resolve(flag: str | os.PathLike | None, env: str, default: Path) -> Path:
    if flag:
        return Path(flag).expanduser().resolve()
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser().resolve()
    return default


def home(flag: str | os.PathLike | None = None) -> Path:
    """Root for runs, caches, the results database and lock files (created on demand)."""
    path = _resolve(flag, "ARTSHIFT_HOME", Path(platformdirs.user_data_dir(APP)))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_root(flag: str | os.PathLike | None = None) -> Path:
    """Root holding datasets (CycleGAN layout or the subset layout); may be read-only."""
    return _resolve(flag, "ARTSHIFT_DATA", Path(platformdirs.user_cache_dir(APP)) / "data")


def weights_dir(flag: str | os.PathLike | None = None) -> Path:
    """Folder of verified weight files."""
    path = _resolve(flag, "ARTSHIFT_WEIGHTS", home() / "weights")
    path.mkdir(parents=True, exist_ok=True)
    return path
