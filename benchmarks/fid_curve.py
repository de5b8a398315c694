"""Real FID of a GAN method's translations as training goes on: the curves a CPU profile is chosen
from (issue 24 §2) and the training-length question of issue 23 §3.

Why a script and not N `bench run`s: one training run evaluated every ``--eval-every`` iterations
gives the whole curve for the price of its longest point. Each point translates the artist's test
paintings at the translate side exactly as `bench run` does (``translate_all``) and measures them
against the test photos resized down and up to the same side (``_measure``'s reference copies),
with the real FID Inception; `original` at the same side (and at the native size) is measured
once as the horizontal lines. Each point records its iteration and the summed ``train_step``
time (evaluation excluded). The figure's x axis is iterations, which no machine load changes;
minutes follow from an idle per-iteration time (benchmarks/cyclegan_iter.py), since the summed
time of a run that shared its cores with other jobs is not what an idle machine would take.

The schedule is the profile's, stretched: ``--iterations N`` sets n_epochs = n_epochs_decay =
N / (2 * epoch_size), so the learning rate is constant for the first half and decays linearly (the
reference rule, per epoch) over the second. Points before N/2 are mid-training snapshots at the full
learning rate; the last point is a finished run of that length.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fid_curve.py --method cyclegan --artist monet \\
        --iterations 8000 --eval-every 1000 --threads 1 --out curves/cyclegan-monet-64.jsonl
    .venv/bin/python benchmarks/fid_curve.py --plot curves/*.jsonl --figure docs/img/fid_curves.png
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmark.core import paths, registry  # noqa: E402
from benchmark.core.method import RunContext, TrainData  # noqa: E402
from benchmark.core.profiles import apply_overrides, parse_overrides  # noqa: E402
from benchmark.data import ensure_domain, resolution  # noqa: E402
from benchmark.features.extractor import calibration_photos  # noqa: E402
from benchmark.pipeline.evaluate import evaluate_paths, make_extractor  # noqa: E402
from benchmark.pipeline.runner import painting_sources, translate_all  # noqa: E402
from benchmark.pipeline.training import iteration_seed, seed_everything  # noqa: E402

KEEP = ("FID-2048", "FID-768", "FID-192", "FID-64", "KID-2048")


def measure(outputs, photos, extractor, cache: Path) -> dict[str, dict[str, float]]:
    ev = evaluate_paths(outputs, photos, extractor, cache, progress=False, metrics=["fid", "kid"])
    out = {}
    for r in ev.rows:
        name = r.display_name.split("[")[0]
        if name in KEEP:
            out[name] = {"value": r.value, "low": r.low, "high": r.high, "n_fake": r.n_fake, "n_real": r.n_real}
    return out


def mean_change(outputs, originals) -> float:
    """Mean absolute difference from the untouched paintings at the same side, in 0-255 levels:
    how much a translation changed them at all (a residual generator starts at 0)."""
    import numpy as np
    from PIL import Image

    diffs = [np.abs(np.asarray(Image.open(a).convert("RGB"), dtype=np.float64)
                    - np.asarray(Image.open(b).convert("RGB"), dtype=np.float64)).mean()
             for a, b in zip(outputs, originals, strict=True)]
    return float(np.mean(diffs))


def curve(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    home = paths.home(args.home)
    domain = ensure_domain(args.artist, Path(args.data_root), home, progress=False)
    cls = registry.methods.get(args.method)
    overrides = parse_overrides(args.overrides)
    config = apply_overrides(cls.default_config(args.profile), overrides)
    epoch = config.epoch_size
    if epoch is None or args.iterations % (2 * epoch):
        sys.exit(f"error: --iterations must be a multiple of 2 x epoch_size ({epoch}); set epoch_size with --set")
    config = apply_overrides(config, {"n_epochs": str(args.iterations // (2 * epoch)),
                                      "n_epochs_decay": str(args.iterations // (2 * epoch))})
    side = args.side if args.side is not None else resolution.side_for(args.profile)
    extractor = make_extractor("pretrained", calibration_photos(domain), home, name="inception")
    photos = resolution.reference_copies(domain.photos_test, side, home / "cache" / "resized")
    stats_cache = home / "cache" / "stats"
    sources = painting_sources(domain)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = {"kind": "header", "method": args.method, "artist": args.artist, "profile": args.profile,
              "overrides": overrides, "iterations": args.iterations, "side": side, "seed": args.seed,
              "config": {k: v for k, v in vars(config).items() if not k.isupper()},
              "machine": f"{platform.machine()} {os.cpu_count()} CPUs", "threads": torch.get_num_threads(),
              "torch": torch.__version__, "extractor": extractor.id, "n_test_paintings": len(sources),
              "n_test_photos": len(domain.photos_test), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    original = registry.methods.get("original")(registry.methods.get("original").default_config(args.profile), "cpu")
    with open(out, "w") as fh, tempfile.TemporaryDirectory() as tmp:
        fh.write(json.dumps(header, default=str) + "\n")
        originals = []
        for label, s in (("original", side), ("original-native", None)):
            outs = translate_all(original, sources, Path(tmp) / label, args.seed, False, False, side=s)
            if s == side:
                originals = outs
            ref = photos if s == side else list(domain.photos_test)
            fh.write(json.dumps({"kind": label, "side": s, "metrics": measure(outs, ref, extractor, stats_cache)}) + "\n")
            fh.flush()
        run = RunContext(run_dir=Path(tmp) / "run", home=home, seed=args.seed, device=torch.device("cpu"),
                         progress=False, log=logging.getLogger("fid-curve"))
        data = TrainData(args.artist, list(domain.paintings_train), list(domain.photos_train))
        seed_everything(args.seed)
        method = cls(config, "cpu")
        method.setup(data, run)
        method.prepare(data, run)
        assert method.total_iterations() == args.iterations, (method.total_iterations(), args.iterations)
        train_s = 0.0
        for it in range(args.iterations):
            seed_everything(iteration_seed(args.seed, it))
            t0 = time.perf_counter()
            losses = method.train_step(method.batch(args.seed, it), it)
            train_s += time.perf_counter() - t0
            done = it + 1
            if done % args.eval_every == 0 or done == args.iterations:
                t0 = time.perf_counter()
                folder = Path(tmp) / "translated"
                shutil.rmtree(folder, ignore_errors=True)
                outs = translate_all(method, sources, folder, args.seed, False, False, side=side)
                metrics = measure(outs, photos, extractor, stats_cache)
                row = {"kind": "point", "iteration": done, "train_s": round(train_s, 2),
                       "eval_s": round(time.perf_counter() - t0, 2), "load": os.getloadavg()[0],
                       "mean_abs_change": round(mean_change(outs, originals), 3),
                       "losses": {k: float(v) for k, v in losses.items()}, "metrics": metrics}
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                print(f"{args.method} it {done}: train {train_s:.0f} s, FID-2048 {metrics['FID-2048']['value']:.1f}, "
                      f"mean change {row['mean_abs_change']:.2f} levels", flush=True)


def plot(files: list[Path], figure: Path) -> None:
    import matplotlib.pyplot as plt

    runs = []
    for f in files:
        lines = [json.loads(x) for x in Path(f).read_text().splitlines() if x.strip()]
        runs.append(({x["kind"]: x for x in lines if x["kind"] != "point"}, [x for x in lines if x["kind"] == "point"]))
    print("| run | iteration | train s (this load) | FID-2048 | FID-768 | FID-192 | KID-2048 |")
    print("|---|---|---|---|---|---|---|")

    def run_label(h):
        return (f"{h['method']} {h['profile']} {h['side']} px"
                + (" " + ",".join(f"{k}={v}" for k, v in h["overrides"].items()) if h["overrides"] else "")
                + (f" seed {h['seed']}" if h.get("seed") else ""))

    sides = {}  # the originals once per translate side (every run at a side measures the same ones)
    for header, _ in runs:
        sides.setdefault(header["header"]["side"], header)
    for first in sides.values():
        for label in ("original", "original-native"):
            m = first[label]["metrics"]
            print(f"| {label} ({first[label]['side'] or 'native'} px) | - | - | {m['FID-2048']['value']:.1f} | "
                  f"{m['FID-768']['value']:.2f} | {m['FID-192']['value']:.1f} | {m['KID-2048']['value']:.3f} |")
    for head, points in runs:
        h = head["header"]
        for p in points:
            m = p["metrics"]
            print(f"| {run_label(h)} | {p['iteration']} | {p['train_s']:.0f} | {m['FID-2048']['value']:.1f} | "
                  f"{m['FID-768']['value']:.2f} | {m['FID-192']['value']:.1f} | {m['KID-2048']['value']:.3f} |")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = set()
    for head, points in runs:
        h = head["header"]
        label = run_label(h)
        xs = [p["iteration"] for p in points]
        ax.plot(xs, [p["metrics"]["FID-2048"]["value"] for p in points], marker="o", label=label)
        key = (h["artist"], h["side"])
        if key not in drawn:
            drawn.add(key)
            ax.axhline(head["original"]["metrics"]["FID-2048"]["value"], ls="--", color="gray",
                       label=f"original {h['artist']}, {h['side']} px (no translation)")
    ax.set_xlabel("training iterations (batch 1; the learning rate decays linearly over the second half)")
    ax.set_ylabel("FID-2048 to the test photos (real FID Inception)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=120)
    print(f"wrote {figure}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="cyclegan")
    ap.add_argument("--artist", default="monet")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--side", type=int, default=None, help="translate side (default: the profile's)")
    ap.add_argument("--iterations", type=int, default=8000)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data-root", default=os.environ.get("ARTSHIFT_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--home", default=None, help="ARTSHIFT_HOME for caches (default: $ARTSHIFT_HOME)")
    ap.add_argument("--out", default=None, help="JSONL file of the curve")
    ap.add_argument("--plot", nargs="+", type=Path, default=None, help="plot these JSONL files instead of training")
    ap.add_argument("--figure", type=Path, default=REPO / "docs" / "img" / "fid_curves.png")
    args = ap.parse_args()
    if args.plot:
        plot(args.plot, args.figure)
    elif not args.out:
        ap.error("--out is required to record a curve")
    else:
        curve(args)


if __name__ == "__main__":
    main()
