"""One benchmark run: fit -> translate every test painting -> evaluate -> record; and the
uses of a finished run (translate any folder with it, evaluate it with more extractors).

Resumable at every stage: training resumes from its last checkpoint, translation skips
paintings whose output already exists, and a finished run (``DONE`` marker + a 'done' row in
the store) is returned from the store instead of being recomputed unless ``force`` is set;
asked for with other extractor weights, it is evaluated again without retraining.

Translations are named by the source's path relative to its split folder plus ``.png``
(``dog/pic_001.jpg`` -> ``translated/dog/pic_001.jpg.png``), so ``a.jpg`` and ``a.png`` or two
classes' ``pic_001.jpg`` never collide, and each image's random state derives from its content
hash, not its position, so translating one painting alone gives the same pixels as in the run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmark import data
from benchmark.core import paths, registry
from benchmark.core.atomic import atomic_path, write_atomic
from benchmark.core.download import sha256_file
from benchmark.core.errors import ArtshiftError
from benchmark.core.locks import RunLock
from benchmark.core.method import RunContext, TrainData
from benchmark.core.profiles import CPU_THREADS, apply_overrides, check_memory, check_profile, default_weights
from benchmark.core.spec import SPEC_VERSION, RunSpec
from benchmark.core.store import MetricRow, Store, check_rows, provenance
from benchmark.data import resolution
from benchmark.features.extractor import calibration_photos
from benchmark.pipeline.evaluate import DEFAULT_EXTRACTORS, evaluate_paths, make_extractor, split_with
from benchmark.pipeline.reference import (
    forget_reference_rows,
    other_reference,
    record_evaluation,
    reference_id,
    reference_photos,
    store_reference_rows,
)
from benchmark.pipeline.runs import FinishedRun, output_name
from benchmark.pipeline.training import CHECKPOINT, seed_everything

log = logging.getLogger("artshift.run")

@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    spec: RunSpec
    metrics: list[dict[str, Any]]
    reused: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    reference_id: str | None = None  # `bench run --reference`: the row measured against those photos
    reference_metrics: list[dict[str, Any]] = field(default_factory=list)


def to_tensor(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)


def to_image(t: torch.Tensor) -> Image.Image:
    arr = ((t.detach().clamp(-1, 1).float().cpu()[0].permute(1, 2, 0).numpy() + 1.0) * 127.5).round()
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def save_png_atomic(img: Image.Image, path: Path) -> None:
    with atomic_path(path, suffix=".tmp.png") as tmp:
        img.save(tmp, format="PNG")


def image_seed(seed: int, path: Path) -> int:
    """Per-image seed from the run seed and the file's content, independent of its position."""
    h = hashlib.sha256(str(seed).encode() + b"\0")
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return int.from_bytes(h.digest()[:8], "big") % 2**63


def translate_all(method: Any, sources: list[tuple[Path, str]], out_dir: Path, seed: int, skip_bad: bool,
                  progress: bool = True, side: int | None = None, overwrite: bool = False) -> list[Path]:
    """Translate each ``(file, relative name)`` at the translate size (``benchmark.data.resolution``:
    shorter side ``side``, None for its own, up to ``MAX_TRANSLATE_SIDE``) into ``out_dir``, each
    output resized back to the size of its source (existing outputs kept, or with ``overwrite``
    replaced, each atomically)."""
    from tqdm.auto import tqdm

    names = [rel for _, rel in sources]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ArtshiftError(f"two source images share the name {dup[0]!r}", hint="rename one of them")
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs, skipped, downscaled = [], [], []
    for src, rel in tqdm(sources, desc=f"translate {method.name}", disable=not progress, leave=False):
        dst = out_dir / output_name(rel)
        if overwrite or not dst.exists():
            try:
                img = data.load_image(src)
            except data.BadImageError:
                if not skip_bad:
                    raise
                skipped.append(src)
                continue
            seed_everything(image_seed(seed, src))
            work = resolution.work_size(img.width, img.height, side)
            if work != resolution.work_size(img.width, img.height, side, max_side=2**31):  # the limit applied
                downscaled.append(f"{rel} ({img.width}x{img.height} -> {work[0]}x{work[1]})")
            x = img if work == img.size else img.resize(work, resolution.RESAMPLE)
            out = method.translate(to_tensor(x).to(method.device))  # methods pick their own autograd mode
            if out.shape != (1, 3, x.height, x.width):
                raise RuntimeError(f"{method.name}.translate returned shape {tuple(out.shape)} for a "
                                   f"{x.width}x{x.height} image")
            if not torch.isfinite(out).all():
                raise ArtshiftError(f"{method.name} produced non-finite pixels for {src}",
                                    hint="the model diverged: re-run with --force, another seed or a lower lr")
            result = to_image(out)
            if result.size != img.size:  # back to the painting's own size: every output matches its source
                result = result.resize(img.size, resolution.RESAMPLE)
            dst.parent.mkdir(parents=True, exist_ok=True)
            save_png_atomic(result, dst)
        outputs.append(dst)
    if skipped:
        log.warning("skipped %d bad images: %s", len(skipped), ", ".join(map(str, skipped)))
    if downscaled:
        log.warning("%d paintings are larger than the maximum translate size (longer side %d px): downscaled "
                    "(bicubic), translated, and the translation resized back to the painting's size: %s",
                    len(downscaled), resolution.MAX_TRANSLATE_SIDE, ", ".join(downscaled))
    return outputs


