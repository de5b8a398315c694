"""Images/s of artshift's Inception feature extraction against pytorch-fid and torch-fidelity.

Why: evaluation of every run extracts features of hundreds of images on CPUs; artshift's
extractor must be clearly faster than the reference libraries while giving the same numbers.
All three use the SAME weights (a calibrated random-init network written in the
pt_inception file format), the same folder of images, the same batch size and the same number
of data-loader workers; each is warmed up on one batch first (not timed). Also compares the
Frechet distance at 2048 dims (artshift's eigenvalue route with the reference's cached square
root vs pytorch-fid's scipy.linalg.sqrtm).

    .venv/bin/python benchmarks/feature_speed.py                   # 402 test photos, 2 workers
    .venv/bin/python benchmarks/feature_speed.py --n 100 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
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

from benchmark.data import list_images  # noqa: E402
from benchmark.features import extract  # noqa: E402
from benchmark.features import inception as fx  # noqa: E402
from benchmark.metrics.fid import Stats, frechet_distance  # noqa: E402


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def rel(ours: np.ndarray, theirs: np.ndarray) -> float:
    """max |ours - theirs| / max |theirs| (one number per layer)."""
    theirs = np.asarray(theirs, dtype=np.float64)
    return float(np.abs(np.asarray(ours, dtype=np.float64) - theirs).max() / np.abs(theirs).max())


def timed(fn, label=""):
    t0 = time.perf_counter()
    out = fn()
    sec = time.perf_counter() - t0
    if label:
        print(f"  ... {label}: {sec:.2f} s", file=sys.stdout, flush=True)
    return out, sec


@contextlib.contextmanager
def fidelity_workers(n: int):
    """torch-fidelity picks min(4, 2 * cpu_count) loader workers; make that equal ``n`` (n even or 1)."""
    import torch_fidelity.utils as tfu

    orig = tfu.multiprocessing.cpu_count
    tfu.multiprocessing.cpu_count = lambda: max(n // 2, 0)
    try:
        yield
    finally:
        tfu.multiprocessing.cpu_count = orig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--n", type=int, default=0, help="use the first N test photos (0 = all)")
    ap.add_argument("--workers", type=int, default=2, help="data-loader workers for every library (even or 0)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--calibration", type=int, default=50, help="photos/train files calibrating the random init")
    ap.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "artshift-feature-speed",
                    help="ARTSHIFT_HOME holding the calibrated network (cached between runs)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    folder = args.data / "photos" / "test"
    files = list_images(folder)
    if args.n:
        files = files[: args.n]
    n, nw, bs = len(files), args.workers, args.batch_size
    ex = fx.get_extractor("random", home=args.home, allow_download=False,
                          calibration_paths=list_images(args.data / "photos" / "train")[: args.calibration])
    modes = {m: fx.copy_extractor(ex, m) for m in fx.RESIZE_MODES}

    # the same weights for the reference libraries, in the pt_inception file format
    torch_home = Path(tempfile.mkdtemp(prefix="torch_home_"))
    ckpt = ex.save_weights(torch_home / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth")
    os.environ["TORCH_HOME"] = str(torch_home)

    from pytorch_fid import fid_score
    from pytorch_fid.inception import InceptionV3
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.utils import extract_featuresdict_from_input_id

    pfid_model = InceptionV3([3]).eval()
    tfid_model = FeatureExtractorInceptionV3("inception-v3-compat", ["64", "192", "768", "2048"],
                                             feature_extractor_weights_path=str(ckpt))
    tf_kw = dict(input1=str(folder), cache=False, batch_size=bs, cuda=False, save_cpu_ram=nw == 0, verbose=False,
                 samples_find_deep=False, samples_find_ext="png,jpg,jpeg", samples_ext_lossy="jpg,jpeg",
                 samples_resize_and_crop=0)

    def run_pfid(fs):
        return {2048: fid_score.get_activations(fs, pfid_model, bs, 2048, "cpu", nw)}

    def run_tfid(path):
        with fidelity_workers(nw):
            out = extract_featuresdict_from_input_id(1, tfid_model, **dict(tf_kw, input1=str(path)))
        return {int(k): v.double().numpy() for k, v in out.items()}

    def by_dims(feats):  # artshift keys layers by text id ("inception:2048"); the references by dims
        return {int(k.partition(":")[2]): v for k, v in feats.items()}

    def run_ours(mode, layers=fx.LAYERS, fs=files):
        ids = [f"inception:{d}" for d in layers]
        return by_dims(extract.extract_paths(modes[mode], fs, batch_size=bs, num_workers=nw, progress=False, layers=ids))

    def link_folder(fs):  # torch-fidelity takes a folder: give it exactly these files
        d = Path(tempfile.mkdtemp(prefix="images_"))
        for p in fs:
            (d / p.name).symlink_to(p.resolve())
        return d

    # warm-up: one batch each (first-call allocations, oneDNN primitive caches)
    warm_dir, run_dir = link_folder(files[:bs]), link_folder(files)
    with contextlib.redirect_stderr(open(os.devnull, "w")):
        run_pfid(files[:bs])
        run_tfid(warm_dir)
    for m in fx.RESIZE_MODES:
        run_ours(m, fs=files[:bs])

    load0 = os.getloadavg()
    runs = [
        ("pytorch-fid get_activations (2048)", lambda: run_pfid(files)),
        ("torch-fidelity folder input (4 layers)", lambda: run_tfid(run_dir)),
        ("artshift pytorch-fid mode (4 layers)", lambda: run_ours("pytorch-fid")),
        ("artshift torch-fidelity mode (4 layers)", lambda: run_ours("torch-fidelity")),
        ("artshift clean mode (4 layers)", lambda: run_ours("clean")),
        ("artshift clean mode (2048 only)", lambda: run_ours("clean", (2048,))),
    ]
    results = {}
    for label, fn in runs:
        with contextlib.redirect_stderr(open(os.devnull, "w")):  # pytorch-fid's progress bar
            results[label] = timed(fn, label)
    load1 = os.getloadavg()

    # every layer from pytorch-fid on one batch (its folder API returns one layer per pass)
    pfid_all = InceptionV3([0, 1, 2, 3]).eval()
    imgs = [np.asarray(fx.load_image(p)) for p in files[:bs]]
    with torch.no_grad():
        batch = torch.stack([torch.from_numpy(i.copy()).permute(2, 0, 1).float().div(255) for i in imgs])
        pf_layers = {k: t.mean((2, 3)).numpy() for k, t in zip(fx.LAYERS, pfid_all(batch), strict=True)}
    ours_pf_batch = by_dims(extract.extract_paths(modes["pytorch-fid"], files[:bs], num_workers=0, progress=False))

    pf, tf_ = results["pytorch-fid get_activations (2048)"][0], results["torch-fidelity folder input (4 layers)"][0]
    o_pf, o_tf = results["artshift pytorch-fid mode (4 layers)"][0], results["artshift torch-fidelity mode (4 layers)"][0]
    diff = {
        "pytorch-fid mode vs pytorch-fid": {2048: rel(o_pf[2048], pf[2048]),
                                           **{k: rel(ours_pf_batch[k], pf_layers[k]) for k in (64, 192, 768)}},
        "torch-fidelity mode vs torch-fidelity": {k: rel(o_tf[k], tf_[k]) for k in fx.LAYERS},
    }

    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} intra-op threads), load average {load0[0]:.2f} -> {load1[0]:.2f}")
    print(f"images: n={n} from {folder} (batch {bs}, {nw} loader workers for every library); "
          f"weights: {ex.id} (same state dict for all)")
    print()
    print(f"{'extractor':44s} {'seconds':>8s} {'images/s':>9s} {'vs pytorch-fid':>15s} {'vs torch-fidelity':>18s}")
    t_pf = results["pytorch-fid get_activations (2048)"][1]
    t_tf = results["torch-fidelity folder input (4 layers)"][1]
    for name, (_, sec) in results.items():
        print(f"{name:44s} {sec:8.2f} {n / sec:9.2f} {t_pf / sec:14.2f}x {t_tf / sec:17.2f}x")
    t4 = results["artshift clean mode (4 layers)"][1]
    t1 = results["artshift clean mode (2048 only)"][1]
    print(f"\n4 layers / 2048 only (clean mode): {t4 / t1:.3f}x time")
    print("\nmax |ours - theirs| / max |theirs| per layer (64/192/768 vs pytorch-fid: first batch; its folder API "
          "gives one layer per pass):")
    for name, d in diff.items():
        print(f"  {name:40s} " + "  ".join(f"{k}: {v:.2e}" for k, v in d.items()))

    # Frechet distance at 2048 dims: photos/test vs Monet test paintings
    monet = list_images(args.data / "paintings" / "monet" / "test")
    f_real = results["artshift clean mode (4 layers)"][0][2048]
    f_fake = extract.extract_paths(modes["clean"], monet, batch_size=bs, num_workers=nw, progress=False)["inception:2048"]
    real = Stats.from_features(f_real)
    _ = real.sqrt_sigma  # the cached reference eigendecomposition (stored with reference statistics)
    fake = Stats.from_features(f_fake)
    fd_ours, t_ours = timed(lambda: frechet_distance(real, fake))
    fake_nof = Stats(fake.mu, fake.sigma, fake.n)
    fd_eig, t_eig = timed(lambda: frechet_distance(real, fake_nof))
    fd_sqrtm, t_sqrtm = timed(lambda: fid_score.calculate_frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma))
    print(f"\nFID-2048 photos/test (n={real.n}) vs monet/test (n={fake.n}), clean mode, {ex.id}:")
    print(f"  artshift (n x n eigenproblem, fake features known)  {fd_ours:.6f}  {t_ours * 1000:9.1f} ms")
    print(f"  artshift (cached sqrt of reference, eigvalsh)        {fd_eig:.6f}  {t_eig * 1000:9.1f} ms")
    print(f"  pytorch-fid calculate_frechet_distance (sqrtm)       {fd_sqrtm:.6f}  {t_sqrtm * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
