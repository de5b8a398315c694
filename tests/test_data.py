"""Image loading on real-world files (modes, corrupt files), layouts, bad-image policy, fingerprints."""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers_data import make_cyclegan_tree, write_images
from PIL import Image, ImageFile

from benchmark import data
from benchmark.core.errors import ArtshiftError
from benchmark.data import (
    BadImageError,
    MissingDataError,
    fingerprint,
    list_images,
    load_image,
    load_images,
    readable_images,
    resolve_domain,
    skipped_summary,
)


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(load_image(path, min_side=1), dtype=np.int64)


def _white_composite(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float64)[..., None] / 255.0
    return np.floor(color.astype(np.float64) * a + 255.0 * (1.0 - a) + 0.5)


# --- colour modes -> RGB --------------------------------------------------------------------

def test_rgb_png_is_exact(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.png")
    img = load_image(tmp_path / "x.png", min_side=1)
    assert img.mode == "RGB" and img.size == (7, 5)
    np.testing.assert_array_equal(np.asarray(img), arr)


def test_grayscale_and_bilevel(tmp_path):
    g = np.arange(0, 256, 8, dtype=np.uint8).reshape(4, 8)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    np.testing.assert_array_equal(_rgb(tmp_path / "g.png"), np.repeat(g[..., None], 3, axis=2))
    b = np.array([[0, 255, 255, 0]], dtype=np.uint8)
    Image.fromarray(b, "L").convert("1").save(tmp_path / "b.png")
    np.testing.assert_array_equal(_rgb(tmp_path / "b.png")[..., 0], b)


def test_rgba_composited_on_white(tmp_path):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (6, 6, 4), dtype=np.uint8)
    rgba[0, 0, 3], rgba[0, 1, 3] = 0, 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = _rgb(tmp_path / "a.png")
    expected = _white_composite(rgba[..., :3], rgba[..., 3])
    assert np.abs(out - expected).max() <= 1
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])  # fully transparent -> white, not the hidden colour
    np.testing.assert_array_equal(out[0, 1], rgba[0, 1, :3])  # opaque -> unchanged


def test_la_composited_on_white(tmp_path):
    la = np.stack([np.full((3, 3), 40, np.uint8), np.array([[0, 128, 255]] * 3, np.uint8)], axis=-1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    out = _rgb(tmp_path / "la.png")
    expected = _white_composite(np.repeat(la[..., :1], 3, axis=2), la[..., 1])
    assert np.abs(out - expected).max() <= 1
    np.testing.assert_array_equal(out[:, 0], 255)
    np.testing.assert_array_equal(out[:, 2], 40)


def _palette_image(transparent_index: int | None) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    palette = np.array([[255, 0, 0], [0, 128, 255], [10, 20, 30], [200, 200, 0]], dtype=np.uint8)
    idx = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], dtype=np.uint8)
    img = Image.fromarray(idx, "P")
    img.putpalette(palette.flatten().tolist() + [0] * (768 - palette.size))
    if transparent_index is not None:
        img.info["transparency"] = transparent_index
    return img, idx, palette


@pytest.mark.parametrize("ext", [".png", ".gif"])
def test_palette_without_transparency(tmp_path, ext):
    img, idx, palette = _palette_image(None)
    img.save(tmp_path / f"p{ext}")
    np.testing.assert_array_equal(_rgb(tmp_path / f"p{ext}"), palette[idx])


def test_palette_with_transparency(tmp_path):
    img, idx, palette = _palette_image(2)
    img.save(tmp_path / "pt.png", transparency=2)
    assert Image.open(tmp_path / "pt.png").info.get("transparency") is not None
    expected = palette[idx].astype(np.int64)
    expected[idx == 2] = 255
    np.testing.assert_array_equal(_rgb(tmp_path / "pt.png"), expected)


def test_cmyk(tmp_path):
    # channels where the additive and multiplicative CMYK formulas agree (one of C/K is 0)
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 100, 200, 0], [0, 0, 0, 100], [0, 0, 0, 255]]], np.uint8)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.tif")
    expected = np.array([[[255, 255, 255], [0, 255, 255], [255, 155, 55], [155, 155, 155], [0, 0, 0]]])
    np.testing.assert_array_equal(_rgb(tmp_path / "c.tif"), expected)