def painting_sources(domain: data.Domain) -> list[tuple[Path, str]]:
    return [(p, domain.relpath(p)) for p in domain.paintings_test]


def run_dir_for(home: Path, spec: RunSpec) -> Path:
    return home / "runs" / spec.method / spec.artist / spec.run_id


def _measure(outputs: list[Path], domain: data.Domain, home: Path, *, extractors: tuple[str, ...] | list[str],
             weights: str, metrics: list[str] | None, skip_bad: bool, progress: bool,
             device: str, side: int | None,
             reference: list[Path] | None = None) -> tuple[list[MetricRow], list[Path]]:
    """Every applicable metric row of ``outputs`` against the domain's photo test set (or the
    ``reference`` photos), resized down and up to the translate ``side`` as the outputs were
    (nothing written)."""
    rows: list[MetricRow] = []
    skipped: list[Path] = []
    real = domain.photos_test if reference is None else reference
    photos = resolution.reference_copies(real, side, home / "cache" / "resized", skip_bad=skip_bad)
    for name in extractors:
        extractor = make_extractor(weights, calibration_photos(domain), home, device=device, name=name)
        ev = evaluate_paths(outputs, photos, extractor, home / "cache" / "stats", skip_bad=skip_bad,
                            progress=progress, metrics=metrics)
        rows += ev.rows
        skipped += [p for p in ev.skipped if p not in skipped]
    return rows, skipped


def _measure_reference(store: Store, home: Path, spec: RunSpec, run_dir: Path, domain: data.Domain,
                       photos: list[Path], reference: Path, *, weights: str, skip_bad: bool, progress: bool,
                       device: str, fresh: bool) -> tuple[str, list[dict[str, Any]]] | None:
    """``bench run --reference``: a finished run's translations measured against ``photos`` into the
    run's row for that reference set, unless already measured there with these weights and the
    translations are not ``fresh`` (the run's own rows are never touched); None when ``photos`` are
    the run's own photo test set."""
    ref = other_reference(photos, domain.photos_test)
    if ref is None:
        return None
    target = reference_id(spec.run_id, ref)
    stored = store.run(target)
    if not fresh and stored and stored["status"] == "done":
        extractor = make_extractor(weights, calibration_photos(domain), home, device=device)
        if extractor.id in {r["extractor_id"] for r in store.metrics_for(target)}:
            return target, store.metrics_for(target)
    outputs = [run_dir / "translated" / output_name(rel) for _, rel in painting_sources(domain)]
    t = time.perf_counter()
    rows, _ = _measure([o for o in outputs if o.exists()], domain, home, extractors=DEFAULT_EXTRACTORS,
                       weights=weights, metrics=None, skip_bad=skip_bad, progress=progress, device=device,
                       side=spec.translate_side, reference=photos)
    store_reference_rows(store, home, run_id=spec.run_id, method=spec.method, profile=spec.profile,
                         artist=spec.artist, run_dir=run_dir, ref=ref, source={"reference": str(reference.resolve())},
                         rows=rows, timings={"evaluate_s": time.perf_counter() - t})
    return target, store.metrics_for(target)


def _record_failure(store: Store, run_id: str, exc: BaseException, timings: dict[str, float]) -> None:
    """Mark a run failed (or interrupted: Ctrl-C, SIGTERM), never hiding the original error."""
    status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
    try:
        store.finish_run(run_id, status, timings, error=f"{type(exc).__name__}: {exc}")
    except Exception as record_exc:  # e.g. a full disk: the original error is the one to see
        log.error("could not record run %s as %s: %s", run_id, status, record_exc)


def _write_metrics_json(run_dir: Path, store: Store, run_id: str) -> None:
    """The run's rows into its folder (what `bench store rebuild` reads back); left as it is, byte for
    byte, when it already holds these rows (a re-measurement that found the same numbers)."""
    rows = store.metrics_for(run_id)
    path = run_dir / "metrics.json"

    def key(items: Any) -> list[str]:
        return sorted(json.dumps({k: v for k, v in r.items() if k != "created_at"}, sort_keys=True) for r in items)

    try:
        if key(json.loads(path.read_text())) == key(rows):
            return
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    write_atomic(path, json.dumps(rows, indent=2))


