"""Dataset manifests (one TOML file per dataset) and the lock file that pins archive checksums.

Adding a dataset means adding one file to ``data_manifests/`` (shipped) or to
``<ARTSHIFT_HOME>/manifests/`` (local; a local file replaces the shipped one of the same
name, e.g. to point at a mirror). The CycleGAN authors publish no checksums, so a manifest
may say ``sha256 = ""`` with ``pin = "first-download"``: the first verified download records
the archive's sha256 in ``<ARTSHIFT_HOME>/data.lock.json`` and every later download or
``verify`` must reproduce it (trust on first use, like an SSH host key).

Layouts: ``cyclegan`` (``<name>/{trainA,testA,trainB,testB}``, flat split folders) and
``pacs`` (``<name>/{art_painting,photo}/<class>/*``: one folder per domain, images in class
folders, the train/test split read from the CSV the manifest names in ``split_file``).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlparse

from benchmark.core.atomic import write_atomic
from benchmark.core.errors import ArtshiftError, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LOCK_NAME = "data.lock.json"
LOCK_FORMAT = 1
PIN_MODES = ("published", "first-download")
LAYOUTS = {
    # layout -> folder counted by the manifest -> (domain, part)
    "cyclegan": {"trainA": ("paintings", "train"), "testA": ("paintings", "test"),
                 "trainB": ("photos", "train"), "testB": ("photos", "test")},
    # PACS: one folder per domain with a sub-folder per class; train/test come from the split file
    "pacs": {"art_painting": ("paintings", "all"), "photo": ("photos", "all")},
}
# layouts whose counted folders hold one sub-folder per class (the class label) instead of the images
LABELLED_LAYOUTS = frozenset({"pacs"})
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ArtshiftError):
    """A manifest file that is not valid: names the file and the key."""


@dataclass(frozen=True)
class Manifest:
    """What one dataset release is, where to get it and what a correct copy contains."""

    name: str
    version: str
    artist: str
    urls: tuple[str, ...]
    counts: Mapping[str, int]
    sha256: str = ""
    pin: str = "first-download"
    layout: str = "cyclegan"
    archive_root: str = ""  # folder inside the zip holding the splits; "" = the name
    counts_confirmed: tuple[str, ...] = ()
    size_mb: int = 0
    split_file: str = ""  # labelled layouts: CSV (path, class, split) next to the manifest file
    licence: str = ""
    description: str = ""
    source: str = "<constructed>"  # file the manifest came from, for error messages

    def __post_init__(self):
        object.__setattr__(self, "urls", tuple(self.urls))
        object.__setattr__(self, "counts_confirmed", tuple(self.counts_confirmed))
        object.__setattr__(self, "counts", MappingProxyType(dict(self.counts)))
        object.__setattr__(self, "sha256", self.sha256.lower())
        if not self.archive_root:
            object.__setattr__(self, "archive_root", self.name)
        _validate(self)

    @property
    def archive_name(self) -> str:
        return f"{self.name}.zip"

    @property
    def lock_key(self) -> str:
        """Pins are per release: a new version in the manifest must not inherit the old pin."""
        return f"{self.name}@{self.version}"

    def split_role(self, split: str) -> tuple[str, str]:
        """``trainA`` -> ``("paintings", "train")`` for the manifest's layout (``art_painting`` -> ``("paintings", "all")``)."""
        return LAYOUTS[self.layout][split]

    @property
    def labelled(self) -> bool:
        """Images sit in one sub-folder per class (the label) and the split comes from ``split_path``."""
        return self.layout in LABELLED_LAYOUTS

    @property
    def split_path(self) -> Path | None:
        """The split CSV: ``split_file`` relative to the folder of the manifest file (or absolute)."""
        if not self.split_file:
            return None
        path = Path(self.split_file)
        if path.is_absolute():
            return path
        src = Path(self.source)
        return (src.parent if src.suffix == ".toml" else Path.cwd()) / path

    @classmethod
    def from_dict(cls, data: Mapping[str, object], source: str = "<constructed>") -> Manifest:
        """Build and validate from parsed TOML; errors name ``source`` and the key."""
        known = {f for f in cls.__dataclass_fields__ if f != "source"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ManifestError(f"{source}: unknown key {unknown[0]!r}",
                                hint=did_you_mean(unknown[0], known, otherwise=f"known keys: {', '.join(sorted(known))}"))
        for key in ("name", "version", "artist", "urls", "counts"):
            if key not in data:
                raise ManifestError(f"{source}: missing required key {key!r}")
        types = {"name": str, "version": str, "artist": str, "sha256": str, "pin": str, "layout": str,
                 "archive_root": str, "licence": str, "description": str, "size_mb": int, "split_file": str,
                 "urls": list, "counts": dict, "counts_confirmed": list}
        for key, typ in types.items():
            if key in data and (not isinstance(data[key], typ) or isinstance(data[key], bool)):
                raise ManifestError(f"{source}: key {key!r} must be a {_type_word(typ)}, got {data[key]!r}")
        try:
            return cls(**dict(data), source=source)  # type: ignore[arg-type]  # key types checked above
        except ManifestError:
            raise
        except TypeError as exc:  # pragma: no cover - guarded by the checks above
            raise ManifestError(f"{source}: {exc}") from None

    @classmethod
    def from_file(cls, path: Path) -> Manifest:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ManifestError(f"{path}: not valid TOML ({exc})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{path}: cannot read the manifest ({exc})") from None
        m = cls.from_dict(data, source=str(path))
        if m.name != path.stem:
            raise ManifestError(f"{path}: key 'name' is {m.name!r} but the file is named {path.name}",
                                hint=f"rename the file to {m.name}.toml or fix the name")
        return m


def _type_word(typ: type) -> str:
    return {str: "string", int: "integer", list: "list", dict: "table"}[typ]


def _validate(m: Manifest) -> None:
    src = m.source

    def fail(key: str, problem: str, hint: str | None = None):
        raise ManifestError(f"{src}: key {key!r} {problem}", hint=hint)

    if not _NAME_RE.match(m.name):
        fail("name", f"{m.name!r} must be lower-case letters, digits, '-', '_' or '.'")
    if not m.version.strip():
        fail("version", "must not be empty")
    if not _NAME_RE.match(m.artist):
        fail("artist", f"{m.artist!r} must be lower-case letters, digits, '-', '_' or '.'")
    if not m.urls:
        fail("urls", "must list at least one URL")
    for url in m.urls:
        if not isinstance(url, str) or urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc:
            fail("urls", f"has {url!r}, which is not an http(s) URL")
    if m.layout not in LAYOUTS:
        fail("layout", f"is {m.layout!r}; supported: {', '.join(LAYOUTS)}")
    splits = LAYOUTS[m.layout]
    if set(m.counts) != set(splits):
        fail("counts", f"must give exactly the splits {', '.join(splits)} (got {', '.join(m.counts) or 'none'})")
    for split, n in m.counts.items():
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            fail(f"counts.{split}", f"must be a positive integer, got {n!r}")
    for split in m.counts_confirmed:
        if split not in splits:
            fail("counts_confirmed", f"names {split!r}, which is not a split ({', '.join(splits)})")
    if m.pin not in PIN_MODES:
        fail("pin", f"is {m.pin!r}; use one of {', '.join(PIN_MODES)}")
    if m.sha256 and not _SHA_RE.match(m.sha256):
        fail("sha256", "must be 64 hex digits, or \"\" with pin = \"first-download\"")
    if m.pin == "published" and not m.sha256:
        fail("sha256", "is empty but pin = \"published\"", hint='give the published sha256, or set pin = "first-download"')
    if m.pin == "first-download" and m.sha256:
        fail("pin", 'is "first-download" but a sha256 is given', hint='set pin = "published" to enforce the given sha256')
    if m.archive_root.startswith("/") or ".." in Path(m.archive_root).parts:
        fail("archive_root", f"{m.archive_root!r} must be a relative folder inside the archive")
    if isinstance(m.size_mb, bool) or not isinstance(m.size_mb, int) or m.size_mb < 0:
        fail("size_mb", f"must be a non-negative integer, got {m.size_mb!r}")
    if m.layout in LABELLED_LAYOUTS and not m.split_file:
        fail("split_file", f"is required with layout {m.layout!r}",
             hint="name the CSV (columns path, class, split) that fixes the train/test split, next to the manifest")
    if m.split_file and m.layout not in LABELLED_LAYOUTS:
        fail("split_file", f"is only used with layout {', '.join(sorted(LABELLED_LAYOUTS))}")
    if ".." in Path(m.split_file).parts:
        fail("split_file", f"{m.split_file!r} must not contain '..'")


def _shipped_files() -> list[Path]:
    pkg = resources.files("data_manifests")
    return sorted((Path(str(p)) for p in pkg.iterdir() if p.name.endswith(".toml")), key=lambda p: p.name)


def load_manifests(home: Path | None = None) -> dict[str, Manifest]:
    """All manifests by name: the shipped ones, replaced or extended by ``<home>/manifests/*.toml``."""
    out: dict[str, Manifest] = {}
    for path in _shipped_files():
        m = Manifest.from_file(path)
        out[m.name] = m
    if home is not None and (Path(home) / "manifests").is_dir():
        for path in sorted((Path(home) / "manifests").glob("*.toml")):
            m = Manifest.from_file(path)
            out[m.name] = m
    return dict(sorted(out.items()))


def get_manifest(name: str, home: Path | None = None) -> Manifest:
    manifests = load_manifests(home)
    if name not in manifests:
        close = difflib.get_close_matches(name, list(manifests), n=1)
        if not close:  # "monet" -> "monet2photo"
            close = [m.name for m in manifests.values() if m.artist == name][:1]
        raise ArtshiftError(f"unknown dataset {name!r} (known: {', '.join(manifests)})",
                            hint=f"did you mean {close[0]!r}?" if close else
                            "add a manifest file to data_manifests/ or <ARTSHIFT_HOME>/manifests/")
    return manifests[name]


def manifest_for_artist(artist: str, home: Path | None = None) -> Manifest:
    """The dataset holding ``artist``'s paintings (``<artist>2photo`` when several do)."""
    manifests = load_manifests(home)
    matches = [m for m in manifests.values() if m.artist == artist]
    if not matches:
        artists = sorted({m.artist for m in manifests.values()})
        raise ArtshiftError(f"no dataset manifest for artist {artist!r} (artists with manifests: {', '.join(artists)})",
                            hint=did_you_mean(artist, artists, otherwise="add a manifest file to data_manifests/ or "
                                                                         "<ARTSHIFT_HOME>/manifests/"))
    preferred = [m for m in matches if m.name == f"{artist}2photo"]
    return (preferred or matches)[0]


# --- lock file: sha256 pinned on first download -------------------------------------------

def lock_path(home: Path) -> Path:
    return Path(home) / LOCK_NAME


def read_lock(home: Path) -> dict[str, dict]:
    path = lock_path(home)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtshiftError(f"cannot read the data lock file {path}: {exc}",
                            hint="fix or delete it (deleting it forgets the pinned dataset checksums)") from None
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), dict):
        raise ArtshiftError(f"data lock file {path} has an unexpected format",
                            hint="fix or delete it (deleting it forgets the pinned dataset checksums)")
    return data["datasets"]


