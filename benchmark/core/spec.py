"""A run's identity: a frozen spec whose canonical JSON hashes to the run id.

Same spec + same data = same run id = same run directory, so re-running a finished spec
finds its stored result and an interrupted one resumes (DomainBed's hash-named sweep cells).
Feature extractors are not part of the spec: one run can be evaluated with several.

Version 2 (today's) hashes what decides the result rather than how it was typed:
- ``config_hash``: the method's resolved config after ``--set`` values were coerced to their
  field types, so ``--set lr=1e-3`` and ``--set lr=0.001`` are one run, and a changed default
  is a new run; ``overrides`` keeps the coerced values (canonical JSON) for display;
- ``method_version``: the method class's ``VERSION``, bumped when its code changes results;
- ``data_fingerprint``: every data file's bytes, path relative to its split folder and split
  membership (``benchmark.data.split_fingerprint``), so moving a file from train to test is a
  new run;
- ``translate_side``: the profile's translate size (``benchmark.data.resolution``), present only when
  set (ci, smoke), so quick/paper ids did not change when the policy came, and smoke runs
  made before it (native size) are never reused for it.
Version 1 specs (method, artist, profile, seed, text overrides, data fingerprint) stay
readable and keep their ids, but a v2 spec never resolves to a v1 run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

SPEC_VERSION = 2
_V1_FIELDS = ("method", "artist", "profile", "seed", "overrides", "data_fingerprint", "spec_version")


def canonical(value: Any) -> str:
    """Compact, key-sorted JSON: equal values give equal text (tuples as lists, paths as text)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: Any) -> str:
    """Hash of a resolved config dataclass: what the method will actually run with.

    A field declared with ``metadata={"id_omits_default": True}`` is left out while it holds its
    default: a setting added after runs were stored, whose default computes what those runs
    computed, so their ids (and stored results) stay valid. Any other value is hashed as usual.
    """
    values = dataclasses.asdict(config)
    for f in dataclasses.fields(config):
        if f.metadata.get("id_omits_default") and f.default is not dataclasses.MISSING \
                and values[f.name] == f.default:
            del values[f.name]
    return hashlib.sha256(canonical(values).encode()).hexdigest()[:16]


def set_text(value: Any) -> str:
    """A config value as ``--set key=VALUE`` reads it back (lists comma-joined, booleans true/false,
    None as none), so a printed command reproduces the run instead of failing to parse."""
    if isinstance(value, (list, tuple)):
        return ",".join(set_text(v) for v in value)
    if value is None:
        return "none"
    return value if isinstance(value, str) else json.dumps(value)


def override_values(overrides: Any, spec_version: int) -> list[tuple[str, Any]]:
    """``[(key, value)]`` as the config holds them (v2 stores canonical JSON; v1 the typed text)."""
    out = []
    for key, value in overrides or ():
        if spec_version >= 2:
            try:
                value = json.loads(value)
            except (TypeError, ValueError):
                pass
        out.append((key, value))
    return out


@dataclass(frozen=True)
class RunSpec:
    method: str
    artist: str
    profile: str = "smoke"
    seed: int = 0
    overrides: tuple[tuple[str, str], ...] = ()
    data_fingerprint: str = ""
    spec_version: int = field(default=SPEC_VERSION)
    config_hash: str = ""
    method_version: str = ""
    translate_side: int | None = None

    @staticmethod
    def make(method: str, artist: str, profile: str, seed: int, overrides: dict[str, Any],
             data_fingerprint: str, *, config: Any = None, method_version: str = "",
             translate_side: int | None = None) -> RunSpec:
        """A v2 spec; ``overrides`` are the coerced values (``config``'s fields), stored as canonical JSON."""
        coerced = tuple(sorted((k, canonical(v)) for k, v in overrides.items()))
        return RunSpec(method, artist, profile, seed, coerced, data_fingerprint, SPEC_VERSION,
                       config_hash(config) if config is not None else "", method_version, translate_side)

    def as_dict(self) -> dict[str, Any]:
        raw = dataclasses.asdict(self)
        if self.spec_version == 1:
            return {k: raw[k] for k in _V1_FIELDS}
        if raw["translate_side"] is None:  # native size: the id it had before the field existed
            del raw["translate_side"]
        return raw

    def canonical_json(self) -> str:
        return canonical(self.as_dict())

    @property
    def run_id(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:12]

    def override_values(self) -> list[tuple[str, Any]]:
        return override_values(self.overrides, self.spec_version)

    def command(self) -> str:
        """The `bench run` command that makes (or resumes) this run: the one spelling every hint uses."""
        sets = "".join(f" --set {k}={set_text(v)}" for k, v in self.override_values())
        return f"bench run --method {self.method} --artist {self.artist} --profile {self.profile} --seed {self.seed}{sets}"

    @staticmethod
    def from_json(text: str) -> RunSpec:
        raw = json.loads(text)
        raw["overrides"] = tuple(tuple(kv) for kv in raw.get("overrides", ()))
        raw.setdefault("spec_version", 1)
        return RunSpec(**raw)