def _write_status(run_dir: Path, status: str, timings: dict[str, float], *, error: str | None = None,
                  method_weights: str | None = None, checkpoints: dict[str, str] | None = None,
                  strict: bool = False) -> None:
    """How the run ended, in its own folder: what `bench sweep status` shows and `collect` imports
    (sweep workers never open the shared store). Never hides the run's own error. ``checkpoints``:
    sha256 of each file of the finished run's final state, checked before it is used again."""
    try:
        write_atomic(run_dir / "status.json", json.dumps(
            {"status": status, "error": error, "timings": timings, "method_weights": method_weights,
             "provenance": provenance(), "finished_at": time.time(),
             # the order of float sums in training depends on it: the same spec at another count
             # ends with other weights (tests/test_reliability.py)
             "threads": torch.get_num_threads(),
             # this process's peak resident memory so far (a sweep cell runs in its own process)
             "peak_rss_gib": round(peak_rss_gib(), 3),
             **({"checkpoints": checkpoints} if checkpoints is not None else {})}, indent=2, default=str))
    except Exception as exc:  # e.g. a full disk
        if strict:  # the record a finished run needs: the run does not commit without it
            raise
        log.error("could not write %s: %s", run_dir / "status.json", exc)


def peak_rss_gib() -> float:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024**3 if sys.platform == "darwin" else 1024**2)


def final_state_digests(run_dir: Path) -> dict[str, str]:
    """sha256 of every file a finished run's model is rebuilt from (its checkpoints, a method's
    own ``*.pt`` index), by path relative to the run folder."""

    files = sorted((run_dir / "checkpoints").glob("*.pt")) + sorted(run_dir.glob("*.pt"))
    return {p.relative_to(run_dir).as_posix(): sha256_file(p) for p in files if not p.name.startswith(".")}


def _index_from_folder(store: Store, spec: RunSpec, run_dir: Path) -> dict[str, Any] | None:
    """Record a committed run (``DONE``) in the store from its folder; None when its rows cannot be read."""
    try:
        rows_json = json.loads((run_dir / "metrics.json").read_text())
        record = json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return None
    fields = [f.name for f in dataclasses.fields(MetricRow)]
    rows = [MetricRow(**{k: r[k] for k in fields if k in r}) for r in rows_json]
    store.import_run(spec.run_id, method=spec.method, artist=spec.artist, profile=spec.profile, seed=spec.seed,
                     spec_json=spec.canonical_json(), spec_version=spec.spec_version, run_dir=str(run_dir),
                     data_fingerprint=spec.data_fingerprint, status="done", timings=record.get("timings") or {},
                     error=None, method_weights=record.get("method_weights"), provenance=record.get("provenance"),
                     rows=rows)
    log.info("run %s was finished (DONE) but not in the store: indexed it from %s", spec.run_id, run_dir)
    return store.run(spec.run_id)


def rows_as_json(run_id: str, rows: list[MetricRow]) -> list[dict[str, Any]]:
    """Metric rows as ``metrics.json`` holds them (the store's columns)."""
    now = time.time()
    return [{"run_id": run_id, **dataclasses.asdict(r), "created_at": now} for r in rows]


def make_spec(method: str, artist: str, profile: str, seed: int, overrides: dict[str, str],
              data_fingerprint: str) -> tuple[Any, Any, RunSpec]:
    """(method class, resolved config, v2 spec): the id hashes the coerced config, not the typed text."""
    registry.methods.entry(method)  # did-you-mean before any expensive work
    check_profile(profile)
    cls = registry.methods.get(method)
    config = apply_overrides(cls.default_config(profile), overrides)
    coerced = {k: getattr(config, k) for k in overrides}
    spec = RunSpec.make(method, artist, profile, seed, coerced, data_fingerprint, config=config,
                        method_version=str(cls.VERSION), translate_side=resolution.side_for(profile))
    return cls, config, spec


def _resolve_run(method: str, artist: str, profile: str, seed: int, overrides: dict[str, str],
                 data_root: Path | None, home: Path, progress: bool) -> tuple[Any, Any, data.Domain, RunSpec, Path]:
    make_spec(method, artist, profile, seed, overrides, "")  # check names and overrides before touching data
    root = paths.data_root(data_root)
    data.check_artist(artist, root, home)  # artists with a folder under the root or a manifest in home count
    domain = data.ensure_domain(artist, root, home, progress=progress)  # fetched (verified) when missing + online
    cls, config, spec = make_spec(method, artist, profile, seed, overrides, data.split_fingerprint(domain))
    return cls, config, domain, spec, root


