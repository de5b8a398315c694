"""Per-iteration time and early losses of the GAN methods at each precision setting (issue 11).

Why: the fastest setting may become a profile default only where the losses over the first 50
iterations stay within 2% of fp32 and a 3-seed smoke FID stays within one seed SD (the FID part
is not measured here). For each method the settings are built side by side in one process and
their iterations alternate (fp32, bf16, bf16+cl, fp32+cl, then the next iteration in a rotated
order), so a change in machine load hits every setting alike. Every setting starts from the same
seed, so the same initial weights and batches: the timed iterations are the ones whose losses are
compared. Two references give the 2% a scale: fp32+cl (channels_last: a reordering of float32
sums, the least any numerical change does) and fp32 with seed 1 (another seed; only its losses
are compared).

Loss deviation: per loss term, the mean over the first ``--loss-window`` iterations; a setting's
deviation is |mean - fp32 mean| / |fp32 mean|, reported as the largest over the terms (and which)
and for the sum of the terms.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/mixed_precision.py --methods cyclegan,cut,ours -n 50
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/mixed_precision.py --profile paper --methods cyclegan,cut \\
        --networks-only -n 4 --warmup 1    # 256 px crops, paper-size networks: one G + D pass per setting
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmark.core.method import RunContext, TrainData  # noqa: E402
from benchmark.core.profiles import apply_overrides, parse_overrides  # noqa: E402
from benchmark.core.registry import methods  # noqa: E402
from benchmark.data import resolve_domain  # noqa: E402
from benchmark.pipeline.training import iteration_seed, seed_everything  # noqa: E402

SETTINGS = {"fp32": ("fp32", False), "bf16": ("bf16", False), "bf16+cl": ("bf16", True),
            "fp32+cl": ("fp32", True), "fp16": ("fp16", False), "fp16+cl": ("fp16", True)}
SEED_REF = "fp32 seed 1"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine_line() -> str:
    """What a timing depends on: CPU, torch, threads, and the load when it started."""
    return (f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
            f"torch={torch.__version__} threads={torch.get_num_threads()} "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')} load={loadavg()}")


def build(name: str, profile: str, sets: dict[str, str], setting: str, seed: int, data: TrainData,
          tmp: Path, home: Path, shared: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[Any, RunContext]:
    """One method at one setting, set up and prepared; images are loaded once and shared."""
    precision, cl = SETTINGS["fp32" if setting == SEED_REF else setting]
    cls = methods.get(name)
    config = apply_overrides(cls.default_config(profile), {**sets, "precision": precision,
                                                             "channels_last": str(cl).lower()})
    run = RunContext(run_dir=tmp / f"{name}-{setting}".replace(" ", "_"), home=home, seed=seed, progress=False,
                     log=logging.getLogger("bench-precision"))
    method = cls(config, "cpu")
    method.setup(data, run)
    if shared is None:
        method.prepare(data, run)
    else:
        method.paintings, method.photos = shared
        method.prepare_extra(data, run)
    return method, run


def deviation(losses: list[dict[str, float]], ref: list[dict[str, float]], window: int) -> dict[str, Any]:
    """Largest relative deviation of a term's mean over the window, and that of the summed terms."""
    n = min(window, len(losses), len(ref))
    terms = list(ref[0])
    mean = {k: statistics.fmean(step[k] for step in losses[:n]) for k in terms}
    base = {k: statistics.fmean(step[k] for step in ref[:n]) for k in terms}
    rel = {k: abs(mean[k] - base[k]) / abs(base[k]) if base[k] else float("inf") for k in terms}
    worst = max(rel, key=lambda k: rel[k])
    total = abs(sum(mean.values()) - sum(base.values())) / abs(sum(base.values()))
    return {"iterations": n, "max_term": worst, "max_rel": rel[worst], "total_rel": total, "per_term": rel}


