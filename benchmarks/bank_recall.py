"""recall@k of the memory bank's approximate search on real photos, for choosing nprobe / refine.

The paper-scale bank of "ours" (monet2photo trainB: 6,287 photos at 256 px, 10.6 M patches at
16:6) is too large for an exact index in the default 8 GB budget, so the `auto` plan picks
IVF-PQ; whether its nprobe / refine find the true neighbours has to be measured. This script
builds the bank for the first N training photos (sorted names) of a data root at one scale,
then measures recall@k of every (nprobe, refine) pair asked for against exact search over all
patches, on query patches of the artist's training paintings (the same measurement as the
train-time guard, `methods.memory_bank.recall_guard`). nprobe and refine are search-time
settings, so the bank is built once and only reloaded per pair.

Recall falls as the bank grows (more lists, more near neighbours in lists not probed): a value
measured on N photos is an upper bound for the full 6,287. Report N with every number.

The exact neighbours do not depend on nprobe / refine, so they are computed once per scale and
reused across the grid (``recall_guard(exact_cache=...)``). Each row records the bank's build
time and its stages (mean, quantiser sample, PQ/IVF training, adding, writing), the search time
of the query batch, the process's peak RSS and the load average before the build and after the
row. Run one scale per process (each builds and holds only its own patches):

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bank_recall.py --photos 400 \
        --scale 16:6 --nprobe 8,16,32,64,128 --refine 4,16 --home /tmp/bank_recall --out rows.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=50, help="first N training photos (sorted)")
    ap.add_argument("--scale", default="16:6", help="one patch:stride")
    ap.add_argument("--nprobe", default="16", help="comma-separated IVF lists probed")
    ap.add_argument("--refine", default="4", help="comma-separated exact re-ranking factors (k * refine candidates)")
    ap.add_argument("--index", default="ivfpq", help="index kind; ivfpq is what `auto` picks at paper scale")
    ap.add_argument("--geometry", default="l2", help="l2 (raw pixels, the paper profile) or cosine")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--artist", default="monet")
    ap.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--home", type=Path, required=True, help="cache folder for the bank (reused across calls)")
    ap.add_argument("--memory-gb", type=float, default=16.0)
    ap.add_argument("--out", type=Path, help="append the results as JSON lines here")
    args = ap.parse_args(argv)

    import os

    import torch

    from benchmark.data import resolve_domain
    from methods.memory_bank import BankSpec, build_bank, parse_scales, recall_guard

    domain = resolve_domain(args.artist, args.data_root)
    photos = sorted(domain.photos_train, key=lambda p: p.name)[:args.photos]
    paintings = list(domain.paintings_train)
    spec = BankSpec(image_size=args.image_size, scales=parse_scales(args.scale), geometry=args.geometry,
                    index=args.index, memory_gb=args.memory_gb)
    load_before = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None
    t0 = time.perf_counter()
    bank = build_bank(photos, spec, args.home, query_images=paintings, recall_k=args.k, recall_queries=10)
    build_s = time.perf_counter() - t0
    info = bank.meta["scales"][bank.scales[0].key]
    stages = info["classes"]["all"].get("stages", {})
    build_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    threads = {"torch": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    print(f"bank: {len(photos)} photos at {args.image_size}px, scale {args.scale}, {info['n_patches']:,} patches, "
          f"{info['classes']['all']['factory']}, built in {bank.meta['build_seconds']:.1f}s "
          f"({', '.join(f'{k} {v:.1f}' for k, v in stages.items())}; this call {build_s:.1f}s, ~0 if cached), "
          f"peak RSS {build_rss_gb:.2f} GB, threads {threads}, load before {load_before}", flush=True)
    del bank
    rows = []
    exact_cache: dict = {}  # the exact neighbours, computed once for the whole grid
    for nprobe in [int(v) for v in args.nprobe.split(",")]:
        for refine in [int(v) for v in args.refine.split(",")]:
            loaded = build_bank(photos, dataclasses.replace(spec, nprobe=nprobe, refine=refine), args.home)
            t1 = time.perf_counter()
            rec = recall_guard(loaded, paintings, k=args.k, n_queries=args.queries, min_recall=0.0,
                               exact_cache=exact_cache)
            r = rec["scales"][loaded.scales[0].key]
            row = {"photos": len(photos), "scale": args.scale, "image_size": args.image_size,
                   "patches": info["n_patches"], "index": info["classes"]["all"]["factory"],
                   "geometry": args.geometry, "nprobe": nprobe, "refine": refine, "k": r["k"], "recall": r["recall"],
                   "n_queries": r["n_queries"], "search_ms_per_query": r["search_ms_per_query"],
                   "search_s_per_batch": r["search_ms_per_query"] * r["n_queries"] / 1000,
                   "measure_s": time.perf_counter() - t1, "build_s": loaded.meta["build_seconds"], "build_stages": stages,
                   "index_bytes": info["classes"]["all"]["bytes"], "build_max_rss_gb": build_rss_gb,
                   "max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
                   "threads": threads, "load_before": load_before,
                   "load_after": Path("/proc/loadavg").read_text().split()[:3] if load_before else None}
            rows.append(row)
            print(f"nprobe {nprobe:4d} refine {refine:3d}: recall@{r['k']} {r['recall']:.3f} on {r['n_queries']} "
                  f"query patches, {r['search_ms_per_query']:.2f} ms/query, measured in {row['measure_s']:.1f}s, "
                  f"peak RSS {row['max_rss_gb']:.2f} GB, load {row['load_after']}", flush=True)
            del loaded
            if args.out:
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
    return rows


if __name__ == "__main__":
    main()
