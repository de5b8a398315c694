"""Verified downloads shared by datasets and weight files.

Streams to ``<dest>.part`` with a progress bar, resumes a partial file with an HTTP Range
request where the server honours it, checks the sha256 (full hash, or a published prefix)
before the file is moved into place, and fails within seconds when the machine is offline.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from benchmark.errors import ArtshiftError

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
CHUNK = 1 << 20


class ChecksumError(ArtshiftError):
    """A file's sha256 does not match the expected (or pinned) value."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def check_sha256(path: Path, digest: str, *, sha256: str | None = None, sha256_prefix: str | None = None,
                 what: str = "file") -> None:
    """Raise ``ChecksumError`` when ``digest`` (of ``path``) disagrees with the expectation."""
    if sha256 and digest != sha256.lower():
        raise ChecksumError(f"checksum mismatch for {what} {path}: sha256 {digest}, expected {sha256}",
                            hint="the file is corrupt or not the expected release: delete it and download it again")
    if sha256_prefix and not digest.startswith(sha256_prefix.lower()):
        raise ChecksumError(
            f"checksum mismatch for {what} {path}: sha256 {digest} does not start with the published {sha256_prefix}",
            hint="the file is corrupt or not the expected release: delete it and download it again")


def _offline_hint(url: str) -> str:
    return (f"could not reach {urlparse(url).netloc}: this machine looks offline. Download {url} on a machine "
            "with internet access and import the file (see `bench data --help` / `bench weights import`)")


def _check_resolvable(url: str) -> None:
    host = urlparse(url).hostname
    if not host:
        raise ArtshiftError(f"bad URL {url!r}")
    try:
        socket.getaddrinfo(host, None)
    except OSError:
        raise ArtshiftError(f"cannot resolve host {host!r} for {url}", hint=_offline_hint(url)) from None


def download(url: str, dest: Path, *, sha256: str | None = None, sha256_prefix: str | None = None,
             progress: bool = True, what: str = "file") -> str:
    """Download ``url`` to ``dest`` (atomically, verified); returns the file's full sha256.

    A leftover ``dest.part`` is resumed with a Range request; if the server ignores the range
    the download restarts from zero. A checksum mismatch deletes the partial file and raises.
    """
    import requests
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _check_resolvable(url)
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        resp = requests.get(url, stream=True, headers=headers, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    except requests.RequestException as exc:
        raise ArtshiftError(f"download of {url} failed: {exc}", hint=_offline_hint(url)) from None
    with resp:
        if resp.status_code == 416 and have:  # nothing left to fetch: the part file is complete
            pass
        elif resp.status_code not in (200, 206):
            raise ArtshiftError(f"download of {url} failed: HTTP {resp.status_code}",
                                hint="check the URL in the manifest, or download the file by hand and import it")
        else:
            if resp.status_code == 200:
                have = 0  # the server ignored the range: start over
            total = resp.headers.get("Content-Length")
            total_n = int(total) + have if total is not None else None
            mode = "ab" if have else "wb"
            try:
                with open(part, mode) as fh, tqdm(total=total_n, initial=have, unit="B", unit_scale=True,
                                                   desc=dest.name, disable=not progress, leave=False) as bar:
                    for chunk in resp.iter_content(CHUNK):
                        fh.write(chunk)
                        bar.update(len(chunk))
            except requests.RequestException as exc:
                raise ArtshiftError(f"download of {url} was interrupted: {exc}",
                                    hint="run the same command again: it resumes from the partial file "
                                         f"{part}") from None
    digest = sha256_file(part)
    try:
        check_sha256(part, digest, sha256=sha256, sha256_prefix=sha256_prefix, what=what)
    except ChecksumError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return digest
