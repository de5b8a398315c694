"""Datasets on disk: layouts, robust image loading, fingerprints, and fetch/verify of releases.

Three local layouts are understood under a data root:
- CycleGAN release: ``<artist>2photo/{trainA,testA,trainB,testB}`` (A = paintings, B = photos)
- subset layout (``../shared/data``): ``paintings/<artist>/{train,test}``, ``photos/{train,test}``
- labelled (PACS): ``pacs/{art_painting,photo}/<class>/*.jpg``, class = label, train/test from
  the split CSV its manifest names (``data_manifests/pacs_split.csv``); artist ``pacs``

Files are named by their path relative to their split folder (``Domain.relpath``): the file
name for flat folders, ``dog/pic_001.jpg`` for PACS, whose names repeat across classes.

Releases are described by manifests (``benchmark.data.manifests``); ``fetch_dataset`` downloads a
release's zip, checks (or pins, on first download) its sha256, extracts it safely into
``<root>/<name>/`` and checks the split counts before the new folder replaces anything.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import shutil
import struct
import sys
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from benchmark.core.download import ChecksumError, download, sha256_file
from benchmark.core.errors import ArtshiftError, did_you_mean
from benchmark.data.archive import safe_extract
from benchmark.data.manifests import (  # re-exported: callers use benchmark.data for everything dataset-related
    LABELLED_LAYOUTS,
    LAYOUTS,
    Manifest,
    ManifestError,
    expected_sha256,
    get_manifest,
    load_manifests,
    lock_path,
    manifest_for_artist,
    pin_sha256,
    pinned_sha256,
)

__all__ = [
    "ARTISTS", "BAD_IMAGE_POLICIES", "BadImageError", "Domain", "Manifest", "ManifestError", "MissingDataError",
    "SplitReport", "VerifyReport", "archive_path", "ensure_domain", "fetch_dataset", "fingerprint", "get_manifest",
    "list_images", "load_image", "offline", "load_images", "load_manifests", "lock_path", "manifest_for_artist",
    "pinned_sha256", "readable_images", "resolve_domain", "to_rgb", "verify_dataset",
    "SPLIT_NAMES", "load_split_file", "split_fingerprint",
]

ARTISTS = ("monet", "cezanne", "vangogh", "ukiyoe", "pacs")
SPLIT_NAMES = ("paintings/train", "paintings/test", "photos/train", "photos/test")  # Domain's four splits, in order
SPLIT_FILE_HEADER = ("path", "class", "split")
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".gif"}
# Formats PIL may open (JPEG covers MPO): a renamed EPS must never reach Ghostscript, whatever its extension.
PIL_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "PPM", "GIF")
MAX_PIXELS = 8192 * 8192  # larger files are refused as possible decompression bombs
MIN_SIDE = 8  # smaller images are refused: no method or extractor here can use a 1x1 or 4x4 picture
BAD_IMAGE_POLICIES = ("error", "skip")
MARKER_NAME = ".artshift-fetch.json"  # written into an extracted dataset: which archive it came from

_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"),
    (b"P1", "PPM"), (b"P2", "PPM"), (b"P3", "PPM"), (b"P4", "PPM"), (b"P5", "PPM"), (b"P6", "PPM"),
)


class BadImageError(ArtshiftError):
    """An image file that cannot be used (corrupt, truncated, empty, not an image, too large)."""

    def __init__(self, path: Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"bad image {path}: {problem}",
                         hint="replace or delete the file, or pass --on-bad-image skip to skip such files")


class MissingDataError(ArtshiftError):
    """No folder at all for an artist under the data root (as opposed to a broken one)."""


def _common_parent(paths: Iterable[Path | str]) -> Path | None:
    parents = {os.path.dirname(os.path.abspath(p)) for p in paths}
    if not parents:
        return None
    try:
        return Path(os.path.commonpath(sorted(parents)))
    except ValueError:  # different drives (Windows): no common folder
        return None


def _relative_posix(path: Path, base: Path | None) -> str:
    """``path`` relative to ``base`` as a posix string; the bare name when there is no base."""
    if base is None:
        return Path(path).name
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(base)).as_posix()
    except ValueError:
        raise ValueError(f"{path} is not inside {base}") from None


class _Labels(Mapping):
    """A read-only ``{path: class}`` map that, unlike ``MappingProxyType``, pickles (for worker processes)."""

    def __init__(self, items: Mapping[Path, str]):
        self._items = {Path(k): str(v) for k, v in items.items()}

    def __getitem__(self, key: Path) -> str:
        return self._items[Path(key)]

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"<{len(self._items)} labels>"


@dataclass(frozen=True)
class Domain:
    """The four splits of one painting<->photo pair, as sorted lists of image files.

    ``split_roots`` are the folders the four splits' files are named relative to (in the
    order of ``SPLIT_NAMES``); by default each split's common parent folder, which is the
    split folder itself for the flat layouts. ``labels`` maps every file to its class name
    for labelled domains (PACS) and is ``None`` otherwise.
    """

    artist: str
    root: Path
    layout: str  # "cyclegan", "subset" or "pacs"
    paintings_train: tuple[Path, ...]
    paintings_test: tuple[Path, ...]
    photos_train: tuple[Path, ...]
    photos_test: tuple[Path, ...]
    labels: Mapping[Path, str] | None = field(default=None, hash=False)
    split_roots: tuple[Path | None, ...] | None = None

    def __post_init__(self):
        for name in ("paintings_train", "paintings_test", "photos_train", "photos_test"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.split_roots is None:
            roots = tuple(_common_parent(files) for files in self._split_files())
        else:
            roots = tuple(None if r is None else Path(r) for r in self.split_roots)
            if len(roots) != len(SPLIT_NAMES):
                raise ValueError(f"split_roots needs {len(SPLIT_NAMES)} folders ({', '.join(SPLIT_NAMES)})")
        object.__setattr__(self, "split_roots", roots)
        if self.labels is not None and not isinstance(self.labels, _Labels):
            object.__setattr__(self, "labels", _Labels(self.labels))

    def _split_files(self) -> tuple[tuple[Path, ...], ...]:
        return self.paintings_train, self.paintings_test, self.photos_train, self.photos_test

    def splits(self) -> dict[str, tuple[Path | None, tuple[Path, ...]]]:
        """``{"paintings/train": (split folder, files), ...}`` in the order of ``SPLIT_NAMES``."""
        roots = self.split_roots or (None,) * len(SPLIT_NAMES)
        return {name: (roots[i], files) for i, (name, files) in enumerate(zip(SPLIT_NAMES, self._split_files()))}

    @functools.cached_property
    def _where(self) -> dict[Path, tuple[str, str]]:
        where: dict[Path, tuple[str, str]] = {}
        for name, (base, files) in self.splits().items():
            for p in files:
                where.setdefault(Path(p), (name, _relative_posix(p, base)))
        return where

    def _lookup(self, path: Path) -> tuple[str, str]:
        try:
            return self._where[Path(path)]
        except KeyError:
            raise ValueError(f"{path} is not a file of the {self.artist} domain at {self.root}") from None

    def relpath(self, path: Path) -> str:
        """The file's path relative to its split folder, posix style: ``0001.jpg``, PACS ``dog/pic_001.jpg``."""
        return self._lookup(path)[1]

    def split_of(self, path: Path) -> str:
        """Which split the file belongs to: one of ``SPLIT_NAMES``."""
        return self._lookup(path)[0]

    def label(self, path: Path) -> str | None:
        """The file's class name, or ``None`` for an unlabelled domain."""
        self._lookup(path)
        return None if self.labels is None else self.labels[Path(path)]

    @property
    def classes(self) -> tuple[str, ...]:
        """Sorted class names of a labelled domain; ``()`` otherwise."""
        return tuple(sorted(set(self.labels.values()))) if self.labels else ()


