"""The Method contract every translation method meets (see docs/adding.md).

A method is built from its config dataclass and a device; ``fit`` trains it (idempotent,
resuming from the run's last checkpoint) and ``translate`` maps a batch of paintings in
[-1, 1] to photos in [-1, 1]. A method never parses CLI arguments or reads global state; it
writes only into ``run.run_dir`` and the cache folders the harness hands it.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from benchmark.core import registry
from benchmark.core.profiles import apply_overrides


@dataclass
class TrainData:
    """The training images of one painting<->photo pair (file paths; loading is the method's)."""

    artist: str
    paintings: list[Path]
    photos: list[Path]
    skip_bad_images: bool = False


@dataclass
class RunContext:
    """Everything a method may touch while it fits: its run folder, the shared caches, seeding."""

    run_dir: Path
    home: Path
    seed: int = 0
    deterministic: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: bool = True
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("artshift.run"))
    # a finished run rebuilt for translate/eval/grid: load its final state; never train or write
    read_only: bool = False

    @property
    def checkpoint_dir(self) -> Path:
        path = self.run_dir / "checkpoints"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def cache_dir(self) -> Path:
        """Shared caches that outlive a run (memory banks, calibrated extractors)."""
        path = self.home / "cache"
        path.mkdir(parents=True, exist_ok=True)
        return path


class Method(abc.ABC):
    name: ClassVar[str]
    # Part of the run id: bump it in a method whose code change alters what it produces, so
    # runs made before the change are not reused as if they were runs of the new code.
    VERSION: ClassVar[str] = "1"

    def __init__(self, config: Any, device: torch.device | str = "cpu"):
        self.config = config
        self.device = torch.device(device)

    @classmethod
    @abc.abstractmethod
    def default_config(cls, profile: str) -> Any:
        """The config dataclass for a profile (ci, smoke, quick, paper)."""

    @classmethod
    def label_tags(cls, config: Any) -> tuple[str, ...]:
        """Short notes for a leaderboard row label about settings that change what the row means
        even when they are defaults (no ``--set`` names them), e.g. Gatys' style-photo policy."""
        return ()

    @abc.abstractmethod
    def fit(self, data: TrainData, run: RunContext) -> None:
        """Train (or index) on ``data``; resumes from ``run``'s checkpoints; cheap when done."""

    @abc.abstractmethod
    def translate(self, images: torch.Tensor) -> torch.Tensor:
        """Paintings [B, 3, H, W] in [-1, 1] -> photos of the same shape in [-1, 1].

        Called without an autograd context: feed-forward methods wrap themselves in
        ``torch.no_grad()``, optimisation-based ones (Gatys) need gradients.
        """


def label_tags(method: str, profile: str, overrides: dict[str, str] | None = None) -> tuple[str, ...]:
    """A registered method's ``label_tags`` for a table row (method, profile, typed ``--set`` values)."""
    cls = registry.methods.get(method)
    return tuple(cls.label_tags(apply_overrides(cls.default_config(profile), dict(overrides or {}))))