def test_cmyk_jpeg_decodes(tmp_path):
    Image.fromarray(np.zeros((8, 8, 4), np.uint8), "CMYK").save(tmp_path / "c.jpg", quality=95)
    out = _rgb(tmp_path / "c.jpg")
    assert out.shape == (8, 8, 3) and out.min() >= 250  # C=M=Y=K=0 is white


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_sixteen_bit_is_scaled_not_clipped(tmp_path, ext):
    vals = np.array([[0, 200, 2570, 32896, 65534, 65535]], dtype=np.uint16)  # a dark image whose max <= 255 too
    Image.fromarray(vals).save(tmp_path / f"g{ext}")
    assert Image.open(tmp_path / f"g{ext}").mode.startswith("I")
    expected = np.floor(vals.astype(np.float64) * 255.0 / 65535.0 + 0.5)
    out = _rgb(tmp_path / f"g{ext}")
    np.testing.assert_array_equal(out[..., 0], expected)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    dark = np.full((2, 2), 200, np.uint16)  # content-dependent scaling would turn this to 255
    Image.fromarray(dark).save(tmp_path / f"d{ext}")
    np.testing.assert_array_equal(_rgb(tmp_path / f"d{ext}"), 1)


@pytest.mark.parametrize("alpha", [False, True])
def test_sixteen_bit_colour_png(tmp_path, alpha):
    rgb = np.array([[[0, 25700, 65535], [32896, 1000, 65280]]], dtype=np.uint16)
    a = np.array([[[65535], [0]]], dtype=np.uint16)
    px = np.concatenate([rgb, a], axis=2) if alpha else rgb
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in px)
    ihdr = struct.pack(">IIBBBBB", 2, 1, 16, 6 if alpha else 2, 0, 0, 0)
    (tmp_path / "c16.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw))
                                       + _chunk(b"IEND", b""))
    expected = rgb.astype(np.float64) * 255.0 / 65535.0
    if alpha:
        expected[0, 1] = 255.0  # second pixel fully transparent
    assert np.abs(_rgb(tmp_path / "c16.png") - expected).max() <= 1