def measure(name: str, args: argparse.Namespace, data: TrainData, tmp: Path, home: Path) -> dict[str, Any]:
    sets = parse_overrides(args.overrides)
    keys = list(args.settings) + ([SEED_REF] if args.seed_reference else [])
    runs: dict[str, tuple[Any, RunContext]] = {}
    shared = None
    t0 = time.perf_counter()
    for key in keys:
        runs[key] = build(name, args.profile, sets, key, 1 if key == SEED_REF else 0, data, tmp, home, shared)
        shared = (runs[key][0].paintings, runs[key][0].photos)
    prep = time.perf_counter() - t0
    times: dict[str, list[float]] = {k: [] for k in keys}
    losses: dict[str, list[dict[str, float]]] = {k: [] for k in keys}
    load_before = loadavg()
    for it in range(args.iterations):
        order = keys[it % len(keys):] + keys[:it % len(keys)]  # rotated: no setting always runs first
        for key in order:
            method, run = runs[key]
            seed_everything(iteration_seed(run.seed, it))
            t = time.perf_counter()
            step = method.train_step(method.batch(run.seed, it), it)
            dt = time.perf_counter() - t
            if it >= args.warmup:
                times[key].append(dt)
            losses[key].append({k: float(v) for k, v in step.items()})
    config = runs[keys[0]][0].config
    out: dict[str, Any] = {
        "method": name, "profile": args.profile, "crop": config.crop_size, "ngf": config.ngf,
        "n_blocks": config.n_blocks, "ndf": config.ndf, "prepare_s": round(prep, 1),
        "load_before": load_before, "load_after": loadavg(), "settings": {}}
    fp32 = losses["fp32"] if "fp32" in losses else None
    for key in keys:
        row: dict[str, Any] = {"n": len(times[key])}
        if times[key]:
            row.update(median_ms=statistics.median(times[key]) * 1000, min_ms=min(times[key]) * 1000,
                       max_ms=max(times[key]) * 1000)
        if fp32 is not None and key != "fp32":
            row["loss"] = deviation(losses[key], fp32, args.loss_window)
        row["losses"] = losses[key]
        out["settings"][key] = row
    if "fp32" in out["settings"] and out["settings"]["fp32"]["n"]:
        base = out["settings"]["fp32"]["median_ms"]
        for row in out["settings"].values():
            if row["n"]:
                row["speedup"] = base / row["median_ms"]
    return out


