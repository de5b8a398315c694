"""Training iteration time of CUT / FastCUT with the reference's anti-aliased networks vs the
plain ones (and CycleGAN beside them) at one profile's network sizes.

Why: the anti-aliased networks run the down/up convolutions at full resolution and the
PatchGAN at stride 1, so they cost more; the smoke profile must still fit its 10 minutes.
Why interleaved and best-of: the variants alternate within one process, so load changes on a
shared machine hit them alike, and the minimum over repeats is the least disturbed figure.
Synthetic crops (uniform noise): iteration time does not depend on image content.

    .venv/bin/python benchmarks/cut_antialias.py --profile smoke --repeats 12 --threads 1
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from baselines.cut import CUT, FastCUT  # noqa: E402
from baselines.cyclegan import CycleGAN  # noqa: E402
from benchmark.core.profiles import apply_overrides  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--repeats", type=int, default=12, help="rounds over all variants")
    ap.add_argument("--steps", type=int, default=3, help="iterations per variant per round")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    methods = {}
    for cls in (CUT, FastCUT):
        for antialias in ("false", "true"):
            config = apply_overrides(cls.default_config(args.profile), {"antialias": antialias})
            methods[f"{cls.name} antialias={antialias}"] = cls(config, "cpu")
    methods["cyclegan"] = CycleGAN(CycleGAN.default_config(args.profile), "cpu")
    size = methods["cyclegan"].config.crop_size
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(1, 3, size, size, generator=gen) * 2 - 1
    b = torch.rand(1, 3, size, size, generator=gen) * 2 - 1

    times: dict[str, list[float]] = {name: [] for name in methods}
    for method in methods.values():  # warm-up
        method.train_step({"A": a, "B": b, "flip": False}, 0)
    for _ in range(args.repeats):
        for name, method in methods.items():
            t = time.perf_counter()
            for i in range(args.steps):
                method.train_step({"A": a, "B": b, "flip": i % 2 == 1}, 0)
            times[name].append((time.perf_counter() - t) / args.steps)

    print(f"profile {args.profile}, {size} px crops, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{platform.processor() or platform.machine()}")
    print(f"{'variant':28s} {'best ms':>8s} {'median ms':>10s}")
    for name, values in times.items():
        print(f"{name:28s} {min(values) * 1e3:8.1f} {statistics.median(values) * 1e3:10.1f}")
    for cls in ("cut", "fastcut"):
        best = {aa: min(times[f"{cls} antialias={aa}"]) for aa in ("false", "true")}
        print(f"{cls}: anti-aliased / plain = {best['true'] / best['false']:.2f}x (best times)")


if __name__ == "__main__":
    main()
