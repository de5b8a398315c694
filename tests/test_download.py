"""benchmark.core.download against a local HTTP server: verified, resumable, fails fast offline."""

from __future__ import annotations

import hashlib
import time

import pytest
from helpers_data import FileServer

from benchmark.core.download import ChecksumError, download
from benchmark.core.errors import ArtshiftError

BODY = bytes(range(256)) * 12288 + b"tail"  # 3 MiB + 4 bytes: several 1 MiB download chunks
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def server():
    srv = FileServer()
    srv.files["/w.bin"] = BODY
    yield srv
    srv.stop()


def test_download_verifies_and_returns_full_sha(server, tmp_path):
    dest = tmp_path / "sub" / "w.bin"
    assert download(server.url("/w.bin"), dest, sha256=SHA, progress=False) == SHA
    assert dest.read_bytes() == BODY
    assert not dest.with_name("w.bin.part").exists()


def test_partial_file_is_resumed_with_range(server, tmp_path):
    dest = tmp_path / "w.bin"
    half = len(BODY) // 2 + 7
    dest.with_name("w.bin.part").write_bytes(BODY[:half])
    assert download(server.url("/w.bin"), dest, sha256_prefix=SHA[:8], progress=False) == SHA
    assert dest.read_bytes() == BODY
    assert server.requests == [("/w.bin", f"bytes={half}-")]


def test_complete_part_file_gets_416_and_is_used(server, tmp_path):
    dest = tmp_path / "w.bin"
    dest.with_name("w.bin.part").write_bytes(BODY)
    assert download(server.url("/w.bin"), dest, sha256=SHA, progress=False) == SHA
    assert dest.read_bytes() == BODY


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.ranges = False
    dest = tmp_path / "w.bin"
    dest.with_name("w.bin.part").write_bytes(b"garbage that must not stay in front")
    assert download(server.url("/w.bin"), dest, sha256=SHA, progress=False) == SHA
    assert dest.read_bytes() == BODY


def test_dropped_connection_keeps_part_then_resumes(server, tmp_path):
    dest = tmp_path / "w.bin"
    server.cut_once.add("/w.bin")
    with pytest.raises(ArtshiftError):
        download(server.url("/w.bin"), dest, sha256=SHA, progress=False)
    part = dest.with_name("w.bin.part")
    assert 0 < part.stat().st_size < len(BODY) and not dest.exists()
    assert download(server.url("/w.bin"), dest, sha256=SHA, progress=False) == SHA
    assert dest.read_bytes() == BODY
    assert server.requests[-1][1] is not None  # the second request asked for the rest only


@pytest.mark.parametrize("kw", [{"sha256": "0" * 64}, {"sha256_prefix": "ffffffff"}])
def test_checksum_mismatch_removes_everything(server, tmp_path, kw):
    if SHA.startswith("ffffffff"):
        pytest.skip("astronomically unlikely prefix collision")
    dest = tmp_path / "w.bin"
    with pytest.raises(ChecksumError, match="checksum mismatch") as err:
        download(server.url("/w.bin"), dest, progress=False, **kw)
    assert SHA in str(err.value)
    assert not dest.exists() and not dest.with_name("w.bin.part").exists()


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(ArtshiftError, match="HTTP 404"):
        download(server.url("/missing.bin"), tmp_path / "m.bin", progress=False)


def test_offline_fails_fast_with_instructions(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(ArtshiftError) as err:  # .invalid never resolves (RFC 6761)
        download("https://weights.example.invalid/w.pth", tmp_path / "w.pth", progress=False)
    assert time.monotonic() - t0 < 10
    assert "weights.example.invalid" in str(err.value) and "import" in str(err.value)
    assert not (tmp_path / "w.pth").exists()


# --- hardening (issue 10, fault 10) -------------------------------------------------------------

def test_plain_http_is_refused_without_a_published_sha256(tmp_path):
    with pytest.raises(ArtshiftError, match="plain http without a published sha256"):
        download("http://example.org/w.bin", tmp_path / "w.bin", sha256_prefix=SHA[:8], progress=False)
    with pytest.raises(ArtshiftError, match="unsupported URL scheme"):
        download("ftp://example.org/w.bin", tmp_path / "w.bin", progress=False)


def test_download_stops_at_the_expected_size(server, tmp_path):
    dest = tmp_path / "w.bin"
    with pytest.raises(ArtshiftError, match="exceeds the expected size"):
        download(server.url("/w.bin"), dest, sha256_prefix=SHA[:8], progress=False, max_bytes=len(BODY) - 1)
    assert not dest.exists() and not dest.with_name("w.bin.part").exists()


def test_a_206_from_another_offset_restarts_from_zero(server, tmp_path, monkeypatch):
    dest = tmp_path / "w.bin"
    dest.with_name("w.bin.part").write_bytes(BODY[:1000])
    real = server.RequestHandlerClass.do_GET

    def wrong_range(handler):  # answers the first Range request from byte 10, not the one asked for
        if handler.headers.get("Range") and not getattr(server, "_lied", False):
            server._lied = True
            handler.headers.replace_header("Range", "bytes=10-")
        return real(handler)

    monkeypatch.setattr(server.RequestHandlerClass, "do_GET", wrong_range)
    assert download(server.url("/w.bin"), dest, sha256=SHA, progress=False) == SHA
    assert dest.read_bytes() == BODY


def test_two_downloads_of_one_file_never_share_its_part_file(server, tmp_path):
    from benchmark.core.locks import RunLock

    dest = tmp_path / "w.bin"
    with RunLock(tmp_path / ".w.bin.lock"):
        with pytest.raises(ArtshiftError, match="the download of w.bin is in use"):
            download(server.url("/w.bin"), dest, sha256=SHA, progress=False)
    assert download(server.url("/w.bin"), dest, sha256=SHA, progress=False) == SHA