def test_float_tiff(tmp_path):
    f = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    Image.fromarray(f, "F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(_rgb(tmp_path / "f.tif")[..., 1], [[0, 128, 255]])


def test_jpeg_close_to_source(tmp_path):
    arr = np.full((16, 16, 3), (30, 140, 220), np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.jpg", quality=95)
    assert np.abs(_rgb(tmp_path / "x.jpg") - arr).max() <= 3


# --- bad files: each gets its own message naming the file ------------------------------------

def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _bomb_png(width: int, height: int) -> bytes:
    """A valid-looking PNG header declaring a huge image, with a few bytes of data: costs nothing to make."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _chunk(b"IEND", b""))


_NOISE = np.random.default_rng(7).integers(0, 256, (48, 48, 3), dtype=np.uint8)
_JPG, _PNG = _jpeg(_NOISE), _png(_NOISE)


@pytest.mark.parametrize("name, content, fragments", [
    ("empty.jpg", b"", ["empty (0 bytes)"]),
    ("notes.jpg", b"hello, this is a text file\n", ["not an image file", "looks like text"]),
    ("eps.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", ["not an image file"]),
    ("half.jpg", _JPG[: len(_JPG) // 2], ["truncated JPEG file", "ends early"]),
    ("no_eoi.jpg", _JPG[:-2], ["truncated JPEG file"]),
    ("header.jpg", _JPG[:40], ["truncated JPEG file"]),
    ("half.png", _PNG[: len(_PNG) // 2], ["truncated PNG file", "ends early"]),
    ("no_iend.png", _PNG[:-12], ["truncated PNG file", "IEND"]),
    ("cut_iend.png", _PNG[:-2], ["truncated PNG file", "IEND"]),
    ("header.png", _PNG[:20], ["truncated PNG file"]),
    ("signature.png", _PNG[:10], ["truncated or corrupt PNG file", "header"]),
    ("corrupt.png", _PNG[:60] + bytes(b ^ 0x5A for b in _PNG[60:200]) + _PNG[200:], ["PNG"]),
    ("bomb.png", _bomb_png(100_000, 100_000), ["decompression bomb"]),
    ("bomb2.png", _bomb_png(9000, 9000), ["decompression bomb", "9000x9000"]),
])
def test_bad_image_messages(tmp_path, name, content, fragments):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadImageError) as info:
        load_image(path)
    msg = str(info.value)
    assert str(path) in msg and info.value.path == path
    for frag in fragments:
        assert frag in msg, (frag, msg)
    assert "--on-bad-image skip" in msg  # the hint says how to go on


def test_pixel_limit_is_a_module_setting(tmp_path, monkeypatch):
    Image.fromarray(_NOISE[:20, :20]).save(tmp_path / "x.png")
    load_image(tmp_path / "x.png")
    monkeypatch.setattr(data, "MAX_PIXELS", 100)
    with pytest.raises(BadImageError, match=r"decompression bomb.*20x20.*100-pixel"):
        load_image(tmp_path / "x.png")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(BadImageError, match="cannot read the file"):
        load_image(tmp_path / "nope.jpg")
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(BadImageError, match="not a regular file"):
        load_image(tmp_path / "dir.jpg")


def test_truncation_detected_even_if_another_module_enables_lenient_loading(tmp_path, monkeypatch):
    (tmp_path / "t.jpg").write_bytes(_JPG[: len(_JPG) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.warns(UserWarning, match="LOAD_TRUNCATED_IMAGES"):
        with pytest.raises(BadImageError, match="truncated JPEG"):
            load_image(tmp_path / "t.jpg")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_bad_image_policy(tmp_path):
    good = write_images(tmp_path, 3)
    (tmp_path / "z_empty.jpg").write_bytes(b"")
    (tmp_path / "z_text.jpg").write_text("not an image")
    paths = list_images(tmp_path)
    assert len(paths) == 5
    ok, skipped = readable_images(paths, on_bad_image="skip")
    assert ok == good
    assert [(p.name, "empty" in why or "not an image" in why) for p, why in skipped] == \
        [("z_empty.jpg", True), ("z_text.jpg", True)]
    assert skipped_summary(skipped).startswith("skipped 2 bad image(s): z_empty.jpg: the file is empty")
    with pytest.raises(BadImageError, match="z_empty.jpg"):
        readable_images(paths, on_bad_image="error")
    with pytest.raises(ArtshiftError, match="bad-image policy"):
        readable_images(paths, on_bad_image="ignore")
    images, skipped_paths = load_images(paths, skip_bad=True)
    assert len(images) == 3 and [p.name for p in skipped_paths] == ["z_empty.jpg", "z_text.jpg"]
    with pytest.raises(BadImageError):
        load_images(paths)


# --- layouts ---------------------------------------------------------------------------------

COUNTS = {"trainA": 3, "testA": 2, "trainB": 4, "testB": 2}


def test_cyclegan_layout(tmp_path):
    make_cyclegan_tree(tmp_path, "monet2photo", COUNTS)
    (tmp_path / "monet2photo" / "trainA" / ".hidden.jpg").write_bytes(b"x")
    (tmp_path / "monet2photo" / "trainA" / "notes.txt").write_text("x")
    d = resolve_domain("monet", tmp_path)
    assert d.layout == "cyclegan" and d.artist == "monet"
    assert [len(d.paintings_train), len(d.paintings_test), len(d.photos_train), len(d.photos_test)] == [3, 2, 4, 2]
    assert list(d.paintings_train) == sorted(d.paintings_train)
    assert all(p.parent.name == "trainB" for p in d.photos_train)


def test_subset_layout_and_precedence(tmp_path):
    write_images(tmp_path / "paintings" / "monet" / "train", 2)
    write_images(tmp_path / "paintings" / "monet" / "test", 1, ext=".png")
    write_images(tmp_path / "photos" / "train", 3)
    write_images(tmp_path / "photos" / "test", 2)
    d = resolve_domain("monet", tmp_path)
    assert d.layout == "subset"
    assert [len(d.paintings_train), len(d.paintings_test), len(d.photos_train), len(d.photos_test)] == [2, 1, 3, 2]
    make_cyclegan_tree(tmp_path, "monet2photo", COUNTS)
    assert resolve_domain("monet", tmp_path).layout == "cyclegan"


def test_artist_known_only_from_the_data_root(tmp_path):
    write_images(tmp_path / "paintings" / "rembrandt" / "train", 1)
    write_images(tmp_path / "paintings" / "rembrandt" / "test", 1)
    write_images(tmp_path / "photos" / "train", 1)
    write_images(tmp_path / "photos" / "test", 1)
    assert resolve_domain("rembrandt", tmp_path).layout == "subset"


def test_missing_data_says_where_and_how(tmp_path):
    with pytest.raises(MissingDataError) as info:
        resolve_domain("cezanne", tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "cezanne2photo") in msg and str(tmp_path / "paintings" / "cezanne") in msg
    assert "bench data fetch cezanne2photo" in msg


def test_missing_or_empty_split_names_the_folder(tmp_path):
    make_cyclegan_tree(tmp_path, "monet2photo", COUNTS)
    shutil.rmtree(tmp_path / "monet2photo" / "testB")
    with pytest.raises(ArtshiftError, match=r"testB does not exist[\s\S]*bench data fetch monet2photo"):
        resolve_domain("monet", tmp_path)
    (tmp_path / "monet2photo" / "testB").mkdir()
    (tmp_path / "monet2photo" / "testB" / "readme.txt").write_text("x")
    with pytest.raises(ArtshiftError, match=r"testB holds no images[\s\S]*bench data fetch monet2photo"):
        resolve_domain("monet", tmp_path)


def test_unknown_artist_did_you_mean(tmp_path):
    with pytest.raises(ArtshiftError, match=r"unknown artist 'monnet'[\s\S]*did you mean 'monet'"):
        resolve_domain("monnet", tmp_path)


REAL_COUNTS = {"monet": (240, 60), "cezanne": (24, 10), "vangogh": (159, 40)}


@pytest.mark.parametrize("artist", sorted(REAL_COUNTS))
def test_real_subset_resolves_with_documented_counts(shared_data, artist):
    d = resolve_domain(artist, shared_data)
    assert d.layout == "subset"
    assert (len(d.paintings_train), len(d.paintings_test)) == REAL_COUNTS[artist]
    assert (len(d.photos_train), len(d.photos_test)) == (2400, 402)
    assert not set(d.paintings_train) & set(d.paintings_test)
    for p in (d.paintings_train[0], d.paintings_test[-1], d.photos_test[0]):
        img = load_image(p)
        assert img.mode == "RGB" and img.size == (256, 256)


def test_real_subset_missing_artist(shared_data):
    with pytest.raises(MissingDataError, match="bench data fetch ukiyoe2photo"):
        resolve_domain("ukiyoe", shared_data)


# --- fingerprint -----------------------------------------------------------------------------

def test_fingerprint_tracks_content_not_location(tmp_path):
    a = write_images(tmp_path / "a", 4)
    b_dir = tmp_path / "b"
    shutil.copytree(tmp_path / "a", b_dir)
    b = sorted(b_dir.iterdir())
    fa = fingerprint(a)
    assert fa == fingerprint(b) == fingerprint(list(reversed(b)))
    raw = bytearray(b[2].read_bytes())
    raw[len(raw) // 2] ^= 0x01
    b[2].write_bytes(bytes(raw))
    assert fingerprint(b) != fa
    b[2].write_bytes(a[2].read_bytes())
    assert fingerprint(b) == fa
    b[3].rename(b_dir / "renamed.jpg")
    assert fingerprint(sorted(b_dir.iterdir())) != fa
    assert fingerprint(a[:3]) != fa
