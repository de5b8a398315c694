"""Named compute budgets and ``--set key=value`` overrides of a method's config dataclass.

A method's ``default_config(profile)`` returns its dataclass for one of these profiles;
overrides are parsed against the dataclass field types so ``--set lr=1e-4`` is a float and a
misspelt key is an error naming the valid ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import Any

from benchmark.core.errors import ArtshiftError, did_you_mean

PROFILES = {
    "ci": "seconds per run on a CPU: tiny images and networks, for tests and the CI leaderboard",
    "smoke": "minutes on a 2-core CPU: 64 px training, small networks, a few thousand iterations",
    "cpu": ("<= 30 min per method on 2 idle CPU cores: smoke's networks and 64 px, generators that start "
            "as the identity (residual), a longer schedule; the real FID Inception is required"),
    "quick": "about an hour on one GPU: full-size networks, a shortened schedule",
    "paper": "the published schedule (200 epochs at 256 px): a multi-day GPU job",
}


# Torch threads of every CPU computation of a `bench` process: a run's training, translation and
# measurement unless `bench run --threads N` says otherwise, and every other command (eval, shift,
# downstream, translate, ci, ...) unless OMP_NUM_THREADS does (``benchmark.cli.main``). The count
# changes the order of float sums and so the numbers (docs/benchmarks.md: FID-2048 389.39 at 1
# thread, 389.51 at 2, for one ci spec), while no run id names it: one fixed count makes `bench
# run` and `bench sweep` (1 thread per cell) agree, runs a re-measurement (`bench eval --run`) at
# the count a default run measured itself with, and lets two jobs share 2 cores at 63-68% of a
# solo job's speed each (two oversubscribed 2-thread training jobs: 24-26%; docs/benchmarks.md).
CPU_THREADS = 1


# Free memory (GiB) a profile's most demanding method needs, from the peak resident memory measured
# on the project's CPU machine (docs/results.md, section 5), rounded up: ``ours`` at ci 2.12 GiB
# (`bench run`, /usr/bin/time), at cpu 3.74-3.82 GiB (`status.json` of the sweep's runs); smoke
# trains the same networks on the same bank as cpu. Checked before training starts. GPU profiles
# are not checked here (their need is GPU memory; their banks are sized by ``bank_memory_gb``).
MEMORY_GIB: dict[str, float] = {"ci": 2.5, "smoke": 4.0, "cpu": 4.0}


def available_memory_gib() -> float | None:
    """MemAvailable of /proc/meminfo (Linux): what can be allocated without swapping; None elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024**2
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(profile: str) -> None:
    """Refuse to start training a profile that would not fit in the memory free now (a run
    killed by the OOM killer mid-way loses its time and says nothing useful)."""
    need = MEMORY_GIB.get(profile)
    have = available_memory_gib()
    if need is None or have is None or have >= need:
        return
    fits = [p for p, gib in MEMORY_GIB.items() if gib <= have]
    raise ArtshiftError(
        f"profile {profile!r} needs about {need:g} GiB of free memory and this machine has "
        f"{have:.1f} GiB available (MemAvailable, /proc/meminfo); nothing was started",
        hint=("free memory (stop other jobs) and run it again"
              + (f", or use a smaller profile: {', '.join(fits)}" if fits else "")))


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ArtshiftError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})",
                            hint=did_you_mean(profile, PROFILES))
    return profile


def default_weights(profile: str) -> str:
    """ci/smoke fall back to random-init features when no pretrained file can be had; others
    (cpu included: its point is a real FID) insist."""
    return "auto" if profile in ("ci", "smoke") else "pretrained"


def parse_overrides(items: typing.Sequence[str]) -> dict[str, str]:
    """``["lr=1e-4", "n_blocks=6"]`` -> ``{"lr": "1e-4", "n_blocks": "6"}`` (values still text)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ArtshiftError(f"bad --set {item!r}", hint="write overrides as key=value, e.g. --set lr=1e-4")
        out[key.strip()] = value.strip()
    return out


def _coerce(text: str, kind: Any, key: str) -> Any:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin is typing.Union or (origin is not None and type(None) in args):
        if text.lower() in ("none", "null"):
            return None
        kind = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(kind), typing.get_args(kind)
    try:
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind in (int, float, str):
            return kind(text)
        if origin in (tuple, list):
            parts = [p for p in text.replace(";", ",").split(",") if p.strip()] if text else []
            inner = args[0] if args else str
            return tuple(_coerce(p.strip(), inner, key) for p in parts)
        return json.loads(text)
    except (ValueError, json.JSONDecodeError):
        raise ArtshiftError(f"--set {key}={text!r}: cannot read this as {getattr(kind, '__name__', kind)}") from None


def check_config(config: Any) -> Any:
    """Refuse values a run cannot use (they would crash or train nothing and be recorded as done).

    Every number must be finite; a config class may declare ``RANGES = {field: (low, high)}``
    (inclusive, None = open), ``CHOICES = {field: (allowed values)}`` for settings with a closed
    set of choices, and cross-field checks in a ``check()`` method returning problems.
    """
    problems = []
    ranges: dict[str, tuple[float | None, float | None]] = {}
    choices: dict[str, tuple[Any, ...]] = {}
    for klass in reversed(type(config).__mro__):  # subclasses add to (and may override) their bases' ranges
        ranges.update(getattr(klass, "RANGES", {}) if "RANGES" in vars(klass) else {})
        choices.update(getattr(klass, "CHOICES", {}) if "CHOICES" in vars(klass) else {})
    for name, allowed in choices.items():  # closed sets of choices (norm, init_type, ...), before any work
        value = getattr(config, name, None)
        if value is not None and value not in allowed:
            close = did_you_mean(str(value), [str(a) for a in allowed])
            problems.append(f"{name}={value!r} is not one of {', '.join(map(str, allowed))}"
                            + (f" ({close})" if close else ""))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{f.name}={value} is not a finite number")
            continue
        low, high = ranges.get(f.name, (None, None))
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
            problems.append(f"{f.name}={value} is outside {bounds}")
    if hasattr(config, "check"):
        problems += list(config.check())
    if problems:
        raise ArtshiftError(f"{type(config).__name__}: " + "; ".join(problems),
                            hint="fix the --set value(s); `bench run --help` shows how overrides are written")
    return config


def apply_overrides(config: Any, overrides: dict[str, str]) -> Any:
    """Return a copy of the config dataclass with the (text) overrides applied, checked."""
    if not overrides:
        return check_config(config)
    hints = typing.get_type_hints(type(config))
    fields = {f.name for f in dataclasses.fields(config)}
    changes = {}
    for key, text in overrides.items():
        if key not in fields:
            raise ArtshiftError(
                f"--set {key}: {type(config).__name__} has no such setting",
                hint=f"{did_you_mean(key, fields) or ''} settings: {', '.join(sorted(fields))}".strip())
        changes[key] = _coerce(text, hints[key], key)
    return check_config(dataclasses.replace(config, **changes))
