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

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bank_recall.py --photos 50 --scale 16:6 \
        --nprobe 16,64 --refine 4,16 --home /tmp/bank_recall
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

    import torch

    from benchmark.data import resolve_domain
    from methods.memory_bank import BankSpec, build_bank, parse_scales, recall_guard

    domain = resolve_domain(args.artist, args.data_root)
    photos = sorted(domain.photos_train, key=lambda p: p.name)[:args.photos]
    paintings = list(domain.paintings_train)
    spec = BankSpec(image_size=args.image_size, scales=parse_scales(args.scale), geometry=args.geometry,
                    index=args.index, memory_gb=args.memory_gb)
    t0 = time.perf_counter()
    bank = build_bank(photos, spec, args.home, query_images=paintings, recall_k=args.k, recall_queries=10)
    build_s = time.perf_counter() - t0
    info = bank.meta["scales"][bank.scales[0].key]
    print(f"bank: {len(photos)} photos at {args.image_size}px, scale {args.scale}, {info['n_patches']:,} patches, "
          f"{info['classes']['all']['factory']}, built in {build_s:.1f}s (0 if cached), torch threads "
          f"{torch.get_num_threads()}")
    rows = []
    for nprobe in [int(v) for v in args.nprobe.split(",")]:
        for refine in [int(v) for v in args.refine.split(",")]:
            loaded = build_bank(photos, dataclasses.replace(spec, nprobe=nprobe, refine=refine), args.home)
            t1 = time.perf_counter()
            rec = recall_guard(loaded, paintings, k=args.k, n_queries=args.queries, min_recall=0.0)
            r = rec["scales"][loaded.scales[0].key]
            row = {"photos": len(photos), "scale": args.scale, "patches": info["n_patches"],
                   "index": info["classes"]["all"]["factory"], "geometry": args.geometry, "nprobe": nprobe,
                   "refine": refine, "k": r["k"], "recall": r["recall"], "n_queries": r["n_queries"],
                   "search_ms_per_query": r["search_ms_per_query"], "measure_s": time.perf_counter() - t1,
                   "max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}
            rows.append(row)
            print(f"nprobe {nprobe:4d} refine {refine:3d}: recall@{r['k']} {r['recall']:.3f} on {r['n_queries']} "
                  f"query patches, {r['search_ms_per_query']:.2f} ms/query")
            if args.out:
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
    return rows


if __name__ == "__main__":
    main()
