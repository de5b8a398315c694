"""Wall clock of one ci sweep on the local process pool: 2 workers x 1 torch thread against
1 worker x 2 threads (issue 10's target: the first >= 1.3x faster), caches warm.

Why: a ci cell is mostly small, serial work (image loading, tiny convolutions, a 10-40 image
Inception pass) that a second intra-op thread barely speeds up, so cells in parallel should
beat threads in parallel; this measures whether they do, pool start-up and imports included.
Caches (calibrated random-init extractor, reference statistics) are warmed once, untimed; each
timed sweep starts from an empty runs folder and store. Configurations alternate per repeat.

    .venv/bin/python benchmarks/sweep_overhead.py --data-root ../shared/data -n 2
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmark.analyses import sweep  # noqa: E402


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed_sweep(cells: list[sweep.Cell], home: Path, workers: int, threads: int) -> float:
    shutil.rmtree(home / "runs", ignore_errors=True)
    for f in home.glob("results.sqlite*"):
        f.unlink()
    pool = sweep.PoolExecutor(sweep.Options(workers=workers, threads=threads, device="cpu"))
    t = time.perf_counter()
    res = sweep.launch(cells, pool)
    elapsed = time.perf_counter() - t
    bad = [r for _, r in res.results if r["state"] != "done"]
    if bad or len(res.results) != len(cells):
        raise SystemExit(f"sweep did not finish every cell: {bad}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--methods", default="cyclegan")
    ap.add_argument("--artists", default="cezanne,vangogh")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("-n", type=int, default=2, help="repeats of each configuration")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="artshift-sweep-overhead-"))
    try:
        cells = sweep.plan(args.methods.split(","), args.artists.split(","), [int(s) for s in args.seeds.split(",")],
                           profile="ci", data_root=args.data_root, home=home)
        print(f"{len(cells)} cells: " + ", ".join(c.label for c in cells))
        t = time.perf_counter()
        warm = sweep.plan(["original"], args.artists.split(","), [0], profile="ci", data_root=args.data_root,
                          home=home)
        sweep.launch(warm, sweep.PoolExecutor(sweep.Options(workers=1, threads=2, device="cpu")))
        print(f"warm-up (caches; not timed): {time.perf_counter() - t:.1f}s")

        configs = {"2 workers x 1 thread": (2, 1), "1 worker x 2 threads": (1, 2)}
        times: dict[str, list[float]] = {k: [] for k in configs}
        for i in range(args.n):
            order = list(configs) if i % 2 == 0 else list(reversed(configs))
            for name in order:
                load = os.getloadavg()[0]
                times[name].append(timed_sweep(cells, home, *configs[name]))
                print(f"  repeat {i + 1}: {name}: {times[name][-1]:.1f}s (load average before: {load:.2f})")
        import torch

        print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, {platform.platform()}, python "
              f"{platform.python_version()}, torch {torch.__version__}; load average now "
              f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for name, ts in times.items():
            print(f"{name}: median {statistics.median(ts):.1f}s over n={len(ts)} ({', '.join(f'{x:.1f}' for x in ts)})")
        a, b = (statistics.median(times[k]) for k in configs)
        print(f"speed-up of 2 workers x 1 thread over 1 worker x 2 threads: {b / a:.2f}x (target >= 1.3x)")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
