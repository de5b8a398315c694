"""PACS as a labelled painting/photo domain; fingerprints keyed by relative path and split membership."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import pickle
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from helpers_data import FileServer, jpeg_bytes, write_images

from benchmark import data
from benchmark.core.errors import ArtshiftError
from benchmark.data import (
    ARTISTS,
    Domain,
    ManifestError,
    MissingDataError,
    check_artist,
    ensure_domain,
    fetch_dataset,
    fingerprint,
    get_manifest,
    load_image,
    load_manifests,
    load_split_file,
    manifest_for_artist,
    pinned_sha256,
    resolve_domain,
    split_fingerprint,
    verify_dataset,
)
from data_manifests import make_pacs_split

REPO = Path(__file__).resolve().parents[1]
SPLIT_CSV = REPO / "data_manifests" / "pacs_split.csv"
CLASSES = ("dog", "elephant", "giraffe", "guitar", "horse", "house", "person")
PER_CLASS = {  # /work/shared/data/pacs/README.md (= the published PACS statistics)
    "photo": (189, 202, 182, 186, 199, 280, 432),
    "art_painting": (379, 255, 285, 184, 201, 295, 449),
}


def _old_fingerprint(paths) -> str:
    """The algorithm artshift used before relative paths (sorted by file name): flat folders must keep its value."""
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda q: Path(q).name):
        h.update(Path(p).name.encode())
        h.update(b"\0")
        h.update(Path(p).read_bytes())
        h.update(b"\1")
    return h.hexdigest()[:16]


# --- fingerprint ------------------------------------------------------------------------------

def test_flat_folder_fingerprint_is_unchanged(tmp_path):
    write_images(tmp_path / "flat", 5)
    write_images(tmp_path / "flat", 2, seed=3, ext=".png")
    files = [tmp_path / "flat" / n for n in ("0000.jpg", "0001.png", "0003.jpg", "0000.png", "0004.jpg",
                                             "0001.jpg", "0002.jpg")]
    assert fingerprint(files) == _old_fingerprint(files)
    assert fingerprint(files, base=tmp_path / "flat") == _old_fingerprint(files)
    assert fingerprint([str(p) for p in reversed(files)]) == _old_fingerprint(files)
    one = [files[0]]
    assert fingerprint(one) == _old_fingerprint(one)
    assert fingerprint([]) == _old_fingerprint([])


def test_real_flat_folder_fingerprint_is_unchanged(shared_data):
    photos = sorted((shared_data / "photos" / "test").iterdir())
    assert fingerprint(photos) == _old_fingerprint(photos)


def _tree(root: Path, files: dict[str, bytes]) -> list[Path]:
    out = []
    for rel, body in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(body)
        out.append(p)
    return out


def test_same_name_in_different_class_folders_never_collides(tmp_path):
    x, y = jpeg_bytes(1), jpeg_bytes(2)
    a = _tree(tmp_path / "a", {"dog/pic_001.jpg": x, "horse/pic_002.jpg": y})
    moved = _tree(tmp_path / "b", {"horse/pic_001.jpg": x, "horse/pic_002.jpg": y})  # relabelled dog -> horse
    assert _old_fingerprint(a) == _old_fingerprint(moved)  # the bug: keyed on the bare name
    assert fingerprint(a) != fingerprint(moved)
    same_names = _tree(tmp_path / "c", {"dog/pic_001.jpg": x, "horse/pic_001.jpg": y})
    swapped = _tree(tmp_path / "d", {"dog/pic_001.jpg": y, "horse/pic_001.jpg": x})
    assert fingerprint(same_names) != fingerprint(swapped)
    assert fingerprint(same_names) == fingerprint(list(reversed(same_names)))
    copy = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(tmp_path / "c", copy)
    assert fingerprint(sorted(copy.rglob("*.jpg"))) == fingerprint(same_names)  # content, not location


def test_extension_is_part_of_the_key(tmp_path):
    x, y = jpeg_bytes(1), jpeg_bytes(2)
    assert fingerprint(_tree(tmp_path / "a", {"a.jpg": x})) != fingerprint(_tree(tmp_path / "b", {"a.png": x}))
    both = fingerprint(_tree(tmp_path / "c", {"a.jpg": x, "a.png": y}))
    assert both != fingerprint(_tree(tmp_path / "d", {"a.jpg": y, "a.png": x}))


def test_fingerprint_base(tmp_path):
    files = _tree(tmp_path / "pacs" / "photo", {"dog/a.jpg": jpeg_bytes(1), "dog/b.jpg": jpeg_bytes(2)})
    by_class_folder = fingerprint(files)  # common parent: photo/dog -> names
    assert by_class_folder == _old_fingerprint(files)
    assert fingerprint(files, base=tmp_path / "pacs" / "photo") != by_class_folder  # keyed dog/a.jpg
    with pytest.raises(ValueError, match="not inside"):
        fingerprint(files, base=tmp_path / "other")


# --- split fingerprint ------------------------------------------------------------------------

def _flat_domain(root: Path) -> Domain:
    write_images(root / "pa" / "train", 3)
    write_images(root / "pa" / "test", 2, seed=1)
    write_images(root / "ph" / "train", 3, seed=2)
    write_images(root / "ph" / "test", 2, seed=3)
    return _listed_domain(root)


def test_split_fingerprint_tracks_membership_and_bytes(tmp_path):
    d = _flat_domain(tmp_path / "one")
    fp = split_fingerprint(d)
    assert fp == split_fingerprint(d.splits()) == split_fingerprint(_flat_domain(tmp_path / "two"))
    # the same files with the train/test membership of the paintings swapped
    swapped = Domain("x", d.root, d.layout, d.paintings_test, d.paintings_train, d.photos_train, d.photos_test)
    assert split_fingerprint(swapped) != fp
    # a file moved from train to test, keeping its name and bytes
    one = tmp_path / "one"
    shutil.move(str(one / "ph" / "train" / "0002.jpg"), str(one / "ph" / "test" / "0002.jpg"))
    moved = _listed_domain(one)
    assert (len(moved.photos_train), len(moved.photos_test)) == (2, 3) and split_fingerprint(moved) != fp
    shutil.move(str(one / "ph" / "test" / "0002.jpg"), str(one / "ph" / "train" / "0002.jpg"))
    assert split_fingerprint(_listed_domain(one)) == fp
    # any byte
    raw = bytearray(d.photos_train[1].read_bytes())
    raw[len(raw) // 2] ^= 1
    d.photos_train[1].write_bytes(bytes(raw))
    assert split_fingerprint(d) != fp


def _listed_domain(root: Path) -> Domain:
    lists = [tuple(sorted((root / s).iterdir())) for s in ("pa/train", "pa/test", "ph/train", "ph/test")]
    return Domain("x", root, "subset", *lists)


def test_split_fingerprint_is_keyed_by_relative_path(tmp_path):
    x, y = jpeg_bytes(1), jpeg_bytes(2)
    a = _tree(tmp_path / "a", {"dog/p.jpg": x, "horse/q.jpg": y})
    b = _tree(tmp_path / "b", {"horse/p.jpg": x, "horse/q.jpg": y})
    assert split_fingerprint({"test": (tmp_path / "a", a)}) != split_fingerprint({"test": (tmp_path / "b", b)})
    assert split_fingerprint({"test": (None, a)}) == split_fingerprint({"test": (tmp_path / "a", a)})
    assert split_fingerprint({"test": (None, a)}) != split_fingerprint({"train": (None, a)})


# --- Domain ------------------------------------------------------------------------------------

def test_domain_positional_construction_and_relpath(tmp_path):
    d = _flat_domain(tmp_path)
    assert d.labels is None and d.classes == ()
    assert d.split_roots == (tmp_path / "pa" / "train", tmp_path / "pa" / "test", tmp_path / "ph" / "train",
                             tmp_path / "ph" / "test")
    assert d.relpath(d.photos_test[1]) == "0001.jpg" and d.split_of(d.photos_test[1]) == "photos/test"
    assert d.label(d.paintings_train[0]) is None
    with pytest.raises(ValueError, match="not a file of"):
        d.relpath(tmp_path / "elsewhere.jpg")
    assert d == _flat_domain(tmp_path) and hash(d) == hash(_flat_domain(tmp_path))


# --- the committed split file -----------------------------------------------------------------

def _split_rows() -> list[dict[str, str]]:
    with open(SPLIT_CSV, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_split_file_is_stratified_and_disjoint():
    rows = _split_rows()
    table = load_split_file(SPLIT_CSV)
    assert len(table) == len(rows) == sum(map(sum, PER_CLASS.values()))
    train = {r["path"] for r in rows if r["split"] == "train"}
    test = {r["path"] for r in rows if r["split"] == "test"}
    assert not train & test and len(train) + len(test) == len(rows)
    assert [r["path"] for r in rows] == sorted(r["path"] for r in rows)
    total = Counter((r["path"].split("/")[0], r["class"]) for r in rows)
    n_test = Counter((r["path"].split("/")[0], r["class"]) for r in rows if r["split"] == "test")
    for domain, counts in PER_CLASS.items():
        for cls, n in zip(CLASSES, counts):
            assert total[(domain, cls)] == n
            assert abs(n_test[(domain, cls)] - 0.2 * n) <= 1, (domain, cls)
            assert n_test[(domain, cls)] == round(0.2 * n)
    assert all(r["path"].split("/")[1] == r["class"] for r in rows)


@pytest.fixture
def pacs_dir(shared_data) -> Path:
    path = shared_data / "pacs"
    if not (path / "photo").is_dir():
        pytest.skip(f"PACS not found at {path}")
    return path


def test_split_file_lists_every_local_file_exactly_once(pacs_dir):
    on_disk = sorted(p.relative_to(pacs_dir).as_posix() for d in ("art_painting", "photo")
                     for p in (pacs_dir / d).rglob("*") if p.is_file())
    listed = [r["path"] for r in _split_rows()]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == on_disk


def test_split_script_reproduces_the_committed_file(pacs_dir, tmp_path):
    out = tmp_path / "split.csv"
    assert make_pacs_split.main(["--pacs", str(pacs_dir), "--out", str(out)]) == 0
    assert out.read_bytes() == SPLIT_CSV.read_bytes()


def test_split_script_other_seed_differs_but_keeps_counts(pacs_dir):
    rows = make_pacs_split.make_split(pacs_dir, seed=1)
    committed = [tuple(r.values()) for r in _split_rows()]
    assert rows != committed
    assert Counter(r[2] for r in rows) == Counter(r[2] for r in committed)


# --- resolve the real PACS ----------------------------------------------------------------------

def test_resolve_pacs(pacs_dir, shared_data, home):
    assert ARTISTS[:4] == ("monet", "cezanne", "vangogh", "ukiyoe") and ARTISTS[4] == "pacs"
    assert check_artist("pacs", shared_data) == "pacs"
    d = resolve_domain("pacs", shared_data)
    assert d.layout == "pacs" and d.artist == "pacs"
    assert len(d.photos_train) + len(d.photos_test) == 1670
    assert len(d.paintings_train) + len(d.paintings_test) == 2048
    assert d.split_roots == (pacs_dir / "art_painting",) * 2 + (pacs_dir / "photo",) * 2
    table = load_split_file(SPLIT_CSV)
    assert d.labels is not None and d.classes == CLASSES
    for name, (_base, files) in d.splits().items():
        rels = [d.relpath(p) for p in files]
        assert len(set(rels)) == len(rels), name
        assert rels == sorted(rels)
        for p, rel in zip(files, rels):
            cls, fname = rel.split("/")
            assert cls in CLASSES and d.labels[p] == cls == d.label(p) and p.name == fname
            assert table[p.relative_to(pacs_dir).as_posix()] == (cls, name.split("/")[1])
            assert d.split_of(p) == name
    assert len(d.labels) == 1670 + 2048
    assert d.relpath(d.paintings_train[0]).startswith("dog/")
    assert Counter(d.labels[p] for p in d.photos_train + d.photos_test) == dict(zip(CLASSES, PER_CLASS["photo"]))
    img = load_image(d.paintings_test[0])
    assert img.mode == "RGB" and img.size == (227, 227)
    assert ensure_domain("pacs", shared_data, home, allow_download=False) == d
    again = pickle.loads(pickle.dumps(d))  # domains go to worker processes
    assert again == d and again.labels[d.photos_test[0]] == d.labels[d.photos_test[0]]
    assert split_fingerprint(again) == split_fingerprint(d)


def test_verify_real_pacs(pacs_dir, shared_data, home):
    rep = verify_dataset("pacs", shared_data, home, check_images=False)
    assert rep.ok, rep.lines()
    text = "\n".join(rep.lines())
    assert "art_painting" in text and "2048 / 2048" in text and "1670 / 1670" in text


def _link_tree(src: Path, dst: Path, skip: set[str] = frozenset()) -> None:
    for domain in ("art_painting", "photo"):
        for p in sorted((src / domain).rglob("*.jpg")):
            rel = p.relative_to(src).as_posix()
            if rel in skip:
                continue
            q = dst / rel
            q.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(p.resolve(), q)


def test_changed_local_copy_is_refused_with_the_differences(pacs_dir, tmp_path):
    root = tmp_path / "data"
    gone = {"art_painting/dog/pic_001.jpg", "photo/horse/" + sorted((pacs_dir / "photo" / "horse").iterdir())[0].name}
    _link_tree(pacs_dir, root / "pacs", skip=gone)
    (root / "pacs" / "photo" / "dog" / "new_one.jpg").write_bytes(jpeg_bytes(5))
    with pytest.raises(ArtshiftError) as info:
        resolve_domain("pacs", root)
    msg = str(info.value)
    assert "2 file(s) listed in the split file but missing" in msg and "art_painting/dog/pic_001.jpg" in msg
    assert "1 file(s) not in the split file (photo/dog/new_one.jpg)" in msg
    assert "bench data fetch pacs --force" in msg and str(SPLIT_CSV) in msg


def test_missing_pacs_says_how_to_fetch(tmp_path, home):
    with pytest.raises(MissingDataError, match=r"pacs/art_painting/<class>/[\s\S]*bench data fetch pacs"):
        ensure_domain("pacs", tmp_path, home, allow_download=False)
    (tmp_path / "pacs" / "photo").mkdir(parents=True)
    with pytest.raises(ArtshiftError, match=r"art_painting does not exist"):
        resolve_domain("pacs", tmp_path)


# --- the shipped manifest -------------------------------------------------------------------------

def test_shipped_pacs_manifest():
    m = get_manifest("pacs")
    assert m.layout == "pacs" and m.labelled and m.artist == "pacs" and manifest_for_artist("pacs") == m
    assert dict(m.counts) == {"art_painting": sum(PER_CLASS["art_painting"]), "photo": sum(PER_CLASS["photo"])}
    assert set(m.counts_confirmed) == {"art_painting", "photo"}
    assert m.split_role("art_painting") == ("paintings", "all") and m.split_role("photo") == ("photos", "all")
    assert m.archive_root == "kfold" and m.sha256 == "" and m.pin == "first-download"
    assert all("1JFr8f805nMUelQWWmfnJR3y4_SYoN5Pd" in u for u in m.urls)  # DomainBed's PACS.zip
    assert m.split_path == SPLIT_CSV and m.licence and m.version


_GOOD = ('name = "x"\nversion = "1"\nartist = "x"\nurls = ["https://a.b/x.zip"]\nlayout = "pacs"\n'
         'split_file = "x.csv"\n[counts]\nart_painting = 1\nphoto = 1\n')


@pytest.mark.parametrize("text, fragments", [
    (_GOOD.replace('split_file = "x.csv"\n', ""), ["'split_file'", "required"]),
    (_GOOD.replace('layout = "pacs"\n', ""), ["'counts'", "trainA"]),
    (_GOOD.replace("photo = 1\n", ""), ["'counts'", "art_painting, photo"]),
    (_GOOD.replace('"x.csv"', '"../x.csv"'), ["'split_file'", ".."]),
])
def test_pacs_manifest_validation(home, text, fragments):
    (home / "manifests").mkdir()
    (home / "manifests" / "x.toml").write_text(text)
    with pytest.raises(ManifestError) as info:
        load_manifests(home)
    for frag in fragments:
        assert frag in str(info.value), (frag, str(info.value))


# --- fetch a (small, synthetic) PACS-layout release -------------------------------------------

TINY = "tinypacs"
TINY_COUNTS = {"art_painting": {"dog": 5, "horse": 3}, "photo": {"dog": 4, "horse": 6}, "cartoon": {"dog": 2}}


def _tiny_tree(folder: Path, seed: int = 0) -> None:
    k = 0
    for domain, classes in TINY_COUNTS.items():
        for cls, n in classes.items():
            for i in range(n):
                k += 1
                p = folder / domain / cls / f"pic_{i + 1:03d}.jpg"  # the same names in every class
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(jpeg_bytes(seed * 1000 + k))


def _zip_folder(folder: Path, prefix: str = "kfold") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, f"{prefix}/{p.relative_to(folder).as_posix()}")
    return buf.getvalue()


@pytest.fixture
def tiny(tmp_path, home, monkeypatch):
    """A served PACS-layout zip, a home manifest for it and its split file made by the committed script."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    src = tmp_path / "src"
    _tiny_tree(src)
    (home / "manifests").mkdir()
    rows = make_pacs_split.make_split(src)
    (home / "manifests" / f"{TINY}_split.csv").write_text(make_pacs_split.render(rows))
    srv = FileServer()
    srv.files["/PACS.zip"] = _zip_folder(src)
    counts = {d: sum(c.values()) for d, c in TINY_COUNTS.items() if d != "cartoon"}
    (home / "manifests" / f"{TINY}.toml").write_text(
        f'name = "{TINY}"\nversion = "t1"\nartist = "{TINY}"\nlayout = "pacs"\narchive_root = "kfold"\n'
        f'urls = ["{srv.url("/page.html")}", "{srv.url("/PACS.zip")}"]\nsplit_file = "{TINY}_split.csv"\n'
        f'counts_confirmed = ["art_painting", "photo"]\n[counts]\n'
        + "".join(f"{k} = {v}\n" for k, v in counts.items()))
    srv.files["/page.html"] = b"<!DOCTYPE html><html>Google Drive can't scan this file for viruses</html>"
    yield srv, src, rows
    srv.stop()


