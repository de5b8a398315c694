"""Training iteration of CycleGAN, ours, CUT and FastCUT against the reference code, side by side.

Why: issue 24 asks artshift to train at <= 0.5x the reference's time per iteration at 128 and
256 px. The reference is the CUT repository (taesungp/contrastive-unpaired-translation), whose
``cycle_gan`` and ``cut`` models are the published training code of CycleGAN and CUT/FastCUT;
it is not shipped (``git clone`` it, or export the ``fetch`` tool's mirror with ``git archive
HEAD data models options util``) and runs on the CPU with ``--gpu_ids -1``.

For each method the reference model and artshift at each setting (fp32, bf16, ...) are built
from one resolved artshift config, so both train the same networks on the same losses, and
their iterations alternate in one process (the order rotated each round) on the same real
batches, so a change of machine load falls on every column alike. The script prints the median
seconds per iteration and artshift / reference for each setting.

- CycleGAN: the reference is run with ``--no_antialias --no_antialias_up`` (the original
  CycleGAN's strided convolutions, which artshift's CycleGAN implements); CUT/FastCUT keep the
  reference's blur-pool default, as artshift's CUT does (``antialias=True``).
- ours has no runnable reference here (art2real's code needs CUDA and faiss-gpu), so it is
  timed against the reference CycleGAN at the same settings: artshift's number includes the
  bank search and the contextual loss that the reference does not compute, a stricter bar.
- Parameter counts of both sides are printed; they must agree (the CUT MLP head is built
  lazily by the reference and is counted after its first iteration).
- ``--flops``: the floating-point operations of one iteration of each side (torch's
  ``FlopCounterMode``: convolutions and matrix products, forward and backward) and the machine's
  GEMM peak in fp32 and bf16 (``torch.mm`` 4096 x 4096, best of 5, at the run's thread count), so
  each column's time converts to achieved GFLOPS and a share of the peak: the ceiling on what any
  lever that keeps the arithmetic can gain.

    .venv/bin/python benchmarks/gan_vs_reference.py --reference /tmp/CUT --size 128 -n 6
    .venv/bin/python benchmarks/gan_vs_reference.py --reference /tmp/CUT --size 256 -n 3 --methods cyclegan,cut
    .venv/bin/python benchmarks/gan_vs_reference.py --reference /tmp/CUT --size 256 -n 3 --threads 2 --flops
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mixed_precision import SETTINGS, loadavg, machine_line  # noqa: E402

from benchmark.core.method import RunContext, TrainData  # noqa: E402
from benchmark.core.profiles import apply_overrides, parse_overrides  # noqa: E402
from benchmark.core.registry import methods  # noqa: E402
from benchmark.data import resolve_domain  # noqa: E402
from benchmark.pipeline.training import iteration_seed, seed_everything  # noqa: E402

# network size per crop side: the issue's two points (128 px: ngf/ndf 32; 256 px: the paper's 64)
SIZES = {128: dict(load_size=143, crop_size=128, ngf=32, ndf=32, n_blocks=9),
         256: dict(load_size=286, crop_size=256, ngf=64, ndf=64, n_blocks=9)}


def reference_model(path: Path, name: str, c: Any, tmp: Path) -> Any:
    """The reference's model for artshift config ``c``, built through its own option parser."""
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    import models as ref_models
    from options.train_options import TrainOptions  # the reference's modules

    args = ["--dataroot", str(tmp), "--name", f"ref-{name}", "--checkpoints_dir", str(tmp / "ref"),
            "--gpu_ids", "-1", "--load_size", str(c.load_size), "--crop_size", str(c.crop_size),
            "--ngf", str(c.ngf), "--ndf", str(c.ndf), "--netG", f"resnet_{c.n_blocks}blocks",
            "--netD", "basic" if c.n_layers_D == 3 else "n_layers", "--n_layers_D", str(c.n_layers_D),
            "--batch_size", str(c.batch_size), "--lr", str(c.lr), "--beta1", str(c.beta1), "--beta2", str(c.beta2),
            "--gan_mode", "lsgan", "--normG", c.norm, "--normD", c.norm, "--init_gain", str(c.init_gain)]
    if name in ("cyclegan", "ours"):
        args += ["--model", "cycle_gan", "--no_antialias", "--no_antialias_up", "--init_type", "normal",
                 "--lambda_A", str(c.lambda_A), "--lambda_B", str(c.lambda_B),
                 "--lambda_identity", str(c.lambda_identity), "--pool_size", str(c.pool_size)]
    else:
        args += ["--model", "cut", "--CUT_mode", "FastCUT" if name == "fastcut" else "CUT",
                 "--init_type", c.init_type, "--lambda_GAN", str(c.lambda_GAN), "--lambda_NCE", str(c.lambda_NCE),
                 "--nce_idt", str(c.nce_idt), "--flip_equivariance", str(c.flip_equivariance),
                 "--num_patches", str(c.num_patches), "--netF_nc", str(c.netF_nc), "--nce_T", str(c.nce_T)]
        if not c.antialias:
            args += ["--no_antialias", "--no_antialias_up"]
    with contextlib.redirect_stdout(io.StringIO()):  # the parser prints every option
        opt = TrainOptions(" ".join(args)).parse()
        opt.amp = False  # read by its cycle_gan model (apex mixed precision) but defined by no option
        model = ref_models.create_model(opt)
    return model, opt


