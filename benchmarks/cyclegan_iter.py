"""Time one training iteration (batch + train_step) of a GAN method: median ms over N iterations.

Why: the smoke profile is sized from this number, and "ours" is judged by its overhead over
plain CycleGAN at the same settings. Works for any registered ``IterativeMethod``; the data
are the real training images of one artist (loaded once, not timed).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/cyclegan_iter.py --method cyclegan --profile smoke -n 50
    .venv/bin/python benchmarks/cyclegan_iter.py --method ours --profile smoke --set n_blocks=6

On a shared, busy machine set OMP_WAIT_POLICY=PASSIVE (or --threads 1): with other processes
on the same 2 cores, OpenMP's spinning threads made a 2-thread iteration ~6x slower (2.3 s
instead of 0.37 s, load average ~6).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmark.core.method import RunContext, TrainData  # noqa: E402
from benchmark.core.profiles import apply_overrides, parse_overrides  # noqa: E402
from benchmark.core.registry import methods  # noqa: E402
from benchmark.data import resolve_domain  # noqa: E402
from benchmark.pipeline.training import iteration_seed, seed_everything  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="cyclegan")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--artist", default="cezanne")
    ap.add_argument("--data-root", default=os.environ.get("ARTSHIFT_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("-n", "--iterations", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cls = methods.get(args.method)
    config = apply_overrides(cls.default_config(args.profile), parse_overrides(args.overrides))
    domain = resolve_domain(args.artist, Path(args.data_root))
    data = TrainData(args.artist, list(domain.paintings_train), list(domain.photos_train))
    with tempfile.TemporaryDirectory() as tmp:
        run = RunContext(run_dir=Path(tmp) / "run", home=Path(tmp), seed=0, device=torch.device(args.device),
                         progress=False, log=logging.getLogger("bench-iter"))
        method = cls(config, args.device)
        method.setup(data, run)
        t0 = time.perf_counter()
        method.prepare(data, run)
        prep = time.perf_counter() - t0
        times = []
        for it in range(args.warmup + args.iterations):
            seed_everything(iteration_seed(run.seed, it))
            t0 = time.perf_counter()
            method.train_step(method.batch(run.seed, it), it)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            if it >= args.warmup:
                times.append(time.perf_counter() - t0)
    med = statistics.median(times) * 1000
    total = method.total_iterations()
    print(f"method={args.method} profile={args.profile} artist={args.artist} "
          f"paintings={len(data.paintings)} photos={len(data.photos)}")
    print("settings: " + " ".join(f"{k}={v}" for k, v in vars(config).items()))
    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
          f"torch={torch.__version__} threads={torch.get_num_threads()} device={args.device}")
    print(f"prepare (image loading etc.): {prep:.1f} s")
    print(f"iteration: median {med:.1f} ms, min {min(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms "
          f"over {len(times)} iterations (after {args.warmup} warm-up)")
    print(f"profile total: {total} iterations -> about {total * med / 1000 / 60:.1f} min of training")


if __name__ == "__main__":
    main()
