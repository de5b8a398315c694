"""One MUNIT training iteration, artshift's against the reference code's, alternating in one process.

Why: the issue asks artshift's MUNIT to cost at most 1.0x the reference per iteration. Both
run the same settings (a profile's resolved config translated into the reference's
hyperparameter dict) on the same random batch, alternating so a shared machine's load falls on
both alike; the script prints the median seconds of each and the ratio.

The reference is a checkout of NVlabs/MUNIT (not shipped; e.g. `git clone`, or the `fetch`
tool's mirror exported with `git archive`), run on the CPU. Three things are patched in memory
so that its 2018 code runs there: `torch.utils.serialization` (removed from torch; only its VGG
loader needs it) is stubbed, `Tensor.cuda` returns the tensor itself, and `yaml` is not needed.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/munit_vs_reference.py --reference /tmp/MUNIT --profile smoke -n 20
    .venv/bin/python benchmarks/munit_vs_reference.py --reference /tmp/MUNIT --profile paper -n 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from baselines.munit import MUNIT  # noqa: E402
from benchmark.core.profiles import apply_overrides, parse_overrides  # noqa: E402


def reference_trainer(path: Path, c):
    sys.modules.setdefault("torch.utils.serialization", types.ModuleType("torch.utils.serialization"))
    sys.modules["torch.utils.serialization"].load_lua = None  # type: ignore[attr-defined]
    if "yaml" not in sys.modules:
        try:
            import yaml  # noqa: F401
        except ImportError:
            sys.modules["yaml"] = types.ModuleType("yaml")
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    sys.path.insert(0, str(path))
    import trainer  # the reference's trainer.py

    hp = {"lr": c.lr, "beta1": c.beta1, "beta2": c.beta2, "weight_decay": c.weight_decay, "init": c.init,
          "lr_policy": "step", "step_size": c.step_size, "gamma": c.gamma, "gan_w": c.gan_w,
          "recon_x_w": c.recon_x_w, "recon_s_w": c.recon_s_w, "recon_c_w": c.recon_c_w,
          "recon_x_cyc_w": c.recon_x_cyc_w, "vgg_w": 0, "input_dim_a": 3, "input_dim_b": 3, "display_size": 1,
          "gen": {"dim": c.gen_dim, "mlp_dim": c.mlp_dim, "style_dim": c.style_dim, "activ": c.activ,
                  "n_downsample": c.n_downsample, "n_res": c.n_res, "pad_type": c.pad_type},
          "dis": {"dim": c.dis_dim, "norm": c.dis_norm, "activ": c.dis_activ, "n_layer": c.dis_n_layer,
                  "gan_type": "lsgan", "num_scales": c.num_scales, "pad_type": c.dis_pad_type}}
    return trainer.MUNIT_Trainer(hp), hp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", required=True, type=Path, help="a checkout of NVlabs/MUNIT")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("-n", "--iterations", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = apply_overrides(MUNIT.default_config(args.profile), parse_overrides(args.overrides))
    ours = MUNIT(config)
    ref, hp = reference_trainer(args.reference, config)
    n_ref = sum(p.numel() for p in ref.parameters())
    n_ours = sum(p.numel() for net in ours.networks().values() for p in net.parameters())
    s = config.crop_size
    g = torch.Generator().manual_seed(0)
    x_a, x_b = (torch.rand(1, 3, s, s, generator=g) * 2 - 1 for _ in range(2))

    def step_ref(i: int) -> None:
        ref.update_learning_rate()
        ref.dis_update(x_a, x_b, hp)
        ref.gen_update(x_a, x_b, hp)

    def step_ours(i: int) -> None:
        ours.train_step({"A": x_a, "B": x_b}, i)

    times: dict[str, list[float]] = {"reference": [], "artshift": []}
    for i in range(args.iterations + 1):  # the first round warms up and is not counted
        for name, fn in (("reference", step_ref), ("artshift", step_ours)) if i % 2 else (
                ("artshift", step_ours), ("reference", step_ref)):
            t = time.perf_counter()
            fn(i)
            if i:
                times[name].append(time.perf_counter() - t)
    ref_s, ours_s = statistics.median(times["reference"]), statistics.median(times["artshift"])
    print(f"profile {args.profile}: {s} px crops, {torch.get_num_threads()} thread(s), {args.iterations} iterations each; "
          f"parameters reference {n_ref:,} artshift {n_ours:,}")
    print(f"reference {ref_s:.3f} s/it, artshift {ours_s:.3f} s/it: artshift = {ours_s / ref_s:.2f}x the reference")


if __name__ == "__main__":
    main()
