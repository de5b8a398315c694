"""Verified downloads shared by datasets and weight files.

Streams to ``<dest>.part`` with a progress bar, resumes a partial file with an HTTP Range
request where the server honours it (checking that the server resumed where asked), checks the
sha256 (full hash, or a published prefix) before the file is moved into place, and fails
within seconds when the machine is offline. Plain ``http://`` is refused unless the full sha256
is known in advance (a pin made on first use over plain HTTP would pin whatever a network
attacker served) or the host is this machine. A download stops at ``max_bytes`` (from the
manifest's size), and two processes never write one ``.part`` file (an O_EXCL lock).
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from benchmark.core.errors import ArtshiftError
from benchmark.core.locks import RunLock

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


def _check_scheme(url: str, sha256: str | None) -> None:
    parsed = urlparse(url)
    if parsed.scheme == "https":
        return
    if parsed.scheme == "http" and (sha256 or parsed.hostname in ("127.0.0.1", "localhost", "::1")):
        return
    if parsed.scheme == "http":
        raise ArtshiftError(f"refusing to download {url} over plain http without a published sha256",
                            hint="use an https:// URL, or download the file by hand, check it and import it")
    raise ArtshiftError(f"unsupported URL scheme in {url!r}", hint="use an https:// URL")


def _resumed_at(resp, have: int) -> bool:
    """Whether a 206 response starts at byte ``have`` (a server may answer another range)."""
    rng = resp.headers.get("Content-Range", "")
    try:
        return int(rng.split()[1].split("-")[0]) == have
    except (IndexError, ValueError):
        return False


def download(url: str, dest: Path, *, sha256: str | None = None, sha256_prefix: str | None = None,
             progress: bool = True, what: str = "file", max_bytes: int | None = None) -> str:
    """Download ``url`` to ``dest`` (atomically, verified); returns the file's full sha256.

    A leftover ``dest.part`` is resumed with a Range request; if the server ignores the range
    (or answers another one) the download restarts from zero. A checksum mismatch deletes the
    partial file and raises.
    """
    dest = Path(dest)
    _check_scheme(url, sha256)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with RunLock(dest.with_name(f".{dest.name}.lock"), what=f"the download of {dest.name}"):
        return _download(url, dest, sha256, sha256_prefix, progress, what, max_bytes)


def _download(url: str, dest: Path, sha256: str | None, sha256_prefix: str | None, progress: bool, what: str,
              max_bytes: int | None) -> str:
    import requests
    from tqdm.auto import tqdm

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
            if resp.status_code == 206 and not _resumed_at(resp, have):
                resp.close()  # it answered another range than asked: the part file cannot be trusted
                part.unlink(missing_ok=True)
                return _download(url, dest, sha256, sha256_prefix, progress, what, max_bytes)
            if resp.status_code == 200:
                have = 0  # the server ignored the range: start over
            total = resp.headers.get("Content-Length")
            total_n = int(total) + have if total is not None else None
            mode = "ab" if have else "wb"
            try:
                with open(part, mode) as fh, tqdm(total=total_n, initial=have, unit="B", unit_scale=True,
                                                   desc=dest.name, disable=not progress, leave=False) as bar:
                    written = have
                    for chunk in resp.iter_content(CHUNK):
                        written += len(chunk)
                        if max_bytes is not None and written > max_bytes:
                            fh.close()
                            part.unlink(missing_ok=True)
                            raise ArtshiftError(f"download of {url} exceeds the expected size "
                                                f"({max_bytes:,} bytes at most); stopped and deleted",
                                                hint="the server sends something else than the release: check "
                                                     "the URL, or download the file by hand and import it")
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
