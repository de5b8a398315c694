"""Wall time of `bench run` at the smoke profile, one method after another (goal: <= 10 min each).

Why a script: the README's smoke table must say what was run, where, under which load and with
how warm the caches were. Each method runs as its own `bench run` process (what a user types),
timed from outside; the run's own stage timings (fit, translate, evaluate) are read back from
its `status.json`. The first method pays for the shared caches (the random-init extractor's
calibration, the reference photos' features); the report says which run was first.

    .venv/bin/python benchmarks/smoke_times.py --artist cezanne --home /tmp/smoke-home \
        --methods cyclegan,ours,gatys,cut,fastcut,original --out smoke_times.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artist", default="cezanne")
    ap.add_argument("--methods", default="cyclegan,ours,gatys,cut,fastcut,original,adain,johnson,munit,unit")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--home", type=Path, required=True, help="ARTSHIFT_HOME (fresh: the first run builds the caches)")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)

    bench = Path(sys.executable).with_name("bench")
    env = dict(os.environ, ARTSHIFT_HOME=str(args.home), HF_HUB_OFFLINE="1")
    results = []
    for i, method in enumerate(m.strip() for m in args.methods.split(",") if m.strip()):
        before = loadavg()
        t = time.perf_counter()
        proc = subprocess.run([str(bench), "run", "--method", method, "--artist", args.artist, "--profile",
                               args.profile, "--seed", str(args.seed), "--data-root", str(args.data_root), "--quiet"],
                              env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        runs = sorted((args.home / "runs" / method / args.artist).glob("*/status.json"),
                      key=lambda p: p.stat().st_mtime)
        status = json.loads(runs[-1].read_text()) if runs else {}
        row = {"method": method, "order": i, "wall_s": round(wall, 1), "rc": proc.returncode,
               "status": status.get("status"), "timings": status.get("timings", {}),
               "load_before": before, "load_after": loadavg(),
               "error": proc.stderr.strip().splitlines()[-1] if proc.returncode else None}
        results.append(row)
        stages = ", ".join(f"{k} {v:.0f}s" for k, v in row["timings"].items())
        print(f"{method:10s} {wall / 60:5.1f} min  rc {proc.returncode}  {stages}  load {before[0]:.2f} -> "
              f"{row['load_after'][0]:.2f}", flush=True)
    info = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "artist": args.artist, "profile": args.profile,
            "home": str(args.home), "runs": results}
    if args.out:
        args.out.write_text(json.dumps(info, indent=2))
    return results


if __name__ == "__main__":
    main()
