"""Two jobs on one machine: their speed solo and side by side, per thread count and OpenMP wait
policy (issue 25 §7: a 2-thread smoke run beside another job fell >50x).

``--job train`` (default): each configuration starts ``benchmarks/cyclegan_iter.py`` once (solo) or
twice at the same time (pair) and reads its median iteration time. ``--job eval``: each job is a
real ``bench eval --images FOLDER --artist monet`` of ``--images`` training photos (job 1 and job 2
get different photos; the photo reference statistics are cached by a warm-up eval first), timed
by its wall clock; the thread count is passed as OMP_NUM_THREADS, which `bench` honours. The load
average before and after each is printed, because on a shared machine the other users' jobs are
part of the result.

    .venv/bin/python benchmarks/omp_pair.py --profile smoke -n 15
    .venv/bin/python benchmarks/omp_pair.py --job eval --images 200 --only 1,2,3,5,7
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


def run_together(name: str, threads: int | tuple[int, ...], jobs: int, policy: str | None,
                 command: Callable[[int, int], list[str]], base_env: dict[str, str]) -> list[tuple[float, str]]:
    """Start a configuration's jobs at once (job j with its thread count as OMP_NUM_THREADS and the
    wait policy) and return, per job, its own wall-clock seconds and its output. Each job is waited
    for in its own thread, so a job that ends first is not timed until the other ends too."""
    per_job = threads if isinstance(threads, tuple) else (threads,) * jobs
    before = os.getloadavg()[0]

    def one(j: int) -> tuple[float, str]:
        env = {**base_env, "OMP_NUM_THREADS": str(per_job[j])}
        env.pop("OMP_WAIT_POLICY", None)
        if policy:
            env["OMP_WAIT_POLICY"] = policy
        t0 = time.perf_counter()
        done = subprocess.run(command(j, per_job[j]), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
        seconds = time.perf_counter() - t0
        if done.returncode:
            raise RuntimeError(f"{name}, job {j + 1}: {done.stdout[-2000:]}")
        return seconds, done.stdout

    with ThreadPoolExecutor(max_workers=len(per_job)) as pool:
        results = list(pool.map(one, range(len(per_job))))
    print(f"  (load average 1 min: {before:.1f} before, {os.getloadavg()[0]:.1f} after)", flush=True)
    return results


def chosen_configs(args: argparse.Namespace) -> list[tuple[str, int, int | tuple[int, ...], str | None]]:
    return [CONFIGS[int(i) - 1] for i in args.only.split(",")] if args.only else CONFIGS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--artist", default="cezanne")
    ap.add_argument("-n", "--iterations", type=int, default=15)
    ap.add_argument("--only", default=None, help="comma-separated configuration numbers (1-based) to run")
    ap.add_argument("--job", choices=("train", "eval"), default="train")
    ap.add_argument("--images", type=int, default=200, help="--job eval: photos per job's folder")
    ap.add_argument("--data-root", type=Path,
                    default=Path(os.environ.get("ARTSHIFT_DATA", str(REPO.parent / "shared" / "data"))))
    args = ap.parse_args()
    if args.job == "eval":
        return eval_pairs(args)
    print(f"cpus={os.cpu_count()} profile={args.profile} artist={args.artist} n={args.iterations}")

    def command(j: int, threads: int) -> list[str]:
        return [sys.executable, str(REPO / "benchmarks" / "cyclegan_iter.py"), "--profile", args.profile,
                "--artist", args.artist, "-n", str(args.iterations), "--warmup", "3", "--threads", str(threads)]

    for name, jobs, threads, policy in chosen_configs(args):
        ms = [_median_ms(out) for _, out in run_together(name, threads, jobs, policy, command, dict(os.environ))]
        print(f"{name:<32} median ms per iteration: {', '.join(f'{m:.0f}' for m in ms)}", flush=True)


def eval_pairs(args: argparse.Namespace) -> None:
    bench = Path(sys.executable).with_name("bench")
    photos = sorted((args.data_root / "photos" / "train").iterdir())
    with tempfile.TemporaryDirectory() as tmp:
        folders = []
        for j in range(2):  # two folders of different photos: two evaluations, not one cached twice
            folder = Path(tmp) / f"job{j + 1}"
            folder.mkdir()
            for src in photos[j * args.images:(j + 1) * args.images]:
                shutil.copy(src, folder / src.name)
            folders.append(folder)
        base = {**os.environ, "ARTSHIFT_HOME": str(Path(tmp) / "home"), "ARTSHIFT_DATA": str(args.data_root)}
        base.pop("OMP_NUM_THREADS", None)

        def command(j: int, threads: int = 0) -> list[str]:
            return [str(bench), "eval", "--images", str(folders[j]), "--artist", "monet", "--name", f"job{j + 1}", "-q"]

        for j in range(2):  # warm-up: the photo statistics and the weights' hashes go into the cache
            subprocess.run(command(j), env=base, check=True, capture_output=True)
        print(f"cpus={os.cpu_count()} job=bench eval of {args.images} photos each")
        for name, jobs, threads, policy in chosen_configs(args):
            seconds = [s for s, _ in run_together(name, threads, jobs, policy, command, base)]
            print(f"{name:<32} seconds per eval: {', '.join(f'{s:.1f}' for s in seconds)}", flush=True)


if __name__ == "__main__":
    main()