def execute(method: str, artist: str, *, profile: str = "smoke", seed: int = 0,
            overrides: dict[str, str] | None = None, data_root: Path | None = None, home: Path | None = None,
            force: bool = False, weights: str | None = None, deterministic: bool = False,
            skip_bad: bool = False, progress: bool = True, device: str = "cpu",
            store: Store | None = None, wait: float = 0.0, worker: bool = False,
            reference: Path | None = None, threads: int | None = None) -> RunResult:
    """``bench run``: the whole pipeline for one spec, resumable; returns what was recorded.

    ``wait``: seconds to wait while another process holds this run (0: say who holds it, at once).
    ``worker``: a sweep worker, possibly on a network file system where SQLite locking is unsafe:
    the result goes only into the run folder (``metrics.json``, ``status.json``, ``DONE``) and the
    store is never opened; ``benchmark.analyses.sweep.collect`` imports it later, from one process.
    ``reference``: a folder of photos the run is also measured against (its run id and own rows are
    unchanged; a finished run is only measured against it), into the row keyed by their content hash.
    """
    overrides = dict(overrides or {})
    home = paths.home(home)
    if threads is None and torch.device(device).type == "cpu":
        threads = CPU_THREADS
    if threads is not None and threads < 1:
        raise ArtshiftError(f"--threads {threads}: must be at least 1", hint="pass e.g. --threads 1")
    cls, config, domain, spec, root = _resolve_run(method, artist, profile, seed, overrides, data_root, home,
                                                   progress)  # every setting checked before anything is created
    if reference is not None and worker:
        raise ArtshiftError("--reference is not available to sweep workers (they never open the store)",
                            hint=f"measure the finished runs afterwards: `bench eval --run ID --reference {reference}`")
    ref_photos = reference_photos(Path(reference), skip_bad=skip_bad) if reference is not None else None
    if not worker:
        store = store or Store(home / "results.sqlite")
    run_dir = run_dir_for(home, spec)
    # one process at a time per run (the lock lives beside the run folder, so --force can delete it)
    with RunLock(run_dir.parent / f".{spec.run_id}.lock", wait=wait, what=f"run {spec.run_id} ({method} / {artist})"):
        done_marker = run_dir / "DONE"
        if worker and not force and done_marker.exists() and (run_dir / "metrics.json").exists():
            return RunResult(spec.run_id, run_dir, spec, json.loads((run_dir / "metrics.json").read_text()),
                             reused=True)
        stored = store.run(spec.run_id) if store is not None else None
        if store is not None and not force and done_marker.exists() and not (stored and stored["status"] == "done"):
            stored = _index_from_folder(store, spec, run_dir)  # committed (DONE) but killed before the index
        if store is not None and not force and done_marker.exists() and stored and stored["status"] == "done":
            rows: list[MetricRow] = []
            if weights is not None:  # asked for specific extractor weights: measure with them unless already done
                ids = {r["extractor_id"] for r in store.metrics_for(spec.run_id)}
                extractor = make_extractor(weights, calibration_photos(domain), home, device=device)
                if extractor.id not in ids:
                    outputs = [run_dir / "translated" / output_name(rel) for _, rel in painting_sources(domain)]
                    rows, _ = _measure([o for o in outputs if o.exists()], domain, home, extractors=DEFAULT_EXTRACTORS,
                                       weights=weights, metrics=None, skip_bad=skip_bad, progress=progress, device=device,
                                       side=spec.translate_side)
                    store.add_metrics(spec.run_id, rows)
                    _write_metrics_json(run_dir, store, spec.run_id)
            res = RunResult(spec.run_id, run_dir, spec, store.metrics_for(spec.run_id), reused=True,
                            timings=json.loads(stored["timings_json"] or "{}"))
            if ref_photos is not None:
                res.reference_id, res.reference_metrics = _measure_reference(
                    store, home, spec, run_dir, domain, ref_photos, Path(reference),
                    weights=weights or default_weights(profile), skip_bad=skip_bad, progress=progress,
                    device=device, fresh=False) or (None, [])
            return res
        check_memory(profile)  # before anything of a new attempt is written or deleted
        if force:
            if run_dir.exists():
                shutil.rmtree(run_dir)
            if store is not None:  # a worker's run: collect replaces all of the run's rows
                store.delete_metrics(spec.run_id)  # no row of the old run survives, whatever its extractor
                forget_reference_rows(store, home, spec.run_id)  # nor its rows against other photos
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "spec.json").write_text(json.dumps(
            {"spec": spec.as_dict(), "run_id": spec.run_id, "config": dataclasses.asdict(config),
             "data_root": str(root), "layout": domain.layout,
             "translate": resolution.describe(spec.translate_side)},
            indent=2, default=str))
        (run_dir / "status.json").unlink(missing_ok=True)  # a previous attempt's failure no longer holds
        if store is not None:
            store.start_run(spec.run_id, kind="run", method=method, artist=artist, profile=profile, seed=seed,
                            spec_json=spec.canonical_json(), run_dir=str(run_dir),
                            data_fingerprint=spec.data_fingerprint, spec_version=SPEC_VERSION)
        file_log = logging.FileHandler(run_dir / "log.txt")
        file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("artshift").addHandler(file_log)
        timings: dict[str, float] = {}
        threads_before = torch.get_num_threads()
        try:
            if threads is not None:  # the process's own count comes back in `finally`
                torch.set_num_threads(threads)
            ctx = RunContext(run_dir=run_dir, home=home, seed=seed, deterministic=deterministic,
                             device=torch.device(device), progress=progress)
            seed_everything(seed)
            model = cls(config, device)
            t = time.perf_counter()
            model.fit(TrainData(artist, list(domain.paintings_train), list(domain.photos_train), skip_bad), ctx)
            timings["fit_s"] = time.perf_counter() - t

            t = time.perf_counter()
            outputs = translate_all(model, painting_sources(domain), run_dir / "translated", seed, skip_bad, progress,
                                    side=spec.translate_side)
            timings["translate_s"] = time.perf_counter() - t

            t = time.perf_counter()
            rows, skipped = _measure(outputs, domain, home, extractors=DEFAULT_EXTRACTORS,
                                     weights=weights or default_weights(profile), metrics=None, skip_bad=skip_bad,
                                     progress=progress, device=device, side=spec.translate_side)
            timings["evaluate_s"] = time.perf_counter() - t
            # the rows and the 'done' status in one transaction; a method's own network weights
            # (Gatys' VGG-19) label the row when not the standard ones
            method_weights = getattr(model, "weights_id", None)
            digests = final_state_digests(run_dir)
            # One commit point: DONE. The run folder's records are written first (rows, then how it
            # ended with the final checkpoint's sha256), DONE last and atomically; the store is an
            # index that follows it (a run killed between DONE and the store is indexed by the next
            # `bench run` of its spec, or by `bench store rebuild`), never ahead of it.
            check_rows(spec.run_id, rows, done=True)
            write_atomic(run_dir / "metrics.json", json.dumps(rows_as_json(spec.run_id, rows), indent=2))
            _write_status(run_dir, "done", timings, method_weights=method_weights, checkpoints=digests, strict=True)
            write_atomic(done_marker, time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n", fsync=True)
            if store is not None:
                store.finish_run(spec.run_id, "done", timings, method_weights=method_weights, rows=rows)
        except BaseException as exc:
            if done_marker.exists():  # committed: only the index lags (e.g. a damaged store); the run is done
                raise
            interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))  # Ctrl-C, SIGTERM, a scheduler's requeue
            _write_status(run_dir, "interrupted" if interrupted else "failed", timings,
                          error=f"{type(exc).__name__}: {exc}")
            if store is not None:
                _record_failure(store, spec.run_id, exc, timings)
            raise
        finally:
            torch.set_num_threads(threads_before)
            logging.getLogger("artshift").removeHandler(file_log)
            file_log.close()
        metrics = store.metrics_for(spec.run_id) if store is not None else rows_as_json(spec.run_id, rows)
        res = RunResult(spec.run_id, run_dir, spec, metrics, timings=timings, skipped=[str(p) for p in skipped])
        if store is not None and ref_photos is not None:  # after DONE: the run's own rows come first
            res.reference_id, res.reference_metrics = _measure_reference(  # new translations (e.g. --force)
                store, home, spec, run_dir, domain, ref_photos, Path(reference),
                weights=weights or default_weights(profile), skip_bad=skip_bad, progress=progress,
                device=device, fresh=True) or (None, [])
        return res