def pinned_sha256(manifest: Manifest, home: Path) -> str | None:
    entry = read_lock(home).get(manifest.lock_key)
    return entry.get("sha256") if entry else None


def expected_sha256(manifest: Manifest, home: Path) -> tuple[str | None, str]:
    """The sha256 an archive must have and where that came from ("published", "pinned" or "none")."""
    if manifest.sha256:
        return manifest.sha256, "published"
    pinned = pinned_sha256(manifest, home)
    return (pinned, "pinned") if pinned else (None, "none")


def pin_sha256(manifest: Manifest, home: Path, digest: str, *, url: str, size: int) -> Path:
    """Record ``digest`` for the manifest's release; atomic so a crash never leaves half a lock file."""
    path = lock_path(home)
    entries = read_lock(home)
    old = entries.get(manifest.lock_key)
    if old and old.get("sha256") != digest:  # callers check first; this guards against races
        raise ArtshiftError(f"{manifest.name}: refusing to re-pin {old.get('sha256')} to {digest} in {path}")
    entries[manifest.lock_key] = {
        "sha256": digest, "size": size, "url": url,
        "pinned_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return write_atomic(path, json.dumps({"format": LOCK_FORMAT, "datasets": dict(sorted(entries.items()))},
                                         indent=2) + "\n")