def measure_networks(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """``--networks-only``: one generator pass (G forward, D on its output, L1 + LSGAN, backward)
    on a random crop-size image per setting, alternating; no data, no optimiser step. A proxy
    for the paper profile, whose full iteration (six generator passes and four discriminator
    passes at 256 px) takes minutes on a CPU."""
    from baselines.networks import lsgan_loss

    sets = parse_overrides(args.overrides)
    keys = list(args.settings)
    built = {}
    for key in keys:
        precision, cl = SETTINGS[key]
        cls = methods.get(name)
        config = apply_overrides(cls.default_config(args.profile), {**sets, "precision": precision,
                                                                     "channels_last": str(cl).lower()})
        method = cls(config, "cpu")
        nets = method.networks()
        built[key] = (method, nets["G_A" if "G_A" in nets else "G"], nets["D_A" if "D_A" in nets else "D"])
    crop = built[keys[0]][0].config.crop_size
    image = torch.rand(1, 3, crop, crop, generator=torch.Generator().manual_seed(0)) * 2 - 1
    times: dict[str, list[float]] = {k: [] for k in keys}
    load_before = loadavg()
    for it in range(args.iterations):
        for key in keys[it % len(keys):] + keys[:it % len(keys)]:
            method, g, d = built[key]
            g.zero_grad(set_to_none=True)
            d.zero_grad(set_to_none=True)
            t = time.perf_counter()
            fake = method.net(g, image)
            loss = lsgan_loss(method.net(d, fake), True) + torch.nn.functional.l1_loss(fake, image)
            method.backward(loss)
            dt = time.perf_counter() - t
            if it >= args.warmup:
                times[key].append(dt)
    config = built[keys[0]][0].config
    out: dict[str, Any] = {"method": name + " (G+D pass)", "unit": "pass", "profile": args.profile, "crop": crop, "ngf": config.ngf,
                           "n_blocks": config.n_blocks, "ndf": config.ndf, "load_before": load_before,
                           "load_after": loadavg(), "settings": {}}
    for key in keys:
        ts = times[key]
        out["settings"][key] = {"n": len(ts), "median_ms": statistics.median(ts) * 1000, "min_ms": min(ts) * 1000,
                                "max_ms": max(ts) * 1000}
    base = out["settings"]["fp32"]["median_ms"]
    for row in out["settings"].values():
        row["speedup"] = base / row["median_ms"]
    return out


def table(result: dict[str, Any]) -> str:
    lines = [f"### {result['method']} ({result['profile']}: {result['crop']} px crops, ngf {result['ngf']}, "
             f"{result['n_blocks']} blocks, ndf {result['ndf']}; load {result['load_before']} -> "
             f"{result['load_after']})",
             f"| setting | median ms / {result.get('unit', 'iteration')} (min-max, n) | fp32 time / this | "
             "largest term deviation (term) | summed-loss deviation |", "|---|---|---|---|---|"]
    compared = any("loss" in row for row in result["settings"].values())
    for key, row in result["settings"].items():
        timing = (f"{row['median_ms']:.0f} ({row['min_ms']:.0f}-{row['max_ms']:.0f}, n={row['n']})"
                  if row["n"] else "-")
        speed = f"{row['speedup']:.2f}x" if "speedup" in row else "-"
        if "loss" in row:
            d = row["loss"]
            dev = f"{100 * d['max_rel']:.2f}% ({d['max_term']})"
            total = f"{100 * d['total_rel']:.2f}% over {d['iterations']} it."
        else:
            dev = total = "reference" if key == "fp32" and compared else "-"
        lines.append(f"| {key} | {timing} | {speed} | {dev} | {total} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="cyclegan,cut,ours")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--artist", default="cezanne")
    ap.add_argument("--data-root", default=os.environ.get("ARTSHIFT_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--settings", default="fp32,bf16,bf16+cl,fp32+cl",
                    help=f"comma-separated, from {', '.join(SETTINGS)} (fp32 first: the reference)")
    ap.add_argument("-n", "--iterations", type=int, default=50, help="iterations per setting (timed and compared)")
    ap.add_argument("--warmup", type=int, default=3, help="first iterations left out of the timing")
    ap.add_argument("--loss-window", type=int, default=50)
    ap.add_argument("--no-seed-reference", dest="seed_reference", action="store_false",
                    help="skip the fp32 seed-1 run (its losses give the seed-to-seed scale)")
    ap.add_argument("--max-photos", type=int, default=None, help="use the first N training photos (load time)")
    ap.add_argument("--networks-only", action="store_true",
                    help="time one generator + discriminator pass per setting instead of training iterations "
                         "(no data, no losses compared): the paper profile's proxy")
    ap.add_argument("--home", default=None, help="ARTSHIFT_HOME for ours' bank cache (default: a temp dir)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", default=None, help="write every number (and per-iteration losses) here")
    args = ap.parse_args()
    args.settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in args.settings if s not in SETTINGS]
    if unknown or not args.settings or args.settings[0] != "fp32":
        ap.error(f"--settings must start with fp32 and use {', '.join(SETTINGS)} (got {args.settings})")
    if args.threads:
        torch.set_num_threads(args.threads)

    domain = resolve_domain(args.artist, Path(args.data_root))
    photos = list(domain.photos_train)[:args.max_photos] if args.max_photos else list(domain.photos_train)
    data = TrainData(args.artist, list(domain.paintings_train), photos)
    print(machine_line())
    print(f"data: {args.artist}, {len(data.paintings)} paintings, {len(data.photos)} photos; "
          f"settings {', '.join(args.settings)}; {args.iterations} iterations each ({args.warmup} untimed)")
    results = []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(args.home) if args.home else Path(tmp) / "home"
        for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
            result = (measure_networks(name, args) if args.networks_only
                      else measure(name, args, data, Path(tmp), home))
            results.append(result)
            print()
            print(table(result), flush=True)
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s, load at the end {loadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