def _as_field_value(value: Any) -> Any:
    """JSON lists back to the tuples config dataclasses use."""
    if isinstance(value, list):
        return tuple(_as_field_value(v) for v in value)
    return value


def _rebuild_config(cls: Any, profile: str, stored: dict[str, Any]) -> Any:
    default = cls.default_config(profile)
    names = {f.name for f in dataclasses.fields(default)}
    return dataclasses.replace(default, **{k: _as_field_value(v) for k, v in stored.items() if k in names})


def load_trained(run: FinishedRun, home: Path, *, data_root: Path | None = None, device: str = "cpu",
                 progress: bool = False) -> tuple[Any, data.Domain]:
    """The run's method with its final state (a finished fit only loads its checkpoint)."""
    cls = registry.methods.get(run.method)
    made_by = run.spec.method_version
    if run.spec.spec_version >= 2 and made_by and str(made_by) != str(cls.VERSION):
        # its checkpoint belongs to other code (e.g. CUT v1's plain networks): refuse before a
        # state-dict mismatch deep in fit() says less; its translations and rows stay usable
        raise ArtshiftError(f"run {run.run_id} was made by {run.method} v{made_by}; this code is {run.method} "
                            f"v{cls.VERSION} and cannot rebuild its model",
                            hint=f"its stored translations still work with `bench eval --run {run.run_id}`; for a "
                                 f"model of today's code run `bench run --method {run.method} --artist {run.artist} "
                                 f"--profile {run.profile} --seed {run.seed}` (a new run id)")
    config = _rebuild_config(cls, run.profile, run.config)
    run.check_final_state()  # sha256 recorded at the finish: a damaged file is named, never retrained over
    root = paths.data_root(data_root) if data_root else run.data_root
    domain = data.ensure_domain(run.artist, root, home, progress=progress)
    # read_only: the method loads its final state and never trains or writes into the finished run
    ctx = RunContext(run_dir=run.run_dir, home=home, seed=run.seed, device=torch.device(device), progress=progress,
                     read_only=True)
    seed_everything(run.seed)
    model = cls(config, device)
    try:
        model.fit(TrainData(run.artist, list(domain.paintings_train), list(domain.photos_train)), ctx)
    except ArtshiftError as exc:
        if "checkpoint" not in str(exc):
            raise

        raise run.damaged(run.run_dir / "checkpoints" / CHECKPOINT, str(exc).splitlines()[0], None) from None
    return model, domain


