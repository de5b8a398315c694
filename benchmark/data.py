"""Datasets on disk: layouts, image listing, robust image loading and content fingerprints.

Two local layouts are understood under a data root:
- CycleGAN release: ``<artist>2photo/{trainA,testA,trainB,testB}`` (A = paintings, B = photos)
- subset layout (``../shared/data``): ``paintings/<artist>/{train,test}``, ``photos/{train,test}``
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.errors import ArtshiftError

ARTISTS = ("monet", "cezanne", "vangogh", "ukiyoe")
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".gif"}
MAX_PIXELS = 8192 * 8192  # larger files are refused as possible decompression bombs


class BadImageError(ArtshiftError):
    """An image file that cannot be used (corrupt, truncated, empty, not an image, too large)."""

    def __init__(self, path: Path, problem: str):
        self.path = Path(path)
        super().__init__(f"bad image {path}: {problem}",
                         hint="replace or delete the file, or pass --on-bad-image skip to skip such files")


@dataclass(frozen=True)
class Domain:
    """The four splits of one painting<->photo pair, as sorted lists of image files."""

    artist: str
    root: Path
    layout: str  # "cyclegan" or "subset"
    paintings_train: tuple[Path, ...]
    paintings_test: tuple[Path, ...]
    photos_train: tuple[Path, ...]
    photos_test: tuple[Path, ...]


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (hidden files ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtshiftError(f"image folder {folder} does not exist",
                            hint="check the path, or fetch the dataset with `bench data fetch NAME`")
    files = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file())
    if not files:
        raise ArtshiftError(f"image folder {folder} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})",
                            hint="put the split's images there, or fetch the dataset with `bench data fetch NAME`")
    return files


def check_artist(artist: str) -> str:
    if artist not in ARTISTS:
        import difflib

        close = difflib.get_close_matches(artist, ARTISTS, n=1)
        raise ArtshiftError(f"unknown artist {artist!r} (known: {', '.join(ARTISTS)})",
                            hint=f"did you mean {close[0]!r}?" if close else None)
    return artist


def resolve_domain(artist: str, root: Path) -> Domain:
    """Find the artist's splits under ``root`` in either layout, or explain how to get them."""
    check_artist(artist)
    root = Path(root)
    cyc = root / f"{artist}2photo"
    sub = root / "paintings" / artist
    if cyc.is_dir():
        splits = [cyc / s for s in ("trainA", "testA", "trainB", "testB")]
        layout = "cyclegan"
    elif sub.is_dir():
        splits = [sub / "train", sub / "test", root / "photos" / "train", root / "photos" / "test"]
        layout = "subset"
    else:
        raise ArtshiftError(
            f"no data for {artist!r} under {root}: expected {cyc}/trainA... (CycleGAN layout) "
            f"or {sub}/train (subset layout)",
            hint=f"run `bench data fetch {artist}2photo`, or pass --data-root / set ARTSHIFT_DATA to a folder holding it")
    lists = [tuple(list_images(s)) for s in splits]
    return Domain(artist, root, layout, *lists)


def _check_size(img: Image.Image, path: Path) -> None:
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise BadImageError(path, f"{w}x{h} pixels is over the {MAX_PIXELS:,}-pixel limit (possible decompression bomb)")


def load_image(path: Path) -> Image.Image:
    """Open any common image as 8-bit RGB, or raise ``BadImageError`` naming the file and problem."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BadImageError(path, f"cannot read the file ({exc.strerror})") from None
    if size == 0:
        raise BadImageError(path, "the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _check_size(img, path)
                img.load()
                return to_rgb(img)
    except BadImageError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise BadImageError(path, f"possible decompression bomb ({exc})") from None
    except OSError as exc:
        text = str(exc)
        if "truncated" in text.lower() or "image file is truncated" in text:
            raise BadImageError(path, f"the file is truncated ({text})") from None
        if "cannot identify image file" in text:
            raise BadImageError(path, "not an image file PIL can read") from None
        raise BadImageError(path, f"cannot decode the image ({text})") from None
    except (ValueError, SyntaxError) as exc:
        raise BadImageError(path, f"cannot decode the image ({exc})") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Grayscale, RGBA (on white), palette, CMYK and 16-bit images -> 8-bit RGB."""
    if img.mode == "RGB":
        return img.copy()
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "I;16N"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr * (255.0 if arr.max() <= 1 else 1.0) + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB")


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


def fingerprint(paths: list[Path] | tuple[Path, ...]) -> str:
    """Content hash of an image set (names and bytes), independent of where it lives."""
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda q: Path(q).name):
        h.update(Path(p).name.encode())
        h.update(b"\0")
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\1")
    return h.hexdigest()[:16]
