"""A run's identity: a frozen spec whose canonical JSON hashes to the run id.

Same spec + same data = same run id = same run directory, so re-running a finished spec
finds its stored result and an interrupted one resumes (DomainBed's hash-named sweep cells).
Feature extractors are not part of the spec: one run can be evaluated with several.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class RunSpec:
    method: str
    artist: str
    profile: str = "smoke"
    seed: int = 0
    overrides: tuple[tuple[str, str], ...] = ()
    data_fingerprint: str = ""
    spec_version: int = field(default=1)

    @staticmethod
    def make(method: str, artist: str, profile: str, seed: int, overrides: dict[str, str],
             data_fingerprint: str) -> RunSpec:
        return RunSpec(method, artist, profile, seed, tuple(sorted(overrides.items())), data_fingerprint)

    def canonical_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @property
    def run_id(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:12]

    @staticmethod
    def from_json(text: str) -> RunSpec:
        raw = json.loads(text)
        raw["overrides"] = tuple(tuple(kv) for kv in raw.get("overrides", ()))
        return RunSpec(**raw)