TRANSLATIONS_MANIFEST = "artshift-translations.json"  # which run and which inputs made a `bench translate` folder


def _folder_files(folder: Path) -> list[str]:
    """Every file under ``folder`` (relative, sorted) but its manifest and hidden files (temporaries)."""
    if not folder.is_dir():
        return []
    found = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if (p.is_file() or p.is_symlink()) and rel.as_posix() != TRANSLATIONS_MANIFEST \
                and not any(part.startswith(".") for part in rel.parts):
            found.append(rel.as_posix())
    return sorted(found)


def read_translations_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest ``bench translate`` left in ``folder``, None when there is none."""
    path = Path(folder) / TRANSLATIONS_MANIFEST
    if not path.exists():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(info, dict) or not isinstance(info.get("files"), dict):
            raise ValueError("not an artshift translations manifest")
        return info
    except (OSError, ValueError) as exc:
        raise ArtshiftError(f"cannot read {path}: {exc}",
                            hint="translate into an empty folder, or run the same `bench translate` with "
                                 "--overwrite") from None


def check_translations_folder(folder: Path, images: list[Path]) -> None:
    """``bench eval --images`` of a folder ``bench translate`` wrote: refuse it unless every image
    in it is one the manifest lists, unchanged (sha256), and the translation finished."""

    info = read_translations_manifest(folder)
    if info is None:
        return
    made = f"run {info.get('run_id')} ({info.get('method')}) from {info.get('inputs')}"
    redo = f"`bench translate --run {info.get('run_id')} --images {info.get('inputs')} --out {folder} --overwrite`"
    if not info.get("complete"):
        raise ArtshiftError(f"{folder} holds an unfinished translation by {made} "
                            f"({folder / TRANSLATIONS_MANIFEST} says it did not complete)",
                            hint=f"run the same `bench translate` command again to finish it ({redo})")
    files = info["files"]
    for p in images:
        rel = Path(p).relative_to(folder).as_posix()
        if rel not in files:
            raise ArtshiftError(f"{folder} mixes the translations of {made} with other files, e.g. {p} "
                                f"(not in {TRANSLATIONS_MANIFEST})",
                                hint="remove the other files, or translate into an empty folder")
        if sha256_file(Path(p)) != files[rel].get("sha256"):
            raise ArtshiftError(f"{p} was changed after {made} wrote it (sha256 differs from {TRANSLATIONS_MANIFEST})",
                                hint=f"translate again: {redo}")


def translate_run(run: FinishedRun, images: Path, out_dir: Path, *, home: Path | None = None,
                  data_root: Path | None = None, skip_bad: bool = False, device: str = "cpu",
                  progress: bool = True, overwrite: bool = False) -> list[Path]:
    """``bench translate``: apply a finished run to every image in ``images`` (its own size) -> ``out_dir``.

    ``out_dir`` must be empty, or hold only what this same translation (run and inputs) already
    wrote (it then resumes); ``overwrite`` replaces every translation in it, each atomically. A
    manifest in the folder (``TRANSLATIONS_MANIFEST``) names the run, the inputs and each file's
    sha256, so `bench eval --images` can refuse a folder that mixes translations with other files.
    """

    home = paths.home(home)
    images = Path(images)
    files = data.list_images(images, what="the paintings to translate")
    out_dir = Path(out_dir)
    if out_dir.resolve() == images.resolve():
        raise ArtshiftError(f"--out {out_dir} is the input folder", hint="write translations to another folder")
    sources = [(p, p.relative_to(images).as_posix()) for p in files]
    planned = {output_name(rel): rel for _, rel in sources}
    inputs_fp = data.fingerprint(files)
    present = _folder_files(out_dir)
    before = read_translations_manifest(out_dir) if present or (out_dir / TRANSLATIONS_MANIFEST).exists() else None
    if present and not overwrite:
        foreign = [n for n in present if n not in planned]
        ours = (before is not None and before.get("run_id") == run.run_id
                and before.get("inputs_fingerprint") == inputs_fp
                and (before.get("complete") or not before.get("overwrite")))  # an interrupted overwrite: redo it
        if foreign or not ours:
            example = (foreign or present)[0]
            why = ("that this translation would not write" if foreign else
                   f"that run {run.run_id} did not write from {images}" if before is None or before.get("complete")
                   else "from an interrupted --overwrite translation")
            raise ArtshiftError(f"--out {out_dir} already holds {len(present)} file(s) {why} (e.g. {example})",
                                hint="translate into an empty folder, or pass --overwrite to replace every "
                                     "translation in it")
    model, _ = load_trained(run, home, data_root=data_root, device=device, progress=progress)
    manifest = {"run_id": run.run_id, "method": run.method, "artist": run.artist, "profile": run.profile,
                "seed": run.seed, "inputs": str(images.resolve()), "inputs_fingerprint": inputs_fp,
                "translate": resolution.describe(run.spec.translate_side), "overwrite": bool(overwrite),
                "complete": False, "files": {}}
    write_atomic(out_dir / TRANSLATIONS_MANIFEST, json.dumps(manifest, indent=2))  # before the first image
    written = translate_all(model, sources, out_dir, run.seed, skip_bad, progress, side=run.spec.translate_side,
                            overwrite=overwrite)
    manifest["files"] = {p.relative_to(out_dir).as_posix(): {"source": planned[p.relative_to(out_dir).as_posix()],
                                                             "sha256": sha256_file(p)} for p in written}
    manifest["complete"] = True
    manifest["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_atomic(out_dir / TRANSLATIONS_MANIFEST, json.dumps(manifest, indent=2))
    stale = [n for n in _folder_files(out_dir) if n not in manifest["files"]]
    if stale:
        log.warning("%s also holds %d file(s) this translation did not write (kept; `bench eval --images` refuses "
                    "the folder until they are removed), e.g. %s", out_dir, len(stale), stale[0])
    return written


def evaluate_run(run: FinishedRun, *, with_: list[str] | None = None, weights: str | None = None,
                 home: Path | None = None, data_root: Path | None = None, skip_bad: bool = False,
                 progress: bool = True, device: str = "cpu", store: Store | None = None,
                 reference: Path | None = None) -> RunResult:
    """``bench eval --run``: (re-)measure a finished run's stored translations; no training.

    Against other photos (``reference``, or another data set's via ``data_root``) the rows go to the
    run's row for that reference set (``benchmark.pipeline.reference``), never over its own."""
    home = paths.home(home)
    store = store or Store.open(home / "results.sqlite")
    extractors, metrics = split_with(with_ or [], run.artist, home=home, run_id=run.run_id)
    ref_photos = reference_photos(reference, skip_bad=skip_bad) if reference is not None else None
    if store.read_only:  # a read-only home (an archive): show what is measured, or say that this must write
        stored = [m for m in store.metrics_for(run.run_id)
                  if m["layer"].split(":")[0] in extractors and (metrics is None or m["metric"] in metrics)
                  and (weights in (None, "auto") or m["extractor_id"].startswith(
                      "pretrained" if weights == "pretrained" else "random"))]
        if data_root is None and reference is None and stored:
            return RunResult(run.run_id, run.run_dir, run.spec, stored, reused=True)
        raise ArtshiftError(f"{store.path} is read-only and holds no such measurement of run {run.run_id}: "
                            f"`bench eval --run` must write the new one there",
                            hint="pass --home (or $ARTSHIFT_HOME) a copy of the home you can write")
    root = paths.data_root(data_root) if data_root else run.data_root
    domain = data.ensure_domain(run.artist, root, home, progress=progress)
    outputs = [run.output(rel) for _, rel in painting_sources(domain)]
    missing = [o for o in outputs if not o.exists()]
    if missing and not skip_bad:
        raise ArtshiftError(f"run {run.run_id} lacks {len(missing)} translation(s), e.g. {missing[0]}",
                            hint="run `bench run` for it again (it resumes), or pass --on-bad-image skip")
    own_data = data_root is None or data.split_fingerprint(domain) == run.spec.data_fingerprint
    photos = list(domain.photos_test) if ref_photos is None else ref_photos
    ref = data.fingerprint(photos) if not own_data or ref_photos is not None else ""
    own = own_data and (ref_photos is None or ref == data.fingerprint(domain.photos_test))
    t = time.perf_counter()
    rows, skipped = _measure([o for o in outputs if o.exists()], domain, home, extractors=extractors,
                             weights=weights or default_weights(run.profile), metrics=metrics, skip_bad=skip_bad,
                             progress=progress, device=device, side=run.spec.translate_side, reference=photos)
    timings = {"evaluate_s": time.perf_counter() - t}
    target = run.run_id
    if own:  # the run's own data and photos
        store.add_metrics(run.run_id, rows)
        _write_metrics_json(run.run_dir, store, run.run_id)
    else:  # other photos: the row keyed by their content hash, beside (never over) the run's own
        source = {"data_root": str(root)} if data_root is not None else {}
        if reference is not None:
            source["reference"] = str(Path(reference).resolve())
        target = store_reference_rows(store, home, run_id=run.run_id, method=run.method, profile=run.profile,
                                      artist=run.artist, run_dir=run.run_dir, ref=ref, source=source, rows=rows,
                                      timings=timings)
        log.info("%s are not run %s's own photos: measured as %s (the run's own rows are unchanged)",
                 reference or root, run.run_id, target)
    measured = {(r.metric, r.layer, r.extractor_id, r.resize_mode) for r in rows}
    shown = [m for m in store.metrics_for(target)
             if (m["metric"], m["layer"], m["extractor_id"], m["resize_mode"]) in measured]
    return RunResult(target, run.run_dir, run.spec, shown,
                     timings=timings, skipped=[str(p) for p in skipped + missing])


FROM_MANIFEST = "manifest"  # evaluate_folder's default translate side: what the folder's manifest says


def manifest_side(folder: Path) -> int | None:
    """The translate side (``benchmark.data.resolution``) at which the run behind a `bench translate`
    folder translated it; None (native) for a folder without a manifest."""
    info = read_translations_manifest(folder)
    if info is None:
        return None
    made = info.get("translate")
    if not isinstance(made, dict) or not (made.get("side") is None or isinstance(made.get("side"), int)):
        raise ArtshiftError(f"{Path(folder) / TRANSLATIONS_MANIFEST} does not say at which size run "
                            f"{info.get('run_id')} translated",
                            hint="pass --translate-side N (the run's translate side: 32 at ci, 64 at smoke) or "
                                 "--translate-side native")
    return made.get("side")


def evaluate_folder(images: Path, artist: str, name: str, *, data_root: Path | None = None,
                    home: Path | None = None, weights: str = "auto", with_: list[str] | None = None,
                    skip_bad: bool = False, progress: bool = True, device: str = "cpu",
                    store: Store | None = None, reference: Path | None = None,
                    translate_side: int | str | None = FROM_MANIFEST) -> RunResult:
    """``bench eval --images``: rank any folder of translations (e.g. from a method outside artshift).

    ``translate_side``: the side the translations were made at, which the photos get too (down and up,
    as in a run's own evaluation): ``FROM_MANIFEST`` reads it from a `bench translate` folder's
    manifest (native without one), None is native. It is part of the row's spec and of its label.
    ``reference``: a folder of photos instead of the artist's photo test set (its content hash is the
    row's data fingerprint, and in its label)."""
    home = paths.home(home)
    root = paths.data_root(data_root)
    data.check_artist(artist, root, home)
    store = store or Store(home / "results.sqlite")
    extractors, metrics = split_with(with_ or [], artist, home=home)
    images = Path(images)
    if translate_side is not None and translate_side != FROM_MANIFEST and (
            not isinstance(translate_side, int) or translate_side < 1):
        raise ArtshiftError(f"translate side {translate_side!r} is not a side in pixels",
                            hint="pass --translate-side a positive number of pixels (the shorter side the "
                                 "translations were made at), or native")
    ref_photos = reference_photos(reference, skip_bad=skip_bad) if reference is not None else None
    listed = data.list_images(images, what="the translated images to measure")
    check_translations_folder(images, listed)  # a `bench translate` folder: only its own, unchanged files
    side = manifest_side(images) if translate_side == FROM_MANIFEST else translate_side
    fakes, bad = data.readable_images(listed, "skip" if skip_bad else "error")
    if not fakes:
        raise ArtshiftError(f"none of the images in {images} can be read ({data.skipped_summary(bad)})")
    domain = data.ensure_domain(artist, root, home, progress=progress)
    fake_fp = data.fingerprint(fakes)
    own_fp = data.fingerprint(domain.photos_test)
    data_fp = own_fp if ref_photos is None else data.fingerprint(ref_photos)
    spec = RunSpec.make(name, artist, "external", 0, {"images": fake_fp}, data_fp, translate_side=side)
    notes = ([f"translated at {side} px"] if side is not None else []) + (
        [f"reference photos {data_fp[:12]}"] if data_fp != own_fp else [])
    label = f"{name} [{'; '.join(notes)}]" if notes else name  # never averaged with a row measured otherwise
    store.start_run(spec.run_id, kind="eval", method=label, artist=artist, profile="external", seed=None,
                    spec_json=spec.canonical_json(), run_dir=str(images.resolve()), data_fingerprint=data_fp)
    try:
        t = time.perf_counter()
        rows, skipped = _measure(fakes, domain, home, extractors=extractors, weights=weights, metrics=metrics,
                                 skip_bad=skip_bad, progress=progress, device=device, side=side,
                                 reference=ref_photos)
        timings = {"evaluate_s": time.perf_counter() - t}
        store.finish_run(spec.run_id, "done", timings, rows=rows)
    except BaseException as exc:
        _record_failure(store, spec.run_id, exc, {})
        raise
    record_evaluation(home, store, spec.run_id)
    return RunResult(spec.run_id, images, spec, store.metrics_for(spec.run_id), timings=timings,
                     skipped=[str(p) for p, _ in bad] + [str(p) for p in skipped])


__all__ = ["RunResult", "execute", "evaluate_folder", "evaluate_run", "translate_run", "MetricRow"]
