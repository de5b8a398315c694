"""Finished runs read back from the store and their run folders, and where a run keeps its outputs.

``bench eval --run``, ``bench shift``, ``bench downstream``, grids, user studies and the paper
table all start from a finished run's translations; they find it here, below the runner, so
none of them imports the code that trains (rebuilding a run's model is
``benchmark.pipeline.runner.load_trained``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark import data
from benchmark.core.download import sha256_file
from benchmark.core.errors import ArtshiftError
from benchmark.core.spec import RunSpec
from benchmark.core.store import Store


def output_name(rel: str) -> str:
    """Translation file of a source named ``rel`` (relative to its split folder)."""
    return f"{rel}.png"


@dataclass
class FinishedRun:
    """A run read back from its directory: what is needed to rebuild and use its model."""

    run_id: str
    run_dir: Path
    method: str
    artist: str
    profile: str
    seed: int
    config: dict[str, Any]
    data_root: Path
    spec: RunSpec

    def command(self) -> str:
        """The `bench run` command that made this run (add --force to retrain it)."""
        return self.spec.command()

    def check_final_state(self) -> None:
        """Refuse a finished run whose final checkpoint changed since it finished (sha256 recorded then)."""
        try:
            record = json.loads((self.run_dir / "status.json").read_text())
        except (OSError, ValueError):
            record = {}
        for rel, want in (record.get("checkpoints") or {}).items():
            if rel.endswith(".prev.pt"):  # only the final state is read
                continue
            path = self.run_dir / rel
            got = sha256_file(path) if path.is_file() else None
            if got != want:
                raise self.damaged(path, f"its sha256 is {got}" if got else "it is missing", want)

    def damaged(self, path: Path, what: str, expected: str | None) -> ArtshiftError:
        want = f"expected sha256 {expected} (recorded when the run finished)" if expected else \
            "no sha256 was recorded (a run finished before artshift recorded them)"
        return ArtshiftError(f"final checkpoint {path} of finished run {self.run_id} is damaged: {what}; {want}; "
                             "nothing was written", hint=f"retrain the run: `{self.command()} --force`")

    def output(self, rel: str) -> Path:
        """Where this run stored the translation of ``rel`` (v1 runs named outputs by stem)."""
        name = f"{Path(rel).stem}.png" if self.spec.spec_version == 1 else output_name(rel)
        return self.run_dir / "translated" / name

    def translations(self, domain: data.Domain) -> list[Path]:
        """This run's translation of every test painting of ``domain``, in order, or an error
        naming what is missing and how to finish it."""
        outputs = [self.output(domain.relpath(p)) for p in domain.paintings_test]
        missing = [o for o in outputs if not o.is_file()]
        if missing:
            raise ArtshiftError(f"run {self.run_id} ({self.method}) lacks {len(missing)} of its {len(outputs)} "
                                f"translations, e.g. {missing[0]}",
                                hint=f"resume it with `bench run --method {self.method} --artist {self.artist} "
                                     f"--profile {self.profile} --seed {self.seed}`, or leave it out")
        return outputs


def find_run(store: Store, *, run_id: str | None = None, method: str | None = None, artist: str | None = None,
             profile: str = "smoke", seed: int = 0) -> FinishedRun:
    """A finished run by id, or the newest finished run of (method, artist, profile, seed)."""
    if run_id:
        row = store.run(run_id)
        if row is None:
            raise ArtshiftError(f"no run {run_id!r} in {store.path}", hint="`bench leaderboard --format csv` lists "
                                                                          "run ids; or pass --home")
    else:
        if not (method and artist):
            raise ArtshiftError("name a run: --run RUN_ID, or --method and --artist (with --profile, --seed)")
        rows = store.find_runs(method=method, artist=artist, profile=profile, seed=seed, status="done")
        if not rows:
            raise ArtshiftError(f"no finished {method} run for {artist} at profile {profile}, seed {seed} in "
                                f"{store.path}", hint=f"run `bench run --method {method} --artist {artist} "
                                                      f"--profile {profile} --seed {seed}` first")
        row = rows[0]
    if row["kind"] != "run" or not row["run_dir"]:
        raise ArtshiftError(f"{row['run_id']} is an evaluation of an external folder, not a trained run",
                            hint="use `bench eval --images DIR` for external folders")
    run_dir = Path(row["run_dir"])
    if row["status"] != "done" or not (run_dir / "DONE").exists():
        raise ArtshiftError(f"run {row['run_id']} ({row['method']} / {row['artist']}) has not finished "
                            f"(status {row['status']}, {run_dir})",
                            hint="run the same `bench run` command again to resume it")
    try:
        info = json.loads((run_dir / "spec.json").read_text())
    except (OSError, ValueError) as exc:
        raise ArtshiftError(f"cannot read {run_dir / 'spec.json'}: {exc}") from None
    spec = info["spec"]
    return FinishedRun(row["run_id"], run_dir, spec["method"], spec["artist"], spec["profile"], int(spec["seed"]),
                       info.get("config", {}), Path(info["data_root"]), RunSpec.from_json(row["spec_json"]))


