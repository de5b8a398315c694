"""The "original paintings" row: no translation at all.

Why a method: the floor of every table (how far the untouched paintings are from photos) then
goes through exactly the same run / translate / evaluate path as the real methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from benchmark.core.method import Method, RunContext, TrainData
from benchmark.core.profiles import check_profile


@dataclass
class OriginalConfig:
    """Nothing to configure; the same for every profile."""


class Original(Method):
    name = "original"

    @classmethod
    def default_config(cls, profile: str) -> Any:
        check_profile(profile)
        return OriginalConfig()

    def fit(self, data: TrainData, run: RunContext) -> None:
        """Nothing to learn."""

    def translate(self, images: torch.Tensor) -> torch.Tensor:
        return images.clone()
