"""Two training jobs on one machine: per-iteration speed solo and side by side, per thread count
and OpenMP wait policy (issue 25 §7: a 2-thread smoke run beside another job fell >50x).

Each configuration starts ``benchmarks/cyclegan_iter.py`` once (solo) or twice at the same time
(pair) and reads its median iteration time; the load average before and after each is printed,
because on a shared machine the other users' jobs are part of the result.

    .venv/bin/python benchmarks/omp_pair.py --profile smoke -n 15
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [  # (name, jobs, threads, OMP_WAIT_POLICY or None for the runtime's default)
    ("solo, 2 threads", 1, 2, None),
    ("solo, 1 thread", 1, 1, None),
    ("pair, 2 threads each", 2, 2, None),
    ("pair, 2 threads each, PASSIVE", 2, 2, "PASSIVE"),
    ("pair, 1 thread each", 2, 1, None),
    ("solo, 2 threads, PASSIVE", 1, 2, "PASSIVE"),
    # a run started alone at 2 threads, and a second one beside it that saw it and took 1: what any
    # thread choice fixed at a run's start (for reproducible weights) gives
    ("pair, 2 threads + 1 thread", 2, (2, 1), None),
]


def _median_ms(text: str) -> float:
    m = re.search(r"iteration: median ([0-9.]+) ms", text)
    if not m:
        raise RuntimeError(text[-2000:])
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--artist", default="cezanne")
    ap.add_argument("-n", "--iterations", type=int, default=15)
    ap.add_argument("--only", default=None, help="comma-separated configuration numbers (1-based) to run")
    args = ap.parse_args()
    print(f"cpus={os.cpu_count()} profile={args.profile} artist={args.artist} n={args.iterations}")
    chosen = [CONFIGS[int(i) - 1] for i in args.only.split(",")] if args.only else CONFIGS
    for name, jobs, threads, policy in chosen:
        per_job = threads if isinstance(threads, tuple) else (threads,) * jobs
        procs = []
        before = os.getloadavg()[0]
        for t in per_job:
            env = {**os.environ, "OMP_NUM_THREADS": str(t)}
            env.pop("OMP_WAIT_POLICY", None)
            if policy:
                env["OMP_WAIT_POLICY"] = policy
            cmd = [sys.executable, str(REPO / "benchmarks" / "cyclegan_iter.py"), "--profile", args.profile,
                   "--artist", args.artist, "-n", str(args.iterations), "--warmup", "3"]
            cmd += ["--threads", str(t)]
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        outs = [p.communicate()[0] for p in procs]
        after = os.getloadavg()[0]
        ms = [_median_ms(o) for o in outs]
        print(f"{name:<32} median ms per iteration: {', '.join(f'{m:.0f}' for m in ms):<14} "
              f"load average 1 min: {before:.1f} before, {after:.1f} after", flush=True)


if __name__ == "__main__":
    main()
