"""The photo reference set a measurement is taken against, and where rows measured against
another one go (issue 23, building on issue 25 §7).

Why: a ranking is only worth something if it survives a change of reference photos (e.g. PACS
landscape test half A vs half B), so ``--reference DIR`` on ``bench run``, ``bench eval`` and
``bench shift`` replaces the data's photo test set by a folder of photos. A run's own rows
(measured against its data's photo test set) are never touched: rows measured against other
photos go to a row of their own, ``<run id>@ref-<sha12>``, keyed by the reference set's content
hash (``benchmark.data.fingerprint``), kind ``eval``, labelled ``<method> [<profile>; run <id>;
reference photos <sha12>]`` so the leaderboard never averages it with the run's own. `bench eval
--run ID --data-root OTHER` makes the same row (one mechanism), and each such row is kept as
``<home>/evals/<id>.json`` so `bench store rebuild` recovers it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark import data
from benchmark.core.atomic import write_atomic
from benchmark.core.errors import ArtshiftError
from benchmark.core.spec import canonical
from benchmark.core.store import MetricRow, Store

log = logging.getLogger("artshift.reference")


def reference_photos(folder: Path, *, skip_bad: bool = False) -> list[Path]:
    """The photos of ``--reference DIR``: image files directly in it, else one level down in class
    folders (PACS' layout). A missing or empty folder, or one with no readable image, is one error
    saying what to pass; a bad image is an error unless ``skip_bad`` (then it is left out)."""
    folder = Path(folder)
    kinds = ", ".join(sorted(data.IMAGE_EXTENSIONS))
    if not folder.is_dir():
        raise ArtshiftError(f"reference folder {folder} does not exist",
                            hint=f"pass --reference a folder of photos ({kinds}) to measure against")
    files = data._image_files(folder) or data._class_image_files(folder)
    if not files:
        raise ArtshiftError(f"reference folder {folder} holds no images ({kinds})",
                            hint="put the reference photos directly inside it (or in class folders one level "
                                 "down), or leave --reference out to use the data's photo test set")
    good, bad = data.readable_images(files, "skip" if skip_bad else "error")
    if not good:
        raise ArtshiftError(f"none of the images in reference folder {folder} can be read "
                            f"({data.skipped_summary(bad)})",
                            hint="pass --reference a folder of readable photos (PNG, JPEG, ...)")
    if bad:
        log.warning("reference %s: %s", folder, data.skipped_summary(bad))
    return good


def other_reference(photos: Sequence[Path], own: Sequence[Path]) -> str | None:
    """The content hash of ``photos``, or None when they are the data's ``own`` photo test set (then
    the run's own rows are the ones measured): the one test of "another reference set"."""
    ref = data.fingerprint(photos)
    return None if ref == data.fingerprint(own) else ref


def reference_id(run_id: str, ref: str) -> str:
    """The row of run ``run_id`` measured against the reference photos of content hash ``ref``."""
    return f"{run_id}@ref-{ref[:12]}"


def forget_reference_rows(store: Store, home: Path, run_id: str) -> list[str]:
    """Drop the rows of ``run_id`` measured against other photos, and their copies for `bench store
    rebuild`: `bench run --force` is about to replace the translations they describe."""
    ids = store.delete_runs_under(reference_id(run_id, ""))
    for target in ids:
        (home / "evals" / f"{target.replace('/', '_')}.json").unlink(missing_ok=True)
    return ids


def record_evaluation(home: Path, store: Store, run_id: str) -> None:
    """An evaluation without a run folder (an external folder, a run against other photos), kept as
    ``<home>/evals/<id>.json`` (its store row and metric rows), so `bench store rebuild` recovers it."""
    try:
        write_atomic(home / "evals" / f"{run_id.replace('/', '_')}.json", json.dumps(
            {"run": store.run(run_id), "metrics": store.metrics_for(run_id)}, indent=2, default=str))
    except OSError as exc:  # the store has it; only the rebuild copy is missing
        log.warning("could not keep a copy of evaluation %s for `bench store rebuild`: %s", run_id, exc)


def store_reference_rows(store: Store, home: Path, *, run_id: str, method: str, profile: str, artist: str,
                         run_dir: Path, ref: str, source: dict[str, Any], rows: Sequence[MetricRow],
                         timings: dict[str, float] | None = None) -> str:
    """Add ``rows`` (measured against the photos of content hash ``ref``) to the run's row for that
    reference, created when new; ``source`` says where the photos came from (provenance). Returns its id."""
    target = reference_id(run_id, ref)
    store.start_run(target, kind="eval", method=f"{method} [{profile}; run {run_id}; reference photos {ref[:12]}]",
                    artist=artist, profile="external", seed=None,
                    spec_json=canonical({"run_id": run_id, "reference_photos": ref, **source}),
                    run_dir=str(run_dir / "translated"), data_fingerprint=ref)
    store.finish_run(target, "done", timings, rows=list(rows))
    record_evaluation(home, store, target)
    return target
