"""One benchmark run: fit -> translate every test painting -> evaluate -> record.

Resumable at every stage: training resumes from its last checkpoint, translation skips
paintings whose output already exists, and a finished run (``DONE`` marker + a 'done' row in
the store) is returned from the store instead of being recomputed unless ``force`` is set.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmark import data, paths, registry
from benchmark.errors import ArtshiftError
from benchmark.evaluate import evaluate_paths, make_extractor
from benchmark.method import RunContext, TrainData
from benchmark.profiles import apply_overrides, check_profile
from benchmark.spec import RunSpec
from benchmark.store import MetricRow, Store
from benchmark.training import seed_everything

log = logging.getLogger("artshift.run")

CALIBRATION_PHOTOS = 200  # photos/train files (sorted, first N) that calibrate random-init extractors


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    spec: RunSpec
    metrics: list[dict[str, Any]]
    reused: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def default_weights(profile: str) -> str:
    """ci/smoke fall back to random-init features when no pretrained file can be had; others insist."""
    return "auto" if profile in ("ci", "smoke") else "pretrained"


def to_tensor(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)


def to_image(t: torch.Tensor) -> Image.Image:
    arr = ((t.detach().clamp(-1, 1).float().cpu()[0].permute(1, 2, 0).numpy() + 1.0) * 127.5).round()
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def save_png_atomic(img: Image.Image, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    img.save(tmp, format="PNG")
    tmp.replace(path)


def translate_all(method: Any, paintings: tuple[Path, ...], out_dir: Path, seed: int, skip_bad: bool,
                  progress: bool = True) -> list[Path]:
    """Translate each painting at its own resolution into ``out_dir/<stem>.png`` (existing ones kept)."""
    from tqdm.auto import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    outputs, skipped = [], []
    for i, src in enumerate(tqdm(paintings, desc=f"translate {method.name}", disable=not progress, leave=False)):
        dst = out_dir / f"{src.stem}.png"
        if not dst.exists():
            try:
                img = data.load_image(src)
            except data.BadImageError:
                if not skip_bad:
                    raise
                skipped.append(src)
                continue
            seed_everything(seed * 100_003 + i)
            out = method.translate(to_tensor(img).to(method.device))  # methods pick their own autograd mode
            if out.shape != (1, 3, img.height, img.width):
                raise RuntimeError(f"{method.name}.translate returned shape {tuple(out.shape)} for a "
                                   f"{img.width}x{img.height} image")
            if not torch.isfinite(out).all():
                raise ArtshiftError(f"{method.name} produced non-finite pixels for {src}",
                                    hint="the model diverged: re-run with --force, another seed or a lower lr")
            save_png_atomic(to_image(out), dst)
        outputs.append(dst)
    if skipped:
        log.warning("skipped %d bad test paintings: %s", len(skipped), ", ".join(map(str, skipped)))
    return outputs


def run_dir_for(home: Path, spec: RunSpec) -> Path:
    return home / "runs" / spec.method / spec.artist / spec.run_id


def execute(method: str, artist: str, *, profile: str = "smoke", seed: int = 0,
            overrides: dict[str, str] | None = None, data_root: Path | None = None, home: Path | None = None,
            force: bool = False, weights: str | None = None, deterministic: bool = False,
            skip_bad: bool = False, progress: bool = True, device: str = "cpu",
            store: Store | None = None) -> RunResult:
    """``bench run``: the whole pipeline for one spec, resumable; returns what was recorded."""
    overrides = dict(overrides or {})
    registry.methods.entry(method)  # did-you-mean before any expensive work
    check_profile(profile)
    data.check_artist(artist)
    home = paths.home(home)
    root = paths.data_root(data_root)
    store = store or Store(home / "results.sqlite")
    cls = registry.methods.get(method)
    config = apply_overrides(cls.default_config(profile), overrides)

    domain = data.ensure_domain(artist, root, home, progress=progress)  # fetched (verified) when missing + online
    data_fp = data.fingerprint(domain.paintings_train + domain.paintings_test + domain.photos_train
                               + domain.photos_test)
    spec = RunSpec.make(method, artist, profile, seed, overrides, data_fp)
    run_dir = run_dir_for(home, spec)
    done_marker = run_dir / "DONE"
    stored = store.run(spec.run_id)
    if not force and done_marker.exists() and stored and stored["status"] == "done":
        return RunResult(spec.run_id, run_dir, spec, store.metrics_for(spec.run_id), reused=True,
                         timings=json.loads(stored["timings_json"] or "{}"))
    if force and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.json").write_text(json.dumps(
        {"spec": json.loads(spec.canonical_json()), "run_id": spec.run_id,
         "config": dataclasses.asdict(config), "data_root": str(root), "layout": domain.layout}, indent=2))
    store.start_run(spec.run_id, kind="run", method=method, artist=artist, profile=profile, seed=seed,
                    spec_json=spec.canonical_json(), run_dir=str(run_dir), data_fingerprint=data_fp)
    file_log = logging.FileHandler(run_dir / "log.txt")
    file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("artshift").addHandler(file_log)
    timings: dict[str, float] = {}
    try:
        ctx = RunContext(run_dir=run_dir, home=home, seed=seed, deterministic=deterministic,
                         device=torch.device(device), progress=progress)
        seed_everything(seed)
        model = cls(config, device)
        t = time.perf_counter()
        model.fit(TrainData(artist, list(domain.paintings_train), list(domain.photos_train), skip_bad), ctx)
        timings["fit_s"] = time.perf_counter() - t

        t = time.perf_counter()
        outputs = translate_all(model, domain.paintings_test, run_dir / "translated", seed, skip_bad, progress)
        timings["translate_s"] = time.perf_counter() - t

        t = time.perf_counter()
        extractor = make_extractor(weights or default_weights(profile),
                                   domain.photos_train[:CALIBRATION_PHOTOS], home, device=device)
        ev = evaluate_paths(outputs, domain.photos_test, extractor, home / "cache" / "stats",
                            skip_bad=skip_bad, progress=progress)
        timings["evaluate_s"] = time.perf_counter() - t

        store.add_metrics(spec.run_id, ev.rows)
        (run_dir / "metrics.json").write_text(json.dumps([dataclasses.asdict(r) for r in ev.rows], indent=2))
        # a method's own network weights (Gatys' VGG-19) label the row when not the standard ones
        store.finish_run(spec.run_id, "done", timings, method_weights=getattr(model, "weights_id", None))
        done_marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
    except BaseException as exc:
        store.finish_run(spec.run_id, "failed", timings, error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        logging.getLogger("artshift").removeHandler(file_log)
        file_log.close()
    return RunResult(spec.run_id, run_dir, spec, store.metrics_for(spec.run_id), timings=timings,
                     skipped=[str(p) for p in ev.skipped])


def evaluate_folder(images: Path, artist: str, name: str, *, data_root: Path | None = None,
                    home: Path | None = None, weights: str = "auto", skip_bad: bool = False,
                    progress: bool = True, device: str = "cpu", store: Store | None = None) -> RunResult:
    """``bench eval``: rank any folder of translations (e.g. from a method outside artshift)."""
    data.check_artist(artist)
    home = paths.home(home)
    root = paths.data_root(data_root)
    store = store or Store(home / "results.sqlite")
    images = Path(images)
    fakes = data.list_images(images)
    domain = data.ensure_domain(artist, root, home, progress=progress)
    fake_fp = data.fingerprint(fakes)
    data_fp = data.fingerprint(domain.photos_test)
    spec = RunSpec.make(name, artist, "external", 0, {"images": fake_fp}, data_fp)
    store.start_run(spec.run_id, kind="eval", method=name, artist=artist, profile="external", seed=None,
                    spec_json=spec.canonical_json(), run_dir=str(images.resolve()), data_fingerprint=data_fp)
    try:
        t = time.perf_counter()
        extractor = make_extractor(weights, domain.photos_train[:CALIBRATION_PHOTOS], home, device=device)
        ev = evaluate_paths(fakes, domain.photos_test, extractor, home / "cache" / "stats", skip_bad=skip_bad,
                            progress=progress)
        timings = {"evaluate_s": time.perf_counter() - t}
        store.add_metrics(spec.run_id, ev.rows)
        store.finish_run(spec.run_id, "done", timings)
    except BaseException as exc:
        store.finish_run(spec.run_id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    return RunResult(spec.run_id, images, spec, store.metrics_for(spec.run_id), timings=timings,
                     skipped=[str(p) for p in ev.skipped])


__all__ = ["RunResult", "execute", "evaluate_folder", "MetricRow"]