# --- layouts ------------------------------------------------------------------------------

def _fetch_hint(artist: str | None, dataset: str | None = None) -> str:
    name = dataset or (f"{artist}2photo" if artist else "NAME")
    return f"run `bench data fetch {name}`, or pass --data-root / set ARTSHIFT_DATA to a folder holding it"


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
                  and (p.is_file() or p.is_symlink()))  # a broken link is reported, not silently dropped


def _class_image_files(folder: Path) -> list[Path]:
    """Images one level down, in (non-hidden) class folders: ``<folder>/<class>/<file>``, sorted by relative path."""
    files: list[Path] = []
    for sub in sorted(folder.iterdir()):
        if sub.is_dir() and not sub.name.startswith("."):
            files += _image_files(sub)
    return files


def list_images(folder: Path, *, artist: str | None = None, what: str | None = None) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (hidden files ignored).

    ``what``: for a folder the user named (``--images``), what it must hold; the hints then say
    that instead of pointing at a dataset split and `bench data fetch`."""
    folder = Path(folder)
    kinds = ", ".join(sorted(IMAGE_EXTENSIONS))
    if not folder.is_dir():
        raise ArtshiftError(f"image folder {folder} does not exist",
                            hint=f"pass --images a folder holding {what} ({kinds})" if what else _fetch_hint(artist))
    files = _image_files(folder)
    if not files:
        if what:
            raise ArtshiftError(f"image folder {folder} holds no images ({kinds})",
                                hint=f"it must hold {what} as image files ({kinds}) directly inside it: "
                                     "subfolders and hidden files are not read")
        raise ArtshiftError(f"image folder {folder} holds no images ({kinds})",
                            hint="put the split's images there, or " + _fetch_hint(artist))
    return files


def _known_artists(root: Path | None, home: Path | None = None) -> set[str]:
    known = set(ARTISTS)
    try:
        known |= {m.artist for m in load_manifests(home).values()}
    except ManifestError:  # a broken shipped manifest must not stop local data from being used
        pass
    if root is not None and Path(root).is_dir():
        known |= {p.name[: -len("2photo")] for p in Path(root).glob("*2photo") if p.is_dir()}
        if (Path(root) / "paintings").is_dir():
            known |= {p.name for p in (Path(root) / "paintings").iterdir() if p.is_dir()}
    return known


def check_artist(artist: str, root: Path | None = None, home: Path | None = None) -> str:
    """Accept built-in artists, artists with a manifest (shipped or in ``home``) and folders under ``root``."""
    if artist in ARTISTS:
        return artist
    known = _known_artists(root, home)
    if artist not in known:

        raise ArtshiftError(f"unknown artist {artist!r} (known: {', '.join(sorted(known))})",
                            hint=did_you_mean(artist, known, otherwise="add a dataset manifest for it, or put its "
                                                                       "paintings under <data root>/paintings/<artist>"))
    return artist


def resolve_domain(artist: str, root: Path, *, home: Path | None = None) -> Domain:
    """Find the artist's splits under ``root`` in either layout, or explain how to get them.

    ``home`` only widens the artists accepted to those with a manifest in ``<home>/manifests``.
    """
    root = Path(root)
    check_artist(artist, root, home)
    labelled = _labelled_manifest(artist, home)
    if labelled is not None:
        return _resolve_labelled(artist, labelled, root)
    cyc = root / f"{artist}2photo"
    sub = root / "paintings" / artist
    if cyc.is_dir():
        splits = [cyc / s for s in ("trainA", "testA", "trainB", "testB")]
        layout = "cyclegan"
    elif sub.is_dir():
        splits = [sub / "train", sub / "test", root / "photos" / "train", root / "photos" / "test"]
        layout = "subset"
    else:
        raise MissingDataError(
            f"no data for {artist!r} under {root}: expected {cyc}/trainA... (CycleGAN layout) "
            f"or {sub}/train (subset layout)", hint=_fetch_hint(artist))
    lists = [tuple(list_images(s, artist=artist)) for s in splits]
    return Domain(artist, root, layout, lists[0], lists[1], lists[2], lists[3])


# --- labelled domains (PACS) --------------------------------------------------------------

def _labelled_manifest(artist: str, home: Path | None) -> Manifest | None:
    """The manifest of a labelled dataset (layout ``pacs``) whose artist is ``artist``, if any."""
    if artist in ARTISTS and artist != "pacs":
        return None
    try:
        manifests = load_manifests(home)
    except ManifestError:
        if artist == "pacs":
            raise
        return None  # a broken manifest must not stop local data of other artists from being used
    for m in manifests.values():
        if m.artist == artist and m.labelled:
            return m
    return None


def load_split_file(path: Path) -> dict[str, tuple[str, str]]:
    """Read a split CSV (columns ``path,class,split``) into ``{relative path: (class, split)}``.

    ``path`` is relative to the dataset folder (``art_painting/dog/pic_001.jpg``); its class
    folder must equal ``class`` and ``split`` is ``train`` or ``test``. Errors name the line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ArtshiftError(f"cannot read the split file {path} ({exc.strerror or exc})",
                            hint="it ships with artshift next to the dataset manifests; restore it from the "
                                 "repository or reinstall artshift") from None

    def bad(line: int, problem: str) -> ArtshiftError:
        return ArtshiftError(f"split file {path}, line {line}: {problem}",
                             hint="restore the file from the repository; it is written by data_manifests/make_pacs_split.py")

    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if header is None or tuple(header) != SPLIT_FILE_HEADER:
        raise bad(1, f"expected the header {','.join(SPLIT_FILE_HEADER)}, got {','.join(header or [])!r}")
    out: dict[str, tuple[str, str]] = {}
    for line, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != 3:
            raise bad(line, f"expected 3 columns, got {len(row)}")
        rel, label, split = row
        parts = PurePosixPath(rel).parts
        if len(parts) != 3 or rel.startswith("/") or ".." in parts or "\\" in rel:
            raise bad(line, f"path {rel!r} must be <domain>/<class>/<file>")
        if parts[1] != label:
            raise bad(line, f"class {label!r} is not the class folder of {rel!r}")
        if split not in ("train", "test"):
            raise bad(line, f"split {split!r} must be train or test")
        if rel in out:
            raise bad(line, f"{rel!r} is listed twice")
        out[rel] = (label, split)
    return out


