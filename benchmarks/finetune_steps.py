"""Step time of `bench downstream --finetune` on PACS photos, to size a network's default steps.

Why a script: the default step count of a CPU fine-tune (EfficientNet-Lite0) must come from a
measured step time on the machine it is meant for, with the load it ran under. It builds the
network exactly as the fine-tune does (``finetune.network``: the verified ImageNet file, a new
7-way head), loads the PACS training photos as ``_fit`` does, and runs ``finetune.train`` (the
recipe's batch, augmentation, Adam, frozen BatchNorm) for ``--steps`` steps with a single
validation at the end. The validation pass is timed on its own and subtracted, so the step time
is training steps only (augmentation, forward, backward, Adam); the checkpoint writes at the
validation are inside the remainder. The load average is read before and after; on a machine
shared with other jobs the wall time depends on them, so the process's CPU time (all threads)
is reported too: with ``--threads 1`` it bounds what one idle core would take.

    PYTHONPATH=. .venv/bin/python benchmarks/finetune_steps.py --arch effnet-lite0 --steps 20 --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="effnet-lite0")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-root", type=Path, default=Path(os.environ.get("ARTSHIFT_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--home", type=Path, help="ARTSHIFT_HOME (default: a fresh temporary folder)")
    ap.add_argument("--out", type=Path, help="write the result as JSON here")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from benchmark import data
    from benchmark.analyses import finetune as ft
    from benchmark.analyses.pixels import load_pixels

    torch.set_num_threads(args.threads)
    home = args.home or Path(tempfile.mkdtemp(prefix="ft-steps-"))
    load_before = loadavg()
    domain = data.ensure_domain("pacs", args.data_root, home, allow_download=False, progress=False)
    assert domain.labels is not None
    cfg = dataclasses.replace(ft.FinetuneConfig(arch=args.arch), steps=args.steps, eval_every=args.steps)
    net, weights_id = ft.network(cfg, len(domain.classes), home)
    index = {c: i for i, c in enumerate(domain.classes)}
    photos = list(domain.photos_train)
    y = np.array([index[domain.labels[p]] for p in photos])
    fit, val = ft.split(y, cfg)
    t = time.perf_counter()
    x = load_pixels(photos, cfg.size)
    load_s = time.perf_counter() - t

    spent = {"predict_s": 0.0, "predict_cpu_s": 0.0}
    predict = ft.predict_pixels

    def timed_predict(*a, **k):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return predict(*a, **k)
        finally:
            spent["predict_s"] += time.perf_counter() - t0
            spent["predict_cpu_s"] += time.process_time() - c0

    ft.predict_pixels = timed_predict
    t, c = time.perf_counter(), time.process_time()
    trained = ft.train(net, x[fit], torch.from_numpy(y[fit]), x[val], torch.from_numpy(y[val]), cfg,
                       folder=home / "ckpt", key="t" * 64, device="cpu")
    train_s, train_cpu_s = time.perf_counter() - t, time.process_time() - c
    ft.predict_pixels = predict
    step_s = (train_s - spent["predict_s"]) / args.steps
    res = {"arch": args.arch, "weights": weights_id, "steps": args.steps, "batch_size": cfg.batch_size,
           "size": cfg.size, "threads": args.threads, "n_fit": int(len(fit)), "n_val": int(len(val)),
           "load_pixels_s": round(load_s, 1), "train_s": round(train_s, 1),
           "validation_s": round(spent["predict_s"], 1), "step_s": round(step_s, 3),
           # CPU time of this process (all its threads): what a step costs whatever the other jobs do
           "train_cpu_s": round(train_cpu_s, 1), "validation_cpu_s": round(spent["predict_cpu_s"], 1),
           "step_cpu_s": round((train_cpu_s - spent["predict_cpu_s"]) / args.steps, 3),
           "val_accuracy": trained.val_accuracy, "loss": trained.history[-1]["loss"],
           "load_before": load_before, "load_after": loadavg(), "cpu": cpu_model(), "nproc": os.cpu_count(),
           "torch": torch.__version__}
    print(json.dumps(res, indent=1))
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    return res


if __name__ == "__main__":
    main()
