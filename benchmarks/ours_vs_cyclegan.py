"""Training iteration time of "ours" over CycleGAN at the same settings (goal: <= 1.25x).

Why interleaved: both methods are built in one process and their iterations alternate
(cyclegan, ours, cyclegan, ...), so a change in machine load (a shared 2-core box) hits both
medians alike and the ratio stays meaningful. The bank is built (or found) first and its build
time is reported separately; it is a one-off cost cached under ARTSHIFT_HOME.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/ours_vs_cyclegan.py --profile smoke -n 40
    .venv/bin/python benchmarks/ours_vs_cyclegan.py --set ef_search=32 --home /tmp/bench-home
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

from baselines.cyclegan import CycleGAN  # noqa: E402
from benchmark.core.method import RunContext, TrainData  # noqa: E402
from benchmark.core.profiles import apply_overrides, parse_overrides  # noqa: E402
from benchmark.data import resolve_domain  # noqa: E402
from benchmark.pipeline.training import iteration_seed, seed_everything  # noqa: E402
from methods.ours import MemoryBankCycleGAN  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--artist", default="cezanne")
    ap.add_argument("--data-root", default=os.environ.get("ARTSHIFT_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--home", default=None, help="ARTSHIFT_HOME holding the bank cache (default: a temp dir)")
    ap.add_argument("-n", "--iterations", type=int, default=40, help="timed iterations per method")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--faiss-threads", type=int, default=None, help="faiss OpenMP threads (default: faiss's)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="ours setting (CycleGAN settings are applied to both)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.faiss_threads:
        import faiss

        faiss.omp_set_num_threads(args.faiss_threads)

    sets = parse_overrides(args.overrides)
    cfg_ours = apply_overrides(MemoryBankCycleGAN.default_config(args.profile), sets)
    base_keys = set(vars(CycleGAN.default_config(args.profile)))
    cfg_cyc = apply_overrides(CycleGAN.default_config(args.profile), {k: v for k, v in sets.items() if k in base_keys})
    domain = resolve_domain(args.artist, Path(args.data_root))
    data = TrainData(args.artist, list(domain.paintings_train), list(domain.photos_train))
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(args.home) if args.home else Path(tmp)
        methods = {}
        prep = {}
        for name, cls, cfg in (("cyclegan", CycleGAN, cfg_cyc), ("ours", MemoryBankCycleGAN, cfg_ours)):
            run = RunContext(run_dir=Path(tmp) / name, home=home, seed=0, progress=False,
                             log=logging.getLogger("bench-ours"))
            m = cls(cfg, "cpu")
            m.setup(data, run)
            t0 = time.perf_counter()
            m.prepare(data, run)
            prep[name] = time.perf_counter() - t0
            methods[name] = m
        times: dict[str, list[float]] = {"cyclegan": [], "ours": []}
        search_ms, cands = [], []
        for it in range(args.warmup + args.iterations):
            for name, m in methods.items():
                seed_everything(iteration_seed(0, it))
                batch = m.batch(0, it)
                t0 = time.perf_counter()
                m.train_step(batch, it)
                dt = time.perf_counter() - t0
                if it >= args.warmup:
                    times[name].append(dt)
                    if name == "ours":
                        search_ms.append(m.cx.stats["search_ms"])
                        cands.append(m.cx.stats["candidates"])
        bank = methods["ours"].bank
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"profile={args.profile} artist={args.artist} photos={len(data.photos)} paintings={len(data.paintings)} "
          f"crop={cfg_ours.crop_size} load={cfg_ours.load_size} ngf={cfg_ours.ngf} n_blocks={cfg_ours.n_blocks} "
          f"batch={cfg_ours.batch_size}")
    print(f"ours: scales={cfg_ours.scales} k={cfg_ours.k} index={cfg_ours.bank_index} hnsw_m={cfg_ours.hnsw_m} "
          f"ef_search={cfg_ours.ef_search} sq8={cfg_ours.hnsw_sq8} geometry={cfg_ours.search_geometry}")
    import faiss

    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
          f"load_avg={os.getloadavg()[0]:.1f} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"faiss={faiss.__version__} faiss_threads={faiss.omp_get_max_threads()}")
    print(f"bank: {bank.describe()}")
    print(f"prepare: cyclegan {prep['cyclegan']:.1f}s, ours {prep['ours']:.1f}s (bank build or load included)")
    for k in times:
        print(f"{k}: median {med[k]:.1f} ms/iteration (min {min(times[k]) * 1000:.1f}, max {max(times[k]) * 1000:.1f}) "
              f"n={len(times[k])}")
    print(f"ours search: median {statistics.median(search_ms):.1f} ms/iteration, "
          f"{statistics.median(cands):.0f} candidate patches/image")
    print(f"ratio ours/cyclegan: {med['ours'] / med['cyclegan']:.3f} (goal <= 1.25)")


if __name__ == "__main__":
    main()