def _split_table(m: Manifest) -> dict[str, tuple[str, str]]:
    if m.split_path is None:  # pragma: no cover - the manifest validation requires split_file
        raise ArtshiftError(f"{m.source}: the manifest names no split_file")
    return load_split_file(m.split_path)


def _split_differences(m: Manifest, folder: Path, table: Mapping[str, tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Files the split file lists but ``folder`` lacks, and image files in ``folder`` it does not list."""
    listed = {rel for rel in table if rel.split("/", 1)[0] in m.counts}
    on_disk = set()
    for domain in m.counts:
        dfolder = folder / domain
        if dfolder.is_dir():
            on_disk |= {f"{domain}/{p.parent.name}/{p.name}" for p in _class_image_files(dfolder)}
    return sorted(listed - on_disk), sorted(on_disk - listed)


def _differences_text(missing: list[str], extra: list[str], limit: int = 3) -> str:
    parts = []
    for what, items in (("listed in the split file but missing", missing), ("not in the split file", extra)):
        if items:
            shown = ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")
            parts.append(f"{len(items)} file(s) {what} ({shown})")
    return "; ".join(parts)


def _split_file_problems(m: Manifest, folder: Path) -> list[str]:
    """For verify/fetch: the labelled dataset in ``folder`` against the manifest's split file."""
    try:
        table = _split_table(m)
    except ArtshiftError as exc:
        return [str(exc).splitlines()[0]]
    missing, extra = _split_differences(m, folder, table)
    if missing or extra:
        return [f"{folder} differs from the split file {m.split_path}: {_differences_text(missing, extra)}"]
    return []


def _resolve_labelled(artist: str, m: Manifest, root: Path) -> Domain:
    folder = root / m.name
    if not folder.is_dir():
        raise MissingDataError(f"no data for {artist!r} under {root}: expected {folder}/"
                               + ", ".join(f"{d}/<class>/" for d in m.counts), hint=_fetch_hint(artist, m.name))
    for domain in m.counts:
        if not (folder / domain).is_dir():
            raise ArtshiftError(f"image folder {folder / domain} does not exist", hint=_fetch_hint(artist, m.name))
    table = _split_table(m)
    missing, extra = _split_differences(m, folder, table)
    if missing or extra:
        raise ArtshiftError(
            f"the {m.name} data at {folder} differs from its fixed train/test split {m.split_path}: "
            + _differences_text(missing, extra),
            hint=f"restore the missing files and remove the extra ones (or run `bench data fetch {m.name} --force` "
                 "to get the release again); the split is fixed so that numbers stay comparable, so do not "
                 "regenerate it for a changed copy")
    lists: dict[tuple[str, str], list[Path]] = {}
    labels: dict[Path, str] = {}
    for rel in sorted(table):
        domain = rel.split("/", 1)[0]
        if domain not in m.counts:
            continue
        label, split = table[rel]
        path = folder / rel
        lists.setdefault((m.split_role(domain)[0], split), []).append(path)
        labels[path] = label
    roles = {m.split_role(d)[0]: folder / d for d in m.counts}
    if set(roles) != {"paintings", "photos"}:  # pragma: no cover - guarded by LAYOUTS
        raise ArtshiftError(f"{m.source}: layout {m.layout!r} must have one paintings and one photos folder")
    for kind in ("paintings", "photos"):
        for split in ("train", "test"):
            if not lists.get((kind, split)):
                raise ArtshiftError(f"the split file {m.split_path} puts no {kind} of {folder} in {split}",
                                    hint="restore the split file from the repository")
    return Domain(artist, root, m.layout,
                  tuple(lists[("paintings", "train")]), tuple(lists[("paintings", "test")]),
                  tuple(lists[("photos", "train")]), tuple(lists[("photos", "test")]),
                  labels=labels, split_roots=(roles["paintings"], roles["paintings"], roles["photos"], roles["photos"]))


# --- image loading ------------------------------------------------------------------------

def _sniff(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for sig, fmt in _SIGNATURES:
        if head.startswith(sig):
            return fmt
    return None


def _strict_decoding() -> None:
    """Keep PIL reporting truncated files: another library may have switched that off globally."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        warnings.warn("PIL.ImageFile.LOAD_TRUNCATED_IMAGES had been switched on (by another module); artshift "
                      "switched it off so truncated images are reported instead of silently padded", stacklevel=3)


def _check_size(img: Image.Image, path: Path, min_side: int) -> None:
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise BadImageError(path, f"possible decompression bomb: the header declares {w}x{h} pixels, over the "
                                  f"{MAX_PIXELS:,}-pixel limit")
    if min(w, h) < min_side:
        raise BadImageError(path, f"the image is {w}x{h} pixels, smaller than the {min_side}-pixel minimum side "
                                  "(networks here pad by 3 pixels and downsample by 4)")


def _check_png_end(path: Path, size: int) -> None:
    """PIL stops reading after the last IDAT chunk, so a PNG cut inside its IEND chunk decodes 'fine'."""
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 4096))
        tail = fh.read()
    at = tail.rfind(b"IEND")
    if at < 0 or len(tail) - at - 4 < 4:
        raise BadImageError(path, f"truncated PNG file ({size:,} bytes): its IEND end chunk is missing or cut short")


def _describe_head(head: bytes) -> str:
    text = head[:12]
    printable = all(32 <= b < 127 or b in (9, 10, 13) for b in text)
    return f"it starts with {text!r}" + (", which looks like text" if printable else "")


def load_image(path: Path, *, min_side: int | None = None) -> Image.Image:
    """Open any common image as 8-bit RGB, or raise ``BadImageError`` naming the file and problem.

    ``min_side`` (default ``MIN_SIDE``): smaller images are refused; 1 accepts any size.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BadImageError(path, f"cannot read the file ({exc.strerror})") from None
    if not path.is_file():
        raise BadImageError(path, "not a regular file")
    if size == 0:
        raise BadImageError(path, "the file is empty (0 bytes)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise BadImageError(path, f"cannot read the file ({exc.strerror})") from None
    kind = _sniff(head)
    _strict_decoding()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=PIL_FORMATS) as img:
                _check_size(img, path, MIN_SIDE if min_side is None else min_side)
                img.load()
                if img.format == "PNG":
                    _check_png_end(path, size)
    except BadImageError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise BadImageError(path, f"possible decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        if kind is None:
            raise BadImageError(path, f"not an image file ({_describe_head(head)})") from None
        raise BadImageError(path, f"truncated or corrupt {kind} file ({size:,} bytes): PIL cannot read its header") \
            from None
    except OSError as exc:
        text = str(exc)
        if "truncated" in text.lower():
            raise BadImageError(path, f"truncated {kind or 'image'} file ({size:,} bytes): the data ends early "
                                      f"({text})") from None
        raise BadImageError(path, f"cannot decode the {kind or 'image'} data ({text})") from None
    except Exception as exc:  # corrupt files make decoders raise all sorts (SyntaxError, struct.error, ...)
        raise BadImageError(path, f"cannot decode the {kind or 'image'} data ({type(exc).__name__}: {exc})") \
            from None
    try:  # the pixels are in memory after load(), so the closed file does not matter here
        return to_rgb(img)
    except ValueError as exc:
        raise BadImageError(path, f"cannot convert colour mode {img.mode} to RGB ({exc})") from None


_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def to_rgb(img: Image.Image) -> Image.Image:
    """Grayscale, RGBA/LA (composited on white), palette, CMYK and 16-bit images -> 8-bit RGB.

    16-bit values are scaled by 255/65535 whatever the image's content: scaling by the
    image's own maximum (or clipping, which is what PIL's convert does) would make a dark
    16-bit photo look like a different picture. Transparent pixels become white rather than
    whatever colour happens to sit under alpha 0.
    """
    if img.mode == "RGB":
        return img.copy()
    if img.mode in _SIXTEEN_BIT:
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(np.floor(arr * (255.0 / 65535.0) + 0.5), 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":  # float TIFFs are usually in [0, 1]
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        scale = 255.0 if arr.size and arr.max() <= 1.0 else 1.0
        img = Image.fromarray(np.clip(np.floor(arr * scale + 0.5), 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    if img.mode in ("L", "1") and "transparency" in img.info:
        return to_rgb(img.convert("LA"))
    return img.convert("RGB")


def readable_images(paths: Iterable[Path], on_bad_image: str = "skip") -> tuple[list[Path], list[tuple[Path, str]]]:
    """Split ``paths`` into files that decode and (file, problem) pairs that do not.

    ``on_bad_image="error"`` raises the first ``BadImageError`` instead, so a run never
    silently evaluates on fewer images than the user thinks.
    """
    check_policy(on_bad_image)
    good: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for p in paths:
        try:
            load_image(p)
        except BadImageError as exc:
            if on_bad_image == "error":
                raise
            skipped.append((Path(p), exc.problem))
        else:
            good.append(Path(p))
    return good, skipped


def check_policy(on_bad_image: str) -> str:
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise ArtshiftError(f"unknown bad-image policy {on_bad_image!r}", hint=f"use one of {', '.join(BAD_IMAGE_POLICIES)}")
    return on_bad_image


def skipped_summary(skipped: Sequence[tuple[Path, str]], limit: int = 3) -> str:
    """One line for logs: how many files were skipped and why (first few)."""
    if not skipped:
        return "no bad images"
    shown = "; ".join(f"{p.name}: {why}" for p, why in skipped[:limit])
    more = f"; and {len(skipped) - limit} more" if len(skipped) > limit else ""
    return f"skipped {len(skipped)} bad image(s): {shown}{more}"


def load_images(paths: list[Path] | tuple[Path, ...], skip_bad: bool = False) -> tuple[list[Image.Image], list[Path]]:
    """Load many images; with ``skip_bad`` bad files are left out and returned as the second list."""
    images, skipped = [], []
    for p in paths:
        try:
            images.append(load_image(p))
        except BadImageError:
            if not skip_bad:
                raise
            skipped.append(Path(p))
    return images, skipped


def fingerprint(paths: Sequence[Path | str], base: Path | None = None) -> str:
    """Content hash of an image set (relative paths and bytes), independent of where it lives.

    Each file is keyed by its path relative to ``base`` (default: the files' common parent
    folder), so files of the same name in different class folders never collide. For the
    files of one flat folder that is the file name, and the hash is the one artshift has
    always computed for such a folder (cache keys and fingerprints of one folder stay valid);
    a set spanning several folders hashes differently from before. For a data set with
    train/test splits use ``split_fingerprint``.
    """
    if base is None:
        base = _common_parent(paths)
    keyed = sorted((_relative_posix(Path(p), base), str(p)) for p in paths)
    h = hashlib.sha256()
    for rel, p in keyed:
        h.update(rel.encode("utf-8", "surrogateescape"))  # file names need not be valid UTF-8
        h.update(b"\0")
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\1")
    return h.hexdigest()[:16]


def _file_sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.digest()


def _framed(text: str) -> bytes:
    data = text.encode("utf-8", "surrogateescape")
    return struct.pack(">Q", len(data)) + data


def split_fingerprint(splits: Domain | Mapping[str, tuple[Path | None, Sequence[Path]]]) -> str:
    """Content hash of a whole data set: every file's split, its path relative to its split folder and its bytes.

    ``splits`` is a ``Domain`` or ``{split name: (split folder, files)}`` (a ``None`` folder
    means the files' common parent). Moving a file between splits (or classes), renaming
    it or changing any byte changes the hash; where the data lives does not. Every field is
    length-prefixed, so no arrangement of names and bytes can imitate another.
    """
    if isinstance(splits, Domain):
        splits = splits.splits()
    h = hashlib.sha256(b"artshift-split-fingerprint-v1\0")
    for name in sorted(splits):
        base, files = splits[name]
        if base is None:
            base = _common_parent(files)
        keyed = sorted((_relative_posix(Path(p), base), Path(p)) for p in files)
        h.update(b"S" + _framed(name) + struct.pack(">Q", len(keyed)))
        for rel, p in keyed:
            h.update(b"F" + _framed(rel) + _file_sha256(p))
    return h.hexdigest()[:16]


# --- verify -------------------------------------------------------------------------------

@dataclass
class SplitReport:
    """One split folder against the manifest; unconfirmed counts only warn so a correct release is never refused."""

    split: str
    folder: Path
    role: str  # e.g. "paintings/train"
    expected: int
    found: int | None  # None: the folder is missing
    confirmed: bool  # the expected count is independently confirmed (a mismatch is an error)
    bad: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def count_ok(self) -> bool:
        return self.found == self.expected


@dataclass
class VerifyReport:
    """What ``bench data verify`` prints: data that verifies is ``ok``, everything found is listed."""

    name: str
    dataset_dir: Path
    present: bool
    splits: list[SplitReport] = field(default_factory=list)
    archive: Path | None = None  # the kept download, when there is one
    archive_sha256: str | None = None
    expected_sha256: str | None = None
    sha256_source: str = "none"  # "published", "pinned" or "none"
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = [f"{self.name} at {self.dataset_dir}: {'OK' if self.ok else 'PROBLEMS'}"]
        width = max([7] + [len(s.split) for s in self.splits])
        for s in self.splits:
            if s.found is None:
                state = "MISSING"
            elif s.count_ok:
                state = "ok"
            else:
                state = "MISMATCH" if s.confirmed else "differs (expected count not independently confirmed)"
            found = "-" if s.found is None else str(s.found)
            bad = f", {len(s.bad)} unreadable" if s.bad else ""
            out.append(f"  {s.split:<{width}} {s.role:<16} {found:>6} / {s.expected:<6} {state}{bad}")
        if self.expected_sha256:
            out.append(f"  sha256 ({self.sha256_source}): {self.expected_sha256}")
        if self.archive is not None:
            match = ("matches" if self.archive_sha256 == self.expected_sha256 else "DIFFERS") \
                if self.expected_sha256 else "not pinned yet"
            out.append(f"  archive {self.archive}: {match}")
        out += [f"  problem: {p}" for p in self.problems]
        out += [f"  warning: {w}" for w in self.warnings]
        return out


def _as_manifest(name: str | Manifest, home: Path) -> Manifest:
    return name if isinstance(name, Manifest) else get_manifest(name, home)


def archive_path(manifest: str | Manifest, home: Path) -> Path:
    """Where a downloaded archive is kept (so verify can re-check it and re-extraction needs no download)."""
    m = _as_manifest(manifest, home)
    return Path(home) / "downloads" / m.archive_name


def _count_splits(m: Manifest, folder: Path, check_images: bool, progress: bool) -> list[SplitReport]:
    from tqdm.auto import tqdm

    reports = []
    list_files = _class_image_files if m.labelled else _image_files
    for split, expected in m.counts.items():
        domain, part = m.split_role(split)
        sdir = folder / split
        files = list_files(sdir) if sdir.is_dir() else None
        rep = SplitReport(split, sdir, f"{domain}/{part}", expected, None if files is None else len(files),
                          split in m.counts_confirmed)
        if files and check_images:
            for p in tqdm(files, desc=f"check {split}", disable=not progress, leave=False):
                try:
                    load_image(p)
                except BadImageError as exc:
                    rep.bad.append((p, exc.problem))
        reports.append(rep)
    return reports


def _split_problems(splits: list[SplitReport]) -> tuple[list[str], list[str]]:
    problems, warns = [], []
    for s in splits:
        if s.found is None:
            problems.append(f"split folder {s.folder} is missing")
        elif s.found == 0:
            problems.append(f"split folder {s.folder} holds no images")
        elif not s.count_ok and s.confirmed:
            problems.append(f"{s.folder} holds {s.found} images, the manifest expects {s.expected}")
        elif not s.count_ok:
            warns.append(f"{s.folder} holds {s.found} images, the manifest expects {s.expected} (count not confirmed)")
        for p, why in s.bad:
            problems.append(f"unreadable image {p}: {why}")
    return problems, warns


def verify_dataset(name: str | Manifest, root: Path, home: Path, *, check_images: bool = True,
                   check_archive: bool = True, progress: bool = False) -> VerifyReport:
    """Compare a dataset on disk with its manifest; never raises for what it finds, only reports."""
    m = _as_manifest(name, home)
    folder = Path(root) / m.name
    expected, source = expected_sha256(m, home)
    rep = VerifyReport(m.name, folder, folder.is_dir(), expected_sha256=expected, sha256_source=source)
    if not rep.present:
        rep.problems.append(f"{folder} does not exist (run `bench data fetch {m.name}`)")
    else:
        rep.splits = _count_splits(m, folder, check_images, progress)
        rep.problems, rep.warnings = _split_problems(rep.splits)
        if m.labelled and all(s.found for s in rep.splits):
            rep.problems += _split_file_problems(m, folder)
        marker = _read_marker(folder)
        if marker and expected and marker.get("sha256") != expected:
            rep.problems.append(f"{folder} was extracted from an archive with sha256 {marker.get('sha256')}, "
                                f"not the {source} {expected} (run `bench data fetch {m.name} --force`)")
    zpath = archive_path(m, home)
    if check_archive and zpath.exists():
        rep.archive = zpath
        rep.archive_sha256 = sha256_file(zpath)
        if expected and rep.archive_sha256 != expected:
            rep.problems.append(f"archive {zpath} has sha256 {rep.archive_sha256}, not the {source} {expected}")
    if not expected:
        rep.warnings.append(f"no sha256 pinned for {m.lock_key} in {lock_path(home)} yet (pinned on first fetch)")
    return rep


def _read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --- fetch --------------------------------------------------------------------------------

def offline() -> bool:
    """``ARTSHIFT_OFFLINE=1`` forbids downloads (CI, air-gapped machines): fail at once, not after timeouts."""
    return os.environ.get("ARTSHIFT_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def _stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr)


def _how_to_fetch(m: Manifest) -> str:
    size = f" (~{m.size_mb} MB)" if m.size_mb else ""
    return (f"on a machine with internet access run `bench data fetch {m.name}`, or download {m.urls[0]}{size} "
            f"by hand and run `bench data fetch {m.name} --archive FILE`")


def _download_any(m: Manifest, dest: Path, expected: str | None, progress: bool,
                  log: Callable[[str], None]) -> tuple[str, str]:
    """Try the manifest's URLs in order; returns (sha256, url). Mirrors must serve the same bytes."""
    failures: list[str] = []
    checksum_failed = False
    for url in m.urls:
        try:
            log(f"downloading {url}")
            limit = int(m.size_mb * 1.25 * 2**20) if m.size_mb else None  # manifests give approximate sizes
            digest = download(url, dest, sha256=expected, progress=progress, what=f"{m.name} archive",
                              max_bytes=limit)
            if not zipfile.is_zipfile(dest):  # e.g. a sign-in or "too large to scan" HTML page (Google Drive)
                with open(dest, "rb") as fh:
                    head = fh.read(16)
                size = dest.stat().st_size
                dest.unlink(missing_ok=True)
                failures.append(f"{url}: served {size:,} bytes that are not a zip archive ({_describe_head(head)})")
                continue
            return digest, url
        except ChecksumError as exc:
            checksum_failed = True
            failures.append(f"{url}: {str(exc).splitlines()[0]}")
        except ArtshiftError as exc:
            failures.append(f"{url}: {str(exc).splitlines()[0]}")
    detail = "\n    ".join(failures)
    if checksum_failed:
        raise ChecksumError(f"no URL of {m.name} served an archive with the expected sha256 {expected}:\n    {detail}",
                            hint=f"the release may have changed upstream; the pin is in {dest.parent.parent / 'data.lock.json'}"
                                 " (delete its entry only if you trust the new file)")
    raise ArtshiftError(f"could not download {m.name}:\n    {detail}", hint=_how_to_fetch(m))


def _writable_root(root: Path) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtshiftError(f"cannot create the data root {root} ({exc.strerror})",
                            hint="pass --data-root (or set ARTSHIFT_DATA) to a writable folder") from None
    if not os.access(root, os.W_OK):
        raise ArtshiftError(f"the data root {root} is not writable",
                            hint="pass --data-root (or set ARTSHIFT_DATA) to a writable folder")
    return root


def fetch_dataset(name: str | Manifest, root: Path, home: Path, progress: bool = True, force: bool = False, *,
                  archive: Path | None = None, keep_archive: bool = True,
                  log: Callable[[str], None] | None = None) -> Path:
    """Download (or take ``archive``), check/pin the sha256, extract safely and verify; returns the dataset dir.

    A dataset already present with the expected counts is left alone unless ``force``. The
    old folder is replaced only after the new archive matched its checksum and extracted
    with the expected splits, so a failed fetch never loses data.
    """
    log = log or _stderr_log
    m = _as_manifest(name, home)
    root, home = Path(root), Path(home)
    target = root / m.name
    if not force and target.is_dir():
        rep = verify_dataset(m, root, home, check_images=False, check_archive=False)
        if rep.ok:
            log(f"{m.name} is already present at {target}")
            return target
        log(f"{target} is incomplete ({rep.problems[0]}); fetching it again")
    _writable_root(root)
    expected, source = expected_sha256(m, home)
    zpath = archive_path(m, home)

    if archive is not None:
        src = Path(archive)
        if not src.is_file():
            raise ArtshiftError(f"archive {src} does not exist")
        digest, url = sha256_file(src), src.resolve().as_uri()
        if expected and digest != expected:
            raise ChecksumError(f"checksum mismatch for {src}: sha256 {digest}, expected the {source} {expected}",
                                hint=f"this is not the {m.name} release that was pinned or published")
    elif zpath.is_file() and not force:
        src, digest, url = zpath, sha256_file(zpath), zpath.resolve().as_uri()
        if expected and digest != expected:
            raise ChecksumError(f"checksum mismatch for the kept archive {zpath}: sha256 {digest}, "
                                f"expected the {source} {expected}",
                                hint="delete it, or run with --force to download it again")
        log(f"using the kept archive {zpath}")
    else:
        if offline():
            raise ArtshiftError(f"{m.name} is not on disk and ARTSHIFT_OFFLINE is set, so it is not downloaded",
                                hint=_how_to_fetch(m) + " (or unset ARTSHIFT_OFFLINE)")
        digest, url = _download_any(m, zpath, expected, progress, log)
        src = zpath

    staging = root / f".{m.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        n = safe_extract(src, staging, strip=m.archive_root, progress=progress, log=log)
        splits = _count_splits(m, staging, check_images=False, progress=False)
        problems, warns = _split_problems(splits)
        if m.labelled and not problems:
            problems = _split_file_problems(m, staging)
        if problems:
            raise ArtshiftError(f"archive {src} (sha256 {digest}) does not hold the expected {m.name} data: "
                                + "; ".join(p.replace(str(staging), str(target)) for p in problems),
                                hint="check the manifest's archive_root and counts; the existing data was left alone")
        for w in warns:
            log("warning: " + w.replace(str(staging), str(target)))
        if source == "none":
            lock = pin_sha256(m, home, digest, url=url, size=src.stat().st_size)
            log(f"pinned sha256 {digest} of {m.archive_name} ({m.lock_key}) in {lock}: later downloads and "
                "`bench data verify` must match it")
        (staging / MARKER_NAME).write_text(json.dumps(
            {"name": m.name, "version": m.version, "sha256": digest, "url": url, "files": n}, indent=2) + "\n",
            encoding="utf-8")
        _swap_into_place(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if not keep_archive and src == zpath:
        zpath.unlink(missing_ok=True)
    log(f"{m.name}: {n} files extracted to {target}")
    return target


def _swap_into_place(staging: Path, target: Path) -> None:
    """Replace ``target`` by ``staging`` with two renames; the old copy is restored if the second fails."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def ensure_domain(artist: str, root: Path, home: Path, allow_download: bool = True, *, progress: bool = True,
                  log: Callable[[str], None] | None = None) -> Domain:
    """``resolve_domain``, fetching the artist's release first when it is not on disk at all.

    Nothing is downloaded with ``allow_download=False`` or ``ARTSHIFT_OFFLINE=1``; the error
    then is ``resolve_domain``'s, which says where the data was looked for and how to fetch it.
    """
    try:
        return resolve_domain(artist, root, home=home)
    except MissingDataError as missing:
        if not allow_download or offline():
            raise
        try:
            m = manifest_for_artist(artist, home)
        except ArtshiftError:
            raise missing from None
        try:
            fetch_dataset(m, root, home, progress=progress, log=log)
        except ArtshiftError as exc:
            first = str(missing).split("\n")[0]
            raise ArtshiftError(f"{first}; fetching {m.name} automatically failed: {str(exc).splitlines()[0]}",
                                hint=_how_to_fetch(m)) from None
        return resolve_domain(artist, root, home=home)


__all__ += ["LABELLED_LAYOUTS", "LAYOUTS", "check_artist", "check_policy", "skipped_summary", "pin_sha256", "expected_sha256"]
