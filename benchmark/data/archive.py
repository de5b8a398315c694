"""Safe extraction of downloaded zip archives.

Every member is checked before anything is written: an archive that names an absolute path,
a ``..`` component, a drive letter or a symlink is refused as a whole (a zip-slip archive
is hostile, not partly usable). Files are streamed out with their declared sizes as an upper
bound, and the total is checked against a cap and the free disk space first.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from benchmark.core.errors import ArtshiftError

MAX_EXTRACT_BYTES = 20 * 1024**3  # the CycleGAN zips expand to < 1 GB; more means a zip bomb or the wrong file
IGNORED_PREFIXES = ("__MACOSX/",)  # macOS resource forks that some re-zipped copies carry


class UnsafeArchiveError(ArtshiftError):
    """An archive member would land outside the target folder (zip slip) or is a link."""


def _member_path(info: zipfile.ZipInfo, archive: Path) -> PurePosixPath:
    """The member's relative path, or raise if it could escape the extraction folder."""
    raw = info.filename
    name = raw.replace("\\", "/")  # zips written on Windows may use backslashes

    def refuse(why: str):
        raise UnsafeArchiveError(f"refusing to extract {archive}: member {raw!r} {why}",
                                 hint="the archive is corrupt or hostile: delete it and download it from the "
                                      "manifest's URL again")

    if "\0" in name:
        refuse("has a NUL byte in its name")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        refuse("is an absolute path")
    parts = PurePosixPath(name).parts
    if ".." in parts:
        refuse("would escape the target folder ('..')")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        refuse("is a symbolic link")
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # devices, fifos
        refuse("is not a regular file or folder")
    return PurePosixPath(*[p for p in parts if p not in ("", ".")])


def safe_extract(archive: Path, target: Path, *, strip: str = "", progress: bool = False,
                 max_bytes: int | None = None, log: Callable[[str], None] | None = None) -> int:
    """Extract ``archive`` into ``target`` (which must not exist yet); returns the number of files.

    ``strip``: a leading folder inside the archive whose contents go directly into ``target``
    (members outside it are skipped). Nothing is written unless every member is safe.
    """
    from tqdm.auto import tqdm

    archive, target = Path(archive), Path(target)
    max_bytes = MAX_EXTRACT_BYTES if max_bytes is None else max_bytes
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArtshiftError(f"{archive} is not a readable zip archive ({exc})",
                            hint="delete it and download it again") from None
    with zf:
        plan: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        skipped = 0
        prefix = PurePosixPath(strip) if strip else None
        for info in zf.infolist():
            rel = _member_path(info, archive)  # check all members first, even ones we skip
            if info.filename.replace("\\", "/").startswith(IGNORED_PREFIXES) or not rel.parts:
                continue
            if prefix is not None:
                if rel.parts[: len(prefix.parts)] != prefix.parts:
                    skipped += 1
                    continue
                rel = PurePosixPath(*rel.parts[len(prefix.parts):])
                if not rel.parts:
                    continue
            plan.append((info, rel))
        total = sum(i.file_size for i, _ in plan if not i.is_dir())
        if total > max_bytes:
            raise UnsafeArchiveError(f"refusing to extract {archive}: it would expand to {total:,} bytes, "
                                     f"over the {max_bytes:,}-byte cap", hint="check that it is the right file")
        target.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(target.parent).free
        if total > free:
            raise ArtshiftError(f"not enough disk space to extract {archive}: needs {total:,} bytes, "
                                f"{free:,} free under {target.parent}", hint="free some space or use another --data-root")
        if not any(not i.is_dir() for i, _ in plan):
            raise ArtshiftError(f"{archive} holds no files under {strip or 'its root'}/",
                                hint="check the manifest's archive_root")
        if skipped and log:
            log(f"skipped {skipped} archive member(s) outside {strip}/")
        target.mkdir()
        root = target.resolve()
        n = 0
        for info, rel in tqdm(plan, desc=f"extract {archive.name}", disable=not progress, leave=False):
            dest = target.joinpath(*rel.parts)
            if not dest.resolve().is_relative_to(root):  # belt and braces after the name checks
                raise UnsafeArchiveError(f"refusing to extract {archive}: member {info.filename!r} escapes {target}")
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(dest, "xb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            except FileExistsError:
                raise UnsafeArchiveError(f"refusing to extract {archive}: member {info.filename!r} occurs twice") from None
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
                raise ArtshiftError(f"cannot extract {info.filename!r} from {archive}: {exc}",
                                    hint="the archive is corrupt: delete it and download it again") from None
            n += 1
    return n