def test_fetch_verify_and_resolve_a_pacs_layout_release(tiny, tmp_path, home):
    srv, src, rows = tiny
    root, logs = tmp_path / "data", []
    m = get_manifest(TINY, home)
    out = fetch_dataset(TINY, root, home, progress=False, log=logs.append)
    assert out == root / TINY and pinned_sha256(m, home) == hashlib.sha256(srv.files["/PACS.zip"]).hexdigest()
    assert [r[0] for r in srv.requests] == ["/page.html", "/PACS.zip"]  # the HTML page was not taken for the zip
    assert (out / "cartoon" / "dog").is_dir()  # other PACS domains come along and are ignored
    rep = verify_dataset(TINY, root, home)
    assert rep.ok, rep.lines()
    assert [(s.split, s.found, s.expected) for s in rep.splits] == [("art_painting", 8, 8), ("photo", 10, 10)]

    d = ensure_domain(TINY, root, home, progress=False, log=logs.append)
    assert d.layout == "pacs" and d.classes == ("dog", "horse")
    test_rows = {r[0] for r in rows if r[2] == "test"}
    assert {f"art_painting/{d.relpath(p)}" for p in d.paintings_test} == \
        {r for r in test_rows if r.startswith("art_painting/")}
    assert len(d.paintings_test) == round(0.2 * 5) + round(0.2 * 3)
    assert len(d.photos_test) == round(0.2 * 4) + round(0.2 * 6)
    assert d.relpath(d.photos_train[0]) == "dog/" + d.photos_train[0].name
    assert split_fingerprint(d) == split_fingerprint(resolve_domain(TINY, root, home=home))

    # a file deleted and another added with the same counts: verify names both
    (out / "photo" / "dog" / "pic_001.jpg").rename(out / "photo" / "dog" / "pic_999.jpg")
    rep = verify_dataset(TINY, root, home, check_images=False)
    assert not rep.ok and any("photo/dog/pic_001.jpg" in p and "photo/dog/pic_999.jpg" in p for p in rep.problems)
    with pytest.raises(ArtshiftError, match="differs from its fixed train/test split"):
        resolve_domain(TINY, root, home=home)


def test_archive_not_matching_the_split_file_is_refused(tiny, tmp_path, home):
    srv, src, _ = tiny
    (src / "photo" / "horse" / "pic_002.jpg").rename(src / "photo" / "horse" / "other.jpg")
    srv.files["/PACS.zip"] = _zip_folder(src)
    with pytest.raises(ArtshiftError, match=r"differs from the split file[\s\S]*photo/horse/other.jpg"):
        fetch_dataset(TINY, tmp_path / "data", home, progress=False, log=lambda s: None)
    assert pinned_sha256(get_manifest(TINY, home), home) is None
    assert list((tmp_path / "data").iterdir()) == []


def test_only_an_html_page_is_a_clear_download_failure(tiny, tmp_path, home):
    srv, _, _ = tiny
    del srv.files["/PACS.zip"]
    with pytest.raises(ArtshiftError, match=r"could not download[\s\S]*not a zip archive[\s\S]*looks like text"):
        fetch_dataset(TINY, tmp_path / "data", home, progress=False, log=lambda s: None)
    assert not data.archive_path(TINY, home).exists()
