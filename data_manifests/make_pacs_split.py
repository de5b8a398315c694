"""Write ``data_manifests/pacs_split.csv``: the fixed train/test split of PACS photo + art_painting.

PACS has no official train/test split inside a domain, so artshift fixes one: per domain and
per class, ``round(0.2 * n)`` files go to test and the rest to train. Which files is decided
by a seeded hash, not by ``random``: the files of a class are ordered by
``sha256("<seed>:<domain>/<class>/<file>")`` and the first ones are the test files, so the
split depends only on the seed and the file names (not on the Python version or the order
the file system lists the files in), and re-running the script gives the identical file.

The CSV lists every image once: ``path`` relative to the PACS folder
(``art_painting/dog/pic_001.jpg``), ``class`` (its class folder) and ``split`` (train|test),
sorted by path. It was made once and is committed; do not regenerate it for an existing
release, or results computed on the old split stop being comparable.

    python data_manifests/make_pacs_split.py [--pacs ../shared/data/pacs] [--out data_manifests/pacs_split.csv]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import sys
from pathlib import Path

SEED = 20170601  # fixed forever for pacs_split.csv
DOMAINS = ("art_painting", "photo")
TEST_FRACTION = 0.2
HEADER = ("path", "class", "split")
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".gif"}  # as benchmark.data
REPO = Path(__file__).resolve().parents[1]


def _default_pacs() -> Path:
    env = os.environ.get("ARTSHIFT_DATA")
    return (Path(env) if env else REPO.parent / "shared" / "data") / "pacs"


def list_pacs(pacs: Path) -> dict[tuple[str, str], list[str]]:
    """``{(domain, class): sorted file names}`` for the images under ``<pacs>/<domain>/<class>/``."""
    out: dict[tuple[str, str], list[str]] = {}
    for domain in DOMAINS:
        folder = pacs / domain
        if not folder.is_dir():
            raise SystemExit(f"error: {folder} does not exist (pass --pacs, the folder holding {', '.join(DOMAINS)})")
        for cls in sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            names = sorted(p.name for p in (folder / cls).iterdir()
                           if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)
            if names:
                out[(domain, cls)] = names
    return out


def n_test(n: int) -> int:
    return round(TEST_FRACTION * n)


def make_split(pacs: Path, seed: int = SEED) -> list[tuple[str, str, str]]:
    """Rows ``(path, class, split)`` sorted by path."""
    rows = []
    for (domain, cls), names in list_pacs(pacs).items():
        def key(name: str, domain: str = domain, cls: str = cls) -> tuple[str, str]:
            return hashlib.sha256(f"{seed}:{domain}/{cls}/{name}".encode()).hexdigest(), name

        test = set(sorted(names, key=key)[: n_test(len(names))])
        rows += [(f"{domain}/{cls}/{name}", cls, "test" if name in test else "train") for name in names]
    return sorted(rows)


def render(rows: list[tuple[str, str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pacs", type=Path, default=_default_pacs(), help="folder holding art_painting/ and photo/")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().with_name("pacs_split.csv"))
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)
    rows = make_split(args.pacs, args.seed)
    args.out.write_bytes(render(rows).encode("utf-8"))
    n_tests = sum(r[2] == "test" for r in rows)
    print(f"wrote {args.out}: {len(rows)} files, {len(rows) - n_tests} train / {n_tests} test", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
