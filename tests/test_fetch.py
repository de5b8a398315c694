"""Fetch -> pin -> extract -> verify against a local HTTP server; zip slip; resume; manifests."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import stat
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers_data import FileServer, make_cyclegan_tree, make_zip

from benchmark.core.download import ChecksumError
from benchmark.core.errors import ArtshiftError
from benchmark.data import (
    Manifest,
    ManifestError,
    MissingDataError,
    archive_path,
    ensure_domain,
    fetch_dataset,
    fingerprint,
    get_manifest,
    load_manifests,
    lock_path,
    manifest_for_artist,
    pinned_sha256,
    verify_dataset,
)
from benchmark.data.archive import UnsafeArchiveError, safe_extract

NAME = "tinyart2photo"
COUNTS = {"trainA": 3, "testA": 2, "trainB": 4, "testB": 2}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv = FileServer()
    yield srv
    srv.stop()


def _manifest(urls, counts=COUNTS, confirmed=tuple(COUNTS), **kw) -> Manifest:
    return Manifest(name=NAME, version="t1", artist="tinyart", urls=tuple(urls), counts=counts,
                    counts_confirmed=confirmed, **kw)


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def served(server):
    """A served CycleGAN-layout zip and a manifest pointing at it."""
    body = make_zip(NAME, COUNTS, seed=1)
    server.files["/" + NAME + ".zip"] = body
    return server, body, _manifest([server.url("/" + NAME + ".zip")])


def test_fetch_pins_extracts_and_verifies(served, tmp_path, home):
    server, body, m = served
    root, logs = tmp_path / "data", []
    out = fetch_dataset(m, root, home, progress=False, log=logs.append)
    assert out == root / NAME
    for split, n in COUNTS.items():
        assert len(list((out / split).glob("*.jpg"))) == n
    lock = json.loads(lock_path(home).read_text())
    assert lock["datasets"][f"{NAME}@t1"]["sha256"] == _sha(body) == pinned_sha256(m, home)
    assert any("pinned sha256 " + _sha(body) in line for line in logs)
    assert archive_path(m, home).read_bytes() == body
    rep = verify_dataset(m, root, home)
    assert rep.ok, rep.lines()
    assert rep.archive_sha256 == rep.expected_sha256 == _sha(body) and rep.sha256_source == "pinned"
    text = "\n".join(rep.lines())
    assert "OK" in text and "matches" in text and "trainA" in text

    # present and verified: a second fetch is a no-op without any request
    n_requests = len(server.requests)
    assert fetch_dataset(m, root, home, progress=False, log=logs.append) == out
    assert len(server.requests) == n_requests and "already present" in logs[-1]


def test_changed_upstream_archive_is_refused_and_nothing_is_lost(served, tmp_path, home):
    server, body, m = served
    root = tmp_path / "data"
    out = fetch_dataset(m, root, home, progress=False, log=lambda s: None)
    before_tree, before_lock = _tree(out), lock_path(home).read_text()
    server.files["/" + NAME + ".zip"] = make_zip(NAME, COUNTS, seed=2)  # same layout, other bytes
    with pytest.raises(ChecksumError, match=_sha(body)):
        fetch_dataset(m, root, home, progress=False, force=True, log=lambda s: None)
    assert _tree(out) == before_tree
    assert lock_path(home).read_text() == before_lock
    assert archive_path(m, home).read_bytes() == body
    assert not list(archive_path(m, home).parent.glob("*.part"))
    assert sorted(p.name for p in root.iterdir()) == [NAME]  # no staging folders left behind


def test_tampered_kept_archive_is_reported(served, tmp_path, home):
    _, body, m = served
    root = tmp_path / "data"
    fetch_dataset(m, root, home, progress=False, log=lambda s: None)
    archive_path(m, home).write_bytes(body[:-1] + bytes([body[-1] ^ 1]))
    rep = verify_dataset(m, root, home)
    assert not rep.ok and any("not the pinned" in p for p in rep.problems)
    assert any("DIFFERS" in line for line in rep.lines())
    # a missing dataset is re-extracted from the kept archive only if it still matches the pin
    import shutil

    shutil.rmtree(root / NAME)
    with pytest.raises(ChecksumError, match="kept archive"):
        fetch_dataset(m, root, home, progress=False, log=lambda s: None)


def test_verify_reports_counts_and_unreadable_images(served, tmp_path, home):
    _, _, m = served
    root = tmp_path / "data"
    out = fetch_dataset(m, root, home, progress=False, log=lambda s: None)
    next(iter(sorted((out / "testB").glob("*.jpg")))).unlink()
    (out / "trainA" / "0000.jpg").write_bytes(b"")
    rep = verify_dataset(m, root, home)
    assert not rep.ok
    assert any("testB holds 1 images, the manifest expects 2" in p for p in rep.problems)
    assert any("unreadable image" in p and "0000.jpg" in p and "empty" in p for p in rep.problems)
    assert "MISMATCH" in "\n".join(rep.lines())
    # fetch sees the dataset is incomplete and restores it from the kept archive
    fetch_dataset(m, root, home, progress=False, log=lambda s: None)
    assert verify_dataset(m, root, home).ok


def test_resume_partial_download_with_range(served, tmp_path, home):
    server, body, m = served
    part = archive_path(m, home).with_name(NAME + ".zip.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(body[:1000])
    fetch_dataset(m, tmp_path / "data", home, progress=False, log=lambda s: None)
    assert server.requests == [("/" + NAME + ".zip", "bytes=1000-")]
    assert pinned_sha256(m, home) == _sha(body)


def test_dropped_connection_then_resume(server, tmp_path, home):
    # > 2 download chunks of incompressible bytes, so the first half reaches the disk before the drop
    filler = np.random.default_rng(0).integers(0, 256, 5 << 20, dtype=np.uint8).tobytes()
    body = make_zip(NAME, COUNTS, extra=[(f"{NAME}/filler.bin", filler)])
    server.files["/big.zip"] = body
    server.cut_once.add("/big.zip")
    m = _manifest([server.url("/big.zip")])
    with pytest.raises(ArtshiftError, match="interrupted"):
        fetch_dataset(m, tmp_path / "data", home, progress=False, log=lambda s: None)
    assert pinned_sha256(m, home) is None and not (tmp_path / "data" / NAME).exists()
    have = archive_path(m, home).with_name(NAME + ".zip.part").stat().st_size
    assert 0 < have < len(body)
    fetch_dataset(m, tmp_path / "data", home, progress=False, log=lambda s: None)
    assert server.requests[-1] == ("/big.zip", f"bytes={have}-")
    assert pinned_sha256(m, home) == _sha(body) and archive_path(m, home).read_bytes() == body


def test_server_without_range_support_restarts(served, tmp_path, home):
    server, body, m = served
    server.ranges = False
    part = archive_path(m, home).with_name(NAME + ".zip.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage that must not end up in the archive")
    fetch_dataset(m, tmp_path / "data", home, progress=False, log=lambda s: None)
    assert archive_path(m, home).read_bytes() == body


def test_mirror_is_tried_when_the_first_url_fails(server, tmp_path, home):
    body = make_zip(NAME, COUNTS)
    server.files["/mirror.zip"] = body
    m = _manifest([server.url("/gone.zip"), server.url("/mirror.zip")])
    logs = []
    fetch_dataset(m, tmp_path / "data", home, progress=False, log=logs.append)
    assert [r[0] for r in server.requests] == ["/gone.zip", "/mirror.zip"]
    assert pinned_sha256(m, home) == _sha(body)


def _closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/{NAME}.zip"


def test_unreachable_fails_fast_with_instructions(tmp_path, home):
    m = _manifest([_closed_port_url()])
    t0 = time.monotonic()
    with pytest.raises(ArtshiftError) as info:
        fetch_dataset(m, tmp_path / "data", home, progress=False, log=lambda s: None)
    assert time.monotonic() - t0 < 10
    msg = str(info.value)
    assert f"could not download {NAME}" in msg and "--archive FILE" in msg
    assert not (tmp_path / "data" / NAME).exists() and pinned_sha256(m, home) is None


def test_published_sha256_is_enforced(served, tmp_path, home):
    _, body, _ = served
    server = served[0]
    wrong = _manifest([server.url("/" + NAME + ".zip")], sha256="0" * 64, pin="published")
    with pytest.raises(ChecksumError):
        fetch_dataset(wrong, tmp_path / "data", home, progress=False, log=lambda s: None)
    assert not lock_path(home).exists()
    right = _manifest([server.url("/" + NAME + ".zip")], sha256=_sha(body), pin="published")
    fetch_dataset(right, tmp_path / "data", home, progress=False, log=lambda s: None)
    assert not lock_path(home).exists()  # nothing to pin: the manifest carries the hash
    assert verify_dataset(right, tmp_path / "data", home).sha256_source == "published"


def test_local_archive_import(tmp_path, home):
    body = make_zip(NAME, COUNTS)
    zpath = tmp_path / "downloaded.zip"
    zpath.write_bytes(body)
    m = _manifest(["https://example.invalid/x.zip"])
    fetch_dataset(m, tmp_path / "data", home, archive=zpath, progress=False, log=lambda s: None)
    assert pinned_sha256(m, home) == _sha(body)
    other = tmp_path / "other.zip"
    other.write_bytes(make_zip(NAME, COUNTS, seed=5))
    with pytest.raises(ChecksumError):
        fetch_dataset(m, tmp_path / "data", home, archive=other, force=True, progress=False, log=lambda s: None)


def test_archive_with_wrong_counts_is_not_pinned(server, tmp_path, home):
    server.files["/z.zip"] = make_zip(NAME, {**COUNTS, "trainA": 1})
    m = _manifest([server.url("/z.zip")])
    with pytest.raises(ArtshiftError, match="trainA holds 1 images, the manifest expects 3"):
        fetch_dataset(m, tmp_path / "data", home, progress=False, log=lambda s: None)
    assert pinned_sha256(m, home) is None and not (tmp_path / "data" / NAME).exists()
    # an unconfirmed count only warns
    m2 = _manifest([server.url("/z.zip")], confirmed=("testA", "trainB", "testB"))
    logs = []
    fetch_dataset(m2, tmp_path / "data", home, progress=False, log=logs.append)
    assert any(line.startswith("warning:") and "trainA" in line for line in logs)
    rep = verify_dataset(m2, tmp_path / "data", home)
    assert rep.ok and rep.warnings


# --- zip slip ------------------------------------------------------------------------------

def _symlink_member() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(f"{NAME}/trainA/link.jpg")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize("member, why", [
    ("../evil.txt", "escape"),
    (f"{NAME}/../../evil.txt", "escape"),
    ("/tmp/abs_evil.txt", "absolute"),
    ("C:/evil.txt", "absolute"),
    ("..\\evil.txt", "escape"),
    (_symlink_member(), "symbolic link"),
])
def test_zip_slip_members_are_refused(tmp_path, home, member, why):
    body = make_zip(NAME, COUNTS, extra=[(member, b"/etc/passwd")])
    zpath = tmp_path / "evil.zip"
    zpath.write_bytes(body)
    root = tmp_path / "deep" / "data"
    with pytest.raises(UnsafeArchiveError, match=why):
        fetch_dataset(_manifest(["https://example.invalid/x.zip"]), root, home, archive=zpath, progress=False,
                      log=lambda s: None)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "deep" / "evil.txt").exists()
    assert not Path("/tmp/abs_evil.txt").exists()
    assert list(root.iterdir()) == []  # nothing extracted, no staging left
    assert not lock_path(home).exists()


def test_safe_extract_strips_root_and_skips_foreign_members(tmp_path):
    body = make_zip(NAME, COUNTS, extra=[("__MACOSX/._x", b"x"), ("README.txt", b"x")])
    zpath = tmp_path / "a.zip"
    zpath.write_bytes(body)
    logs = []
    n = safe_extract(zpath, tmp_path / "out", strip=NAME, log=logs.append)
    assert n == sum(COUNTS.values()) and sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(COUNTS)
    assert any("skipped 1" in line for line in logs)
    with pytest.raises(UnsafeArchiveError, match="expand to"):
        safe_extract(zpath, tmp_path / "out2", strip=NAME, max_bytes=100)
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(ArtshiftError, match="not a readable zip"):
        safe_extract(tmp_path / "bad.zip", tmp_path / "out3")


# --- ensure_domain -------------------------------------------------------------------------

def _write_home_manifest(home: Path, url: str) -> None:
    (home / "manifests").mkdir(exist_ok=True)
    counts = "\n".join(f"{k} = {v}" for k, v in COUNTS.items())
    (home / "manifests" / f"{NAME}.toml").write_text(
        f'name = "{NAME}"\nversion = "t1"\nartist = "tinyart"\nurls = ["{url}"]\nsha256 = ""\n'
        f'pin = "first-download"\n[counts]\n{counts}\n')


def test_ensure_domain_fetches_missing_data(server, tmp_path, home):
    server.files["/t.zip"] = make_zip(NAME, COUNTS)
    _write_home_manifest(home, server.url("/t.zip"))
    root = tmp_path / "data"
    with pytest.raises(MissingDataError):
        ensure_domain("tinyart", root, home, allow_download=False)
    d = ensure_domain("tinyart", root, home, progress=False, log=lambda s: None)
    assert d.layout == "cyclegan" and len(d.paintings_train) == 3 and len(d.photos_test) == 2
    n = len(server.requests)
    ensure_domain("tinyart", root, home, log=lambda s: None)  # present now: no request
    assert len(server.requests) == n


def test_ensure_domain_offline_explains(tmp_path, home):
    _write_home_manifest(home, _closed_port_url())
    with pytest.raises(ArtshiftError) as info:
        ensure_domain("tinyart", tmp_path / "data", home, progress=False, log=lambda s: None)
    msg = str(info.value)
    assert "no data for 'tinyart'" in msg and "fetching tinyart2photo automatically failed" in msg
    assert f"bench data fetch {NAME}" in msg


def test_artshift_offline_forbids_downloads(served, tmp_path, home, monkeypatch):
    server, _, m = served
    monkeypatch.setenv("ARTSHIFT_OFFLINE", "1")
    with pytest.raises(ArtshiftError, match="ARTSHIFT_OFFLINE is set"):
        fetch_dataset(m, tmp_path / "data", home, progress=False, log=lambda s: None)
    _write_home_manifest(home, server.url("/" + NAME + ".zip"))
    with pytest.raises(MissingDataError, match=f"bench data fetch {NAME}"):
        ensure_domain("tinyart", tmp_path / "data", home)
    assert server.requests == []
    monkeypatch.setenv("ARTSHIFT_OFFLINE", "0")
    assert ensure_domain("tinyart", tmp_path / "data", home, progress=False, log=lambda s: None).layout == "cyclegan"


def test_ensure_domain_uses_present_data_without_a_manifest(tmp_path, home):
    make_cyclegan_tree(tmp_path, "monet2photo", COUNTS)
    d = ensure_domain("monet", tmp_path, home)
    assert d.layout == "cyclegan" and fingerprint(d.paintings_train)


# --- manifests ------------------------------------------------------------------------------

DATASETS_MD_FALLBACK = {  # /work/shared/reference/datasets.md
    "monet2photo": (1072, 121, 6287, 751), "cezanne2photo": (525, 58, 6287, 751),
    "vangogh2photo": (400, 400, 6287, 751), "ukiyoe2photo": (562, 263, 6287, 751),
}


def _reference_counts() -> dict[str, tuple[int, ...]]:
    md = REPO.parent / "shared" / "reference" / "datasets.md"
    if not md.exists():
        return DATASETS_MD_FALLBACK
    rows = re.findall(r"^\|\s*(\w+2photo)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|", md.read_text(), re.M)
    table = {r[0]: tuple(int(x) for x in r[1:]) for r in rows}
    assert table == DATASETS_MD_FALLBACK
    return table


def test_shipped_manifests_match_the_reference():
    ms = {name: m for name, m in load_manifests().items() if m.layout == "cyclegan"}
    ref = _reference_counts()
    assert sorted(ms) == sorted(ref)
    assert set(load_manifests()) - set(ms) == {"pacs"}  # the labelled PACS release: tests/test_pacs.py
    for name, (tra, tea, trb, teb) in ref.items():
        m = ms[name]
        assert dict(m.counts) == {"trainA": tra, "testA": tea, "trainB": trb, "testB": teb}
        assert m.urls == (f"https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip",
                          f"https://people.eecs.berkeley.edu/~taesung_park/CycleGAN/datasets/{name}.zip")
        assert m.sha256 == "" and m.pin == "first-download" and m.layout == "cyclegan"
        assert m.artist == name.removesuffix("2photo") and m.licence and m.version
        assert m.source.endswith(f"{name}.toml")
        assert manifest_for_artist(m.artist) is not None and manifest_for_artist(m.artist).name == name
    assert ms["monet2photo"].counts_confirmed == ("trainA", "trainB", "testB")


def test_unknown_names_suggest():
    with pytest.raises(ArtshiftError, match="did you mean 'monet2photo'"):
        get_manifest("monet2foto")
    with pytest.raises(ArtshiftError, match="did you mean 'monet2photo'"):
        get_manifest("monet")
    with pytest.raises(ArtshiftError, match="did you mean 'vangogh'"):
        manifest_for_artist("van_gogh")


def test_home_manifest_overrides_and_extends(home):
    (home / "manifests").mkdir()
    text = (REPO / "data_manifests" / "monet2photo.toml").read_text().replace(
        "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/", "https://mirror.example.org/")
    (home / "manifests" / "monet2photo.toml").write_text(text)
    _write_home_manifest(home, "https://example.org/t.zip")
    ms = load_manifests(home)
    assert ms["monet2photo"].urls[0] == "https://mirror.example.org/monet2photo.zip"
    assert NAME in ms and get_manifest(NAME, home).artist == "tinyart"
    assert NAME not in load_manifests()


_GOOD = 'name = "x2photo"\nversion = "1"\nartist = "x"\nurls = ["https://a.b/x.zip"]\n' \
        '[counts]\ntrainA = 1\ntestA = 1\ntrainB = 1\ntestB = 1\n'


@pytest.mark.parametrize("text, fragments", [
    ("name = ", ["not valid TOML"]),
    (_GOOD.replace('version = "1"\n', ""), ["missing required key 'version'"]),
    (_GOOD.replace('version = "1"', "version = 1"), ["'version' must be a string"]),
    (_GOOD.replace('artist = "x"', 'artist = "x"\nsha265 = ""'), ["unknown key 'sha265'", "did you mean 'sha256'"]),
    (_GOOD.replace('"https://a.b/x.zip"', '"ftp://a.b/x.zip"'), ["'urls'", "not an http(s) URL"]),
    (_GOOD.replace('["https://a.b/x.zip"]', "[]"), ["'urls'", "at least one URL"]),
    (_GOOD.replace("testB = 1\n", ""), ["'counts'", "trainA, testA, trainB, testB"]),
    (_GOOD.replace("testB = 1", "testB = 0"), ["'counts.testB'", "positive integer"]),
    (_GOOD.replace('artist = "x"', 'artist = "x"\nsha256 = "abc"\npin = "published"'), ["'sha256'", "64 hex"]),
    (_GOOD.replace('artist = "x"', 'artist = "x"\npin = "published"'), ["'sha256'", "empty"]),
    (_GOOD.replace('artist = "x"', 'artist = "x"\npin = "sometimes"'), ["'pin'", "first-download"]),
    (_GOOD.replace('artist = "x"', f'artist = "x"\nsha256 = "{"a" * 64}"'), ["'pin'", "published"]),
    (_GOOD.replace('artist = "x"', 'artist = "x"\nlayout = "pix2pix"'), ["'layout'", "cyclegan"]),
    (_GOOD.replace('artist = "x"', 'artist = "x"\ncounts_confirmed = ["trainC"]'), ["'counts_confirmed'", "trainC"]),
    (_GOOD.replace('artist = "x"', 'artist = "x"\narchive_root = "../up"'), ["'archive_root'"]),
    (_GOOD.replace('name = "x2photo"', 'name = "y2photo"'), ["'name'", "x2photo.toml"]),
])
def test_manifest_validation_names_file_and_key(home, text, fragments):
    (home / "manifests").mkdir()
    path = home / "manifests" / "x2photo.toml"
    path.write_text(text)
    with pytest.raises(ManifestError) as info:
        load_manifests(home)
    msg = str(info.value)
    assert str(path) in msg
    for frag in fragments:
        assert frag in msg, (frag, msg)


def test_corrupt_lock_file_is_explained(served, tmp_path, home):
    _, _, m = served
    lock_path(home).write_text("{not json")
    with pytest.raises(ArtshiftError, match="data lock file"):
        fetch_dataset(m, tmp_path / "data", home, progress=False, log=lambda s: None)
