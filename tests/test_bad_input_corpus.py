"""The bad-input corpus, through the real CLI in a subprocess: every case gets its specific
one-line error (exit 2, no traceback) or its documented skip, nothing is recorded as done
without its metrics, and the input data tree is left byte-identical.

Every file is built here (never downloaded). Cases that need other privileges (read-only or full
output folders) run the child without root via ``setpriv`` or inject the OS error.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers_methods import write_set
from PIL import Image

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(os.fsencode(p.relative_to(root)))
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpus")
    root = base / "data"
    for split, seed in (("paintings/monet/train", 0), ("paintings/monet/test", 1), ("photos/train", 2),
                        ("photos/test", 3)):
        write_set(root / split, 4, seed)
    home = base / "home"
    return {"root": root, "home": home, "base": base,
            "env": {**os.environ, "ARTSHIFT_HOME": str(home), "ARTSHIFT_WEIGHTS": str(home / "weights"),
                    "ARTSHIFT_DATA": str(root), "ARTSHIFT_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
                    "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}}


def bench(env, *args, ok=False):
    res = subprocess.run([sys.executable, "-m", "benchmark.cli", *map(str, args)], capture_output=True, text=True,
                         env=env["env"], timeout=600, cwd=REPO, errors="replace")
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    if ok:
        assert res.returncode == 0, res.stderr[-3000:]
    else:
        assert res.returncode == 2, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    return res


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels, with (almost) no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + chunk(b"IEND", b""))


def _good(path: Path, size=24, value=90) -> Path:
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)
    return path


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


BAD_IMAGES = {
    # name: (file name, maker(path), needle in the error)
    "truncated jpeg": ("a.jpg", lambda p: p.write_bytes(_jpeg_bytes()[:400]), "truncated"),
    "zero-byte file": ("b.png", lambda p: p.write_bytes(b""), "empty (0 bytes)"),
    "text named .jpg": ("c.jpg", lambda p: p.write_text("hello, not a picture\n"), "not an image file"),
    "1x1 image": ("d.png", lambda p: Image.new("RGB", (1, 1)).save(p), "smaller than"),
    "decompression bomb (header only)": ("e.png", lambda p: p.write_bytes(_png_header_only(100_000, 100_000)),
                                         "decompression bomb"),
    "symlink loop": ("f.png", lambda p: p.symlink_to(p), "cannot read"),
    "dangling symlink": ("g.png", lambda p: p.symlink_to(p.with_name("missing.png")), "cannot read"),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_image_in_an_evaluated_folder(case, env, tmp_path):
    name, make, needle = BAD_IMAGES[case]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        _good(folder / f"ok{i}.png", value=60 * i + 20)
    make(folder / name)
    before = _tree_digest(env["root"])
    res = bench(env, "eval", "--images", folder, "--artist", "monet", "--name", "x", "--quiet")
    assert needle in res.stderr and name in res.stderr, res.stderr
    res = bench(env, "eval", "--images", folder, "--artist", "monet", "--name", "x", "--quiet",
                "--on-bad-image", "skip", ok=True)
    assert "skipped 1 bad images" in res.stderr and name in res.stderr
    assert _tree_digest(env["root"]) == before


def test_a_non_utf8_file_name_is_evaluated_and_printed(env, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        _good(folder / f"ok{i}.png", value=50 * i + 30)
    odd = os.fsdecode(bytes(folder) + b"/caf\xe9.png")  # latin-1 byte, invalid UTF-8
    _good(Path(odd), value=200)
    res = bench(env, "eval", "--images", folder, "--artist", "monet", "--name", "odd", "--quiet", ok=True)
    assert "n fake" in res.stdout and "3 " in res.stdout


@pytest.mark.parametrize("args,needle", [
    (["run", "--method", "cyclegn", "--artist", "monet"], "did you mean 'cyclegan'"),
    (["run", "--method", "cyclegan", "--artist", "monnet"], "did you mean 'monet'"),
    (["run", "--method", "cyclegan", "--artist", "monet", "--set", "lr"], "key=value"),
    (["run", "--method", "cyclegan", "--artist", "monet", "--set", "lr=fast"], "cannot read this as float"),
    (["run", "--method", "cyclegan", "--artist", "monet", "--set", "checkpoint_every=0"], "is outside"),
    (["eval", "--run", "0123456789ab"], "no run '0123456789ab'"),
    (["translate", "--run", "0123456789ab", "--images", ".", "--out", "/tmp/x"], "no run '0123456789ab'"),
    (["weights", "fetch", "fid-inceptoin"], "did you mean 'fid-inception'"),
    (["data", "fetch", "monet2phot"], "did you mean 'monet2photo'"),
])
def test_unknown_names_and_malformed_options(args, needle, env):
    res = bench(env, *args)
    assert needle in res.stderr


def test_an_empty_split_folder_is_named(env, tmp_path):
    root = tmp_path / "data"
    for split, n in (("paintings/monet/train", 2), ("paintings/monet/test", 2), ("photos/train", 2),
                     ("photos/test", 0)):
        (root / split).mkdir(parents=True)
        write_set(root / split, n, 0) if n else None
    res = bench(env, "run", "--method", "original", "--artist", "monet", "--profile", "ci", "--data-root", root)
    assert "holds no images" in res.stderr and str(root / "photos" / "test") in res.stderr


def test_a_weights_file_with_the_wrong_sha256_is_refused(env, tmp_path):
    bogus = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    bogus.write_bytes(b"not the FID network")
    res = bench(env, "weights", "import", "fid-inception", bogus)
    assert "checksum mismatch" in res.stderr and "6726825d" in res.stderr
    assert not list((env["home"] / "weights").glob("pt_inception*"))


def _manifest(env, name, sha256=""):
    folder = env["home"] / "manifests"
    folder.mkdir(parents=True, exist_ok=True)
    pin = 'pin = "published"' if sha256 else 'pin = "first-download"'
    (folder / f"{name}.toml").write_text(f'''name = "{name}"
version = "1"
artist = "{name}"
urls = ["https://example.org/{name}.zip"]
layout = "cyclegan"
sha256 = "{sha256}"
{pin}
licence = "test"
[counts]
trainA = 1
testA = 1
trainB = 1
testB = 1
''')


def test_an_archive_with_the_wrong_checksum_is_refused(env, tmp_path):
    _manifest(env, "corpusa", sha256="0" * 64)
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("corpusa/trainA/x.txt", "x")
    res = bench(env, "data", "fetch", "corpusa", "--archive", z, "--data-root", tmp_path / "root")
    assert "checksum mismatch" in res.stderr
    assert not (tmp_path / "root" / "corpusa").exists()


def test_a_zip_with_a_parent_directory_entry_is_refused(env, tmp_path):
    _manifest(env, "corpusb")
    z = tmp_path / "b.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("corpusb/trainA/ok.png", b"x")
        zf.writestr("../escaped.txt", "gotcha")
    res = bench(env, "data", "fetch", "corpusb", "--archive", z, "--data-root", tmp_path / "root")
    assert ".." in res.stderr
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "root" / "corpusb").exists()


def test_a_checkpoint_from_another_method_is_refused(env):
    bench(env, "run", "--method", "cut", "--artist", "monet", "--profile", "ci", "--quiet", ok=True)
    cut_ckpt = next((env["home"] / "runs" / "cut" / "monet").glob("*/checkpoints/last.pt"))
    bench(env, "run", "--method", "cyclegan", "--artist", "monet", "--profile", "ci", "--quiet",
          "--set", "n_epochs=2", ok=True)
    # a cyclegan run whose checkpoint folder holds cut's weights (a copied or mixed-up run folder)
    run_dir = next(p for p in (env["home"] / "runs" / "cyclegan" / "monet").iterdir() if p.is_dir())
    (run_dir / "DONE").unlink()
    (run_dir / "checkpoints" / "last.pt").write_bytes(cut_ckpt.read_bytes())
    res = bench(env, "run", "--method", "cyclegan", "--artist", "monet", "--profile", "ci", "--quiet",
                "--set", "n_epochs=2")
    assert "was written by cut, not cyclegan" in res.stderr


# --- the machine fails, not the input: a full disk, a folder the user cannot write, a NaN loss ---
# Tests run as root, which ignores permissions, and the unprivileged user cannot reach this
# machine's Python: so the child injects the OS error where the real one would surface.

INJECT = '''
import errno, os, pathlib, sys
import torch
import torch.nn.functional as F
kind, home = sys.argv[1], sys.argv[2]
if kind == "disk-full":  # every checkpoint write fails as on a full disk
    real_save = torch.save
    def save(obj, f, *a, **k):
        if "checkpoints" in str(f):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return real_save(obj, f, *a, **k)
    torch.save = save
    real_write_bytes = pathlib.Path.write_bytes  # checkpoints are serialised in memory, then written
    def write_bytes(self, data):
        if "checkpoints" in str(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write_bytes(self, data)
    pathlib.Path.write_bytes = write_bytes
elif kind == "read-only":  # the runs folder cannot be created, as in a folder without write permission
    real_mkdir = pathlib.Path.mkdir
    def mkdir(self, *a, **k):
        if str(self).startswith(os.path.join(home, "runs")):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_mkdir(self, *a, **k)
    pathlib.Path.mkdir = mkdir
elif kind == "nan-loss":  # the cycle loss turns NaN, as after a divergent step
    real_l1 = F.l1_loss
    F.l1_loss = lambda a, b, *x, **k: real_l1(a, b, *x, **k) * float("nan")
sys.argv = ["bench", *sys.argv[3:]]
from benchmark.cli import main
main()
'''


@pytest.mark.parametrize("kind, needle", [("disk-full", "No space left on device"),
                                          ("read-only", "Permission denied"),
                                          ("nan-loss", "non-finite loss")])
def test_a_full_disk_a_read_only_folder_and_a_nan_loss_are_one_line_errors(kind, needle, env, tmp_path):
    from benchmark.core.store import Store

    home = tmp_path / "home"
    before = _tree_digest(env["root"])
    args = ["run", "--method", "cyclegan", "--artist", "monet", "--profile", "ci", "--quiet", "--home", home]
    res = subprocess.run([sys.executable, "-c", INJECT, kind, str(home), *map(str, args)], capture_output=True,
                         text=True, env=env["env"], timeout=600, cwd=REPO, errors="replace")
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    error = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and needle in error[0], res.stderr[-2000:]
    assert not list(home.rglob("DONE")) and not list(home.rglob(".*.tmp"))  # nothing done, no temp file left
    if (home / "results.sqlite").exists():
        runs = Store(home / "results.sqlite", read_only=True).results()
        assert runs.empty  # no metric row of a run that did not finish
    assert _tree_digest(env["root"]) == before