def gemm_peak(dtype: torch.dtype, size: int = 4096, reps: int = 5) -> float:
    """GFLOPS of the best of ``reps`` square matrix products: what this CPU's cores can do at best."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(reps))
    return 2 * size**3 / best / 1e9


def _timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def flops_of(fn: Any) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def parameters(modules: list[torch.nn.Module]) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def measure(name: str, args: argparse.Namespace, data: TrainData, tmp: Path) -> dict[str, Any]:
    cls = methods.get(name)
    sets = {**{k: str(v) for k, v in SIZES[args.size].items()}, **parse_overrides(args.overrides)}
    built: dict[str, Any] = {}
    shared = None
    for key in args.settings:
        precision, cl = SETTINGS[key]
        config = apply_overrides(cls.default_config(args.profile),
                                 {**sets, "precision": precision, "channels_last": str(cl).lower()})
        run = RunContext(run_dir=tmp / f"{name}-{key}", home=tmp / "home", seed=0, progress=False,
                         log=logging.getLogger("bench-vs-reference"))
        method = cls(config, "cpu")
        method.setup(data, run)
        if shared is None:
            method.prepare(data, run)
            shared = (method.paintings, method.photos)
        else:
            method.paintings, method.photos = shared
            method.prepare_extra(data, run)
        built[key] = method
    config = built[args.settings[0]].config
    ref, opt = reference_model(args.reference, name, config, tmp)
    first = built[args.settings[0]].batch(0, 0)
    ref_batch = lambda b: {"A": b["A"], "B": b["B"], "A_paths": ["A"], "B_paths": ["B"]}  # noqa: E731
    if name in ("cut", "fastcut"):
        ref.data_dependent_initialize(ref_batch(first))  # builds the MLP head on a first batch (train.py does it)
    with contextlib.redirect_stdout(io.StringIO()):
        ref.setup(opt)  # schedulers; prints the networks
    ref_nets = [getattr(ref, "net" + n) for n in ref.model_names]

    columns = ["reference"] + list(args.settings)
    times: dict[str, list[float]] = {k: [] for k in columns}
    flops: dict[str, int] = {}
    if args.flops:  # one extra, untimed iteration of each side (past the schedule's start: harmless)
        warm = built[args.settings[0]].batch(0, 10**6)
        flops["reference"] = flops_of(lambda: (ref.set_input(ref_batch(warm)), ref.optimize_parameters()))
        flops["artshift"] = flops_of(lambda: built[args.settings[0]].train_step(warm, 10**6))
    load_before = loadavg()
    for it in range(args.warmup + args.iterations):
        batch = built[args.settings[0]].batch(0, it)  # one batch per round, the same for every column
        for key in columns[it % len(columns):] + columns[:it % len(columns)]:
            seed_everything(iteration_seed(0, it))
            t = time.perf_counter()
            if key == "reference":
                ref.set_input(ref_batch(batch))
                ref.optimize_parameters()
            else:
                built[key].train_step(batch, it)
            if it >= args.warmup:
                times[key].append(time.perf_counter() - t)
    ours_params = parameters(list(built[args.settings[0]].networks().values()))
    out: dict[str, Any] = {"method": name, "crop": config.crop_size, "ngf": config.ngf, "ndf": config.ndf,
                           "n_blocks": config.n_blocks, "params_reference": parameters(ref_nets),
                           "params_artshift": ours_params, "load_before": load_before, "load_after": loadavg(),
                           "flops": flops, "columns": {}}
    base = statistics.median(times["reference"])
    for key in columns:
        ts = times[key]
        out["columns"][key] = {"n": len(ts), "median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts),
                               "ratio": statistics.median(ts) / base}
        if flops:
            done = flops["reference" if key == "reference" else "artshift"]
            peak = args.peaks["bf16" if SETTINGS[key][0] == "bf16" else "fp32"] if key in SETTINGS else args.peaks["fp32"]
            out["columns"][key].update(gflops=done / statistics.median(ts) / 1e9, peak_gflops=peak)
    return out


def table(r: dict[str, Any]) -> str:
    flops = r["flops"]
    lines = [f"### {r['method']}: {r['crop']} px, ngf {r['ngf']}, ndf {r['ndf']}, {r['n_blocks']} blocks; "
             f"parameters reference {r['params_reference']:,}, artshift {r['params_artshift']:,}; "
             f"load {r['load_before']} -> {r['load_after']}"
             + (f"; GFLOP per iteration reference {flops['reference'] / 1e9:.1f}, artshift "
                f"{flops['artshift'] / 1e9:.1f}" if flops else ""),
             "| column | median s / iteration (min-max, n) | time / reference's |"
             + (" achieved GFLOPS (share of the GEMM peak) |" if flops else ""),
             "|---|---|---|" + ("---|" if flops else "")]
    for key, c in r["columns"].items():
        lines.append(f"| {key} | {c['median_s']:.3f} ({c['min_s']:.3f}-{c['max_s']:.3f}, n={c['n']}) | "
                     f"{c['ratio']:.2f}x |"
                     + (f" {c['gflops']:.0f} ({c['gflops'] / c['peak_gflops']:.0%} of {c['peak_gflops']:.0f}) |"
                        if "gflops" in c else ""))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", required=True, type=Path,
                    help="a checkout of taesungp/contrastive-unpaired-translation (data, models, options, util)")
    ap.add_argument("--methods", default="cyclegan,ours,cut,fastcut")
    ap.add_argument("--size", type=int, default=128, choices=sorted(SIZES))
    ap.add_argument("--profile", default="paper", help="artshift profile whose losses and schedule are used")
    ap.add_argument("--settings", default="fp32,bf16", help=f"artshift columns, from {', '.join(SETTINGS)}")
    ap.add_argument("--artist", default="monet")
    ap.add_argument("--data-root", default=os.environ.get("ARTSHIFT_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--max-photos", type=int, default=100, help="first N training photos (load and bank time)")
    ap.add_argument("-n", "--iterations", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--flops", action="store_true",
                    help="count each side's FLOPs per iteration and measure the fp32/bf16 GEMM peak")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    args.settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    if any(s not in SETTINGS for s in args.settings):
        ap.error(f"--settings: choose from {', '.join(SETTINGS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    domain = resolve_domain(args.artist, Path(args.data_root))
    data = TrainData(args.artist, list(domain.paintings_train), list(domain.photos_train)[:args.max_photos])
    print(machine_line())
    args.peaks = {}
    if args.flops:
        args.peaks = {"fp32": gemm_peak(torch.float32), "bf16": gemm_peak(torch.bfloat16)}
        print(f"GEMM peak (torch.mm 4096^2, best of 5): fp32 {args.peaks['fp32']:.0f} GFLOPS, "
              f"bf16 {args.peaks['bf16']:.0f} GFLOPS")
    print(f"data: {args.artist}, {len(data.paintings)} paintings, {len(data.photos)} photos; profile {args.profile}; "
          f"{args.iterations} timed iterations per column after {args.warmup} warm-up")
    results = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
            results.append(measure(name, args, data, Path(tmp)))
            print()
            print(table(results[-1]), flush=True)
    if args.flops:
        print(f"GEMM peak at the end: fp32 {gemm_peak(torch.float32):.0f}, bf16 {gemm_peak(torch.bfloat16):.0f} GFLOPS")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s, load at the end {loadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                               "results": results}, indent=1))


if __name__ == "__main__":
    main()
