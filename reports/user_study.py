"""User studies in the paper's three protocols: sheets and answer key, answers, and the tally.

Tomei et al. (2018) asked people (1) which of two translations is more realistic (CycleGAN vs
ours), (2) which is more faithful to the painting shown beside them, and (3) whether a
translation or a random real photo seems more realistic, at 256, 170 and 128 px. This module
prepares such a study from finished runs, reads the answers back (from the collection page's
SQLite file or from a CSV typed from paper sheets) and tallies them with honest intervals.

A study folder holds only what participants may see, plus the key in its own folder:

- ``study.json``: protocol, question, scales, participant ids and *hashes* of their tokens;
- ``trials/P01.json``: the participant's numbered pairs by image file name (no methods);
- ``images/*.jpg``: every shown image, re-encoded to one format and size per scale, metadata
  stripped, random names, so nothing in a file tells its method;
- ``sheets/P01.html`` and ``sheets/P01.pdf``: printable sheets (numbered pairs, A/B, a box to tick);
- ``key/key.json`` and ``key/key.csv``: image sha256, side, method and source of every trial;
- ``tokens.txt``: the plain tokens, once, for the researcher to hand out;
- ``answers.sqlite`` (written by the page) and ``tally.json`` (written by the tally).

Why JPEG for every image: translations are lossless PNGs while photos are JPEGs; showing each
as it was stored would let JPEG blocking give the real photo away. Why a two-way cluster
bootstrap: answers of one participant are correlated, and so are answers about one painting;
treating trials as independent (Wilson, binomial test) gives too narrow intervals, so those
are printed only beside the headline, labelled as such.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import secrets
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from benchmark.core.errors import ArtshiftError
from benchmark.metrics.intervals import binomial_two_sided, wilson

SCHEMA_VERSION = 1
TALLY_KIND = "artshift-user-study-tally"
REAL = "real photo"  # the label of real photos in the key (vs-real trials, catch and practice trials)
PAINTING = "painting"  # the label of untranslated paintings in the key (catch and practice trials)
IMAGE_EXT = ".jpg"
IMAGE_NAME_RE = re.compile(r"^[0-9a-f]{16}\.jpg$")  # what make_study names images
JPEG_QUALITY = 90
BOOTSTRAP_B = 2000
SIDES = ("left", "right")
LETTERS = {"left": "A", "right": "B"}


@dataclass(frozen=True)
class Protocol:
    name: str
    question: str
    test: str  # the row label in the paper's Table 2
    reference: bool  # the painting is shown with the pair
    default_scales: tuple[int, ...]


PROTOCOLS = {
    "realism": Protocol("realism", "Select the most realistic image.", "Realism of the generation", False, (256,)),
    "coherency": Protocol("coherency", "Select the image most faithful to the painting.",
                          "Coherency with the painting", True, (256,)),
    "vs-real": Protocol("vs-real", "Select the one that seems more realistic.",
                        "Generated vs random real image", False, (256, 170, 128)),
}


def protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ArtshiftError(f"unknown protocol {name!r} (known: {', '.join(PROTOCOLS)})")
    return PROTOCOLS[name]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def participant_id(i: int, n: int) -> str:
    return f"P{i + 1:0{max(2, len(str(n)))}d}"


# --- balancing ------------------------------------------------------------------------------

def balanced_sides(groups: Sequence[tuple[str, str]], rng: np.random.Generator) -> list[str]:
    """A side for the *first* item of each trial, balanced within each group and each family.

    ``groups`` are ``(family, group)`` pairs, e.g. ``("main", method)``. Within a group of size
    g the first item goes left floor(g/2) or ceil(g/2) times; within a family, groups of odd
    size take turns (in random order) to give their extra trial to the left or the right, so
    the counts of the second item (the other method, or the real photo) differ by at most 1 too.
    """
    order: dict[tuple[str, str], list[int]] = {}
    for i, g in enumerate(groups):
        order.setdefault(g, []).append(i)
    keys = [list(order)[j] for j in rng.permutation(len(order))]
    extra_left = {fam: bool(rng.integers(2)) for fam in sorted({f for f, _ in order})}
    sides: list[str] = [""] * len(groups)
    for g in keys:
        idx = order[g]
        half = len(idx) // 2
        labels = ["left"] * half + ["right"] * half
        if len(idx) % 2:
            labels.append("left" if extra_left[g[0]] else "right")
            extra_left[g[0]] = not extra_left[g[0]]
        perm = rng.permutation(len(labels))
        for i, j in zip(idx, perm):
            sides[i] = labels[j]
    return sides


# --- making a study -------------------------------------------------------------------------

@dataclass(frozen=True)
class Item:
    """One shown image before rendering: its source file, what it is, and the scale."""

    source: Path
    label: str  # a method name, REAL or PAINTING
    scale: int


@dataclass
class Sources:
    """Everything a study draws from.

    ``generated[method][painting id]`` is that method's translation of the painting;
    ``paintings[painting id]`` the test painting itself (coherency's reference); ``real`` the
    photos generated images are compared with (vs-real); ``practice_paintings`` and
    ``practice_photos`` (training splits) feed catch and practice trials. ``names`` maps a
    source file to the name written in the key (relative to its split).
    """

    generated: Mapping[str, Mapping[str, Path]]
    paintings: Mapping[str, Path]
    real: Sequence[Path]
    practice_paintings: Sequence[Path]
    practice_photos: Sequence[Path]
    runs: Mapping[str, str]  # method -> run id (key only)
    artist: str
    names: Mapping[Path, str] | None = None

    def name(self, path: Path) -> str:
        return (self.names or {}).get(Path(path), Path(path).name)


class _Images:
    """Renders each (source, scale) once into ``images/`` under a random name."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.done: dict[tuple[Path, int], tuple[str, str]] = {}

    def __call__(self, source: Path, scale: int) -> tuple[str, str]:
        key = (Path(source), scale)
        if key not in self.done:
            with Image.open(source) as im:
                img = ImageOps.fit(im.convert("RGB"), (scale, scale), Image.Resampling.LANCZOS)
            # a fresh image from the pixels alone: no EXIF, ICC profile, text chunks or comments
            clean = Image.frombytes("RGB", img.size, img.tobytes())
            buf = io.BytesIO()
            clean.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
            data = buf.getvalue()
            name = secrets.token_hex(8) + IMAGE_EXT
            (self.folder / name).write_bytes(data)
            self.done[key] = (name, hashlib.sha256(data).hexdigest())
        return self.done[key]


def _pair_trials(proto: Protocol, methods: Sequence[str], src: Sources, n_trials: int,
                 scales: Sequence[int], rng: np.random.Generator) -> list[dict[str, Any]]:
    """The main trials of one participant, before sides: each an (item, item) pair and its cluster."""
    common = sorted(set.intersection(*(set(src.generated[m]) for m in methods)))
    if proto.name in ("realism", "coherency"):
        if n_trials > len(common):
            raise ArtshiftError(f"{n_trials} trials need {n_trials} paintings translated by every method, "
                                f"only {len(common)} are", hint="ask for fewer --trials")
        chosen = [common[i] for i in rng.permutation(len(common))[:n_trials]]
        s = scales[0]
        return [{"painting": p, "scale": s, "group": "pair",
                 "first": Item(src.generated[methods[0]][p], methods[0], s),
                 "second": Item(src.generated[methods[1]][p], methods[1], s),
                 "reference": Item(src.paintings[p], PAINTING, s) if proto.reference else None}
                for p in chosen]
    # vs-real: each painting once (through one of the methods), each real photo once
    if n_trials > len(common):
        raise ArtshiftError(f"{n_trials} trials need {n_trials} translated paintings, only {len(common)} are",
                            hint="ask for fewer --trials")
    if n_trials > len(src.real):
        raise ArtshiftError(f"{n_trials} trials need {n_trials} real photos, only {len(src.real)} are")
    chosen = [common[i] for i in rng.permutation(len(common))[:n_trials]]
    photos = [src.real[i] for i in rng.permutation(len(src.real))[:n_trials]]
    offset = list(rng.permutation(len(methods)))
    trials = []
    counts: Counter[str] = Counter()
    for k, (p, photo) in enumerate(zip(chosen, photos)):
        m = methods[(k + offset[0]) % len(methods)]
        s = scales[(counts[m] + offset[methods.index(m) % len(offset)]) % len(scales)]
        counts[m] += 1
        trials.append({"painting": p, "scale": s, "group": m, "first": Item(src.generated[m][p], m, s),
                       "second": Item(photo, REAL, s), "reference": None})
    return trials


def _side_trials(proto: Protocol, paintings: Sequence[Path], photos: Sequence[Path], kind: str,
                 scale: int) -> list[dict[str, Any]]:
    """Catch or practice trials: an obvious painting against a real photo (coherency: the
    reference painting itself against a photo), answer balanced over the sides."""
    out = []
    for painting, photo in zip(paintings, photos):
        expected = Item(painting, PAINTING, scale) if proto.reference else Item(photo, REAL, scale)
        other = Item(photo, REAL, scale) if proto.reference else Item(painting, PAINTING, scale)
        out.append({"painting": None, "scale": scale, "group": kind, "first": expected, "second": other,
                    "reference": Item(painting, PAINTING, scale) if proto.reference else None, "kind": kind})
    return out


def plan_study(*, protocol_name: str, methods: Sequence[str], sources: Sources, participants: int, trials: int,
               seed: int, scales: Sequence[int] | None = None, catch: int = 2,
               practice: int = 1) -> dict[str, list[dict[str, Any]]]:
    """Every participant's numbered trials (practice first, then main and catch shuffled), with
    the item on each side; pure, so balancing can be checked over many seeds without images."""
    proto = protocol(protocol_name)
    methods = list(methods)
    scales = list(scales or proto.default_scales)
    if len(set(methods)) != len(methods):
        raise ArtshiftError(f"methods repeat: {', '.join(methods)}")
    if proto.name in ("realism", "coherency") and len(methods) != 2:
        raise ArtshiftError(f"the {proto.name} protocol compares exactly two methods, got {len(methods)}")
    if proto.name == "vs-real" and not methods:
        raise ArtshiftError("the vs-real protocol needs at least one method")
    if participants < 1 or trials < 1 or catch < 0 or practice < 0:
        raise ArtshiftError("--participants and --trials must be >= 1, --catch and --practice >= 0")
    if proto.name != "vs-real" and len(scales) != 1:
        raise ArtshiftError(f"the {proto.name} protocol shows one scale (the paper: 256), got {scales}")
    if not scales or any(s < 16 or s > 1024 for s in scales):
        raise ArtshiftError(f"scales must be between 16 and 1024 px, got {scales}")
    if len(sources.practice_paintings) < catch + practice or len(sources.practice_photos) < catch + practice:
        raise ArtshiftError(f"{catch} catch + {practice} practice trials need as many training paintings and "
                            f"photos (have {len(sources.practice_paintings)} and {len(sources.practice_photos)})")
    rng = np.random.default_rng(seed)
    plans: dict[str, list[dict[str, Any]]] = {}
    for i in range(participants):
        main = _pair_trials(proto, methods, sources, trials, scales, rng)
        for t in main:
            t["kind"] = "main"
        pi = rng.permutation(len(sources.practice_paintings))[:catch + practice]
        ph = rng.permutation(len(sources.practice_photos))[:catch + practice]
        side_paintings = [sources.practice_paintings[j] for j in pi]
        side_photos = [sources.practice_photos[j] for j in ph]
        catches = _side_trials(proto, side_paintings[:catch], side_photos[:catch], "catch", scales[0])
        practices = _side_trials(proto, side_paintings[catch:], side_photos[catch:], "practice", scales[0])
        tallied = main + catches
        ordered = practices + [tallied[j] for j in rng.permutation(len(tallied))]
        sides = balanced_sides([(t["kind"], t["group"]) for t in ordered], rng)
        plan = []
        for number, (t, side) in enumerate(zip(ordered, sides), start=1):
            other = "right" if side == "left" else "left"
            plan.append({"trial": number, "kind": t["kind"], "scale": t["scale"], "painting": t["painting"],
                         "expected": side if t["kind"] != "main" else None, side: t["first"], other: t["second"],
                         "reference": t["reference"]})
        plans[participant_id(i, participants)] = plan
    return plans


@dataclass
class MadeStudy:
    folder: Path
    tokens: dict[str, str]  # participant id -> token (shown once; only hashes are stored)


def make_study(out: Path, *, protocol_name: str, methods: Sequence[str], sources: Sources, participants: int,
               trials: int, seed: int, scales: Sequence[int] | None = None, catch: int = 2, practice: int = 1,
               pdf: bool = True) -> MadeStudy:
    """Write a complete study folder (see the module docstring); refuses a non-empty folder."""
    proto = protocol(protocol_name)
    scales = list(scales or proto.default_scales)
    plans = plan_study(protocol_name=protocol_name, methods=methods, sources=sources, participants=participants,
                       trials=trials, seed=seed, scales=scales, catch=catch, practice=practice)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ArtshiftError(f"{out} is a file", hint="choose a new --out folder")
    if out.exists() and any(out.iterdir()):
        raise ArtshiftError(f"{out} is not empty", hint="choose a new --out folder; a study is never overwritten")
    for sub in ("trials", "sheets", "key"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    images = _Images(out / "images")
    tokens = {pid: secrets.token_urlsafe(16) for pid in plans}
    key_rows: list[dict[str, Any]] = []
    public: dict[str, list[dict[str, Any]]] = {}
    for pid, plan in plans.items():
        rows = []
        for t in plan:
            entry: dict[str, Any] = {"participant": pid, "trial": t["trial"], "kind": t["kind"], "scale": t["scale"],
                                     "protocol": proto.name, "painting": t["painting"], "expected": t["expected"]}
            for s in SIDES:
                name, digest = images(t[s].source, t[s].scale)
                entry[s] = {"image": name, "sha256": digest, "method": t[s].label, "source": sources.name(t[s].source)}
            ref = t["reference"]
            entry["reference"] = None
            if ref is not None:
                name, digest = images(ref.source, ref.scale)
                entry["reference"] = {"image": name, "sha256": digest, "source": sources.name(ref.source)}
            rows.append(entry)
        key_rows.extend(rows)
        public[pid] = [{"trial": r["trial"], "practice": r["kind"] == "practice", "scale": r["scale"],
                        "left": r["left"]["image"], "right": r["right"]["image"],
                        "reference": r["reference"]["image"] if r["reference"] else None} for r in rows]
        (out / "trials" / f"{pid}.json").write_text(json.dumps({"participant": pid, "trials": public[pid]},
                                                               indent=1))
    study = {"schema_version": SCHEMA_VERSION, "protocol": proto.name, "question": proto.question,
             "scales": scales, "trials_per_participant": trials + catch + practice, "practice": practice,
             "participants": list(tokens), "token_sha256": {hash_token(tok): pid for pid, tok in tokens.items()}}
    (out / "study.json").write_text(json.dumps(study, indent=1))
    key = {"schema_version": SCHEMA_VERSION, "protocol": proto.name, "artist": sources.artist,
           "methods": list(methods), "runs": {m: sources.runs.get(m) for m in methods}, "seed": seed,
           "scales": scales, "catch": catch, "practice": practice, "trials": key_rows}
    (out / "key" / "key.json").write_text(json.dumps(key, indent=1))
    _write_key_csv(out / "key" / "key.csv", key_rows)
    (out / "tokens.txt").write_text(
        "# hand each participant one token; the study folder keeps only their sha256\n"
        + "".join(f"{pid}\t{tok}\n" for pid, tok in tokens.items()))
    (out / "tokens.txt").chmod(0o600)
    for pid, rows_ in public.items():
        (out / "sheets" / f"{pid}.html").write_text(sheet_html(pid, proto, rows_))
        if pdf:
            sheet_pdf(out / "sheets" / f"{pid}.pdf", pid, proto, rows_, out / "images")
    return MadeStudy(out, tokens)


def _write_key_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["protocol", "participant", "trial", "kind", "scale", "painting", "side", "letter", "method",
                    "image", "sha256", "source", "expected"])
        for r in rows:
            for s in SIDES:
                w.writerow([r["protocol"], r["participant"], r["trial"], r["kind"], r["scale"], r["painting"] or "",
                            s, LETTERS[s], r[s]["method"], r[s]["image"], r[s]["sha256"], r[s]["source"],
                            r["expected"] or ""])


# --- sheets -----------------------------------------------------------------------------------

def sheet_lines(pid: str, proto: Protocol, trials: list[dict[str, Any]]) -> list[str]:
    """Every text printed on a participant's sheet (the HTML and the PDF print exactly these)."""
    lines = [f"User study, participant {pid}", proto.question,
             "For each numbered pair tick A (left) or B (right). Pairs marked 'practice' are not counted."]
    for t in trials:
        lines.append(f"{t['trial']}" + (" (practice)" if t["practice"] else ""))
    return lines


def sheet_html(pid: str, proto: Protocol, trials: list[dict[str, Any]]) -> str:
    import html

    title, question, note = (html.escape(s) for s in sheet_lines(pid, proto, trials)[:3])
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>"
             "body{font-family:sans-serif;margin:1.5cm} .trial{page-break-inside:avoid;margin:0 0 1.2em 0;"
             "display:flex;align-items:flex-end;gap:1.2em} .num{font-weight:bold;width:6em} figure{margin:0;"
             "text-align:center} img{width:5.5cm;height:5.5cm;image-rendering:auto} .box{font-size:1.2em}"
             "</style></head><body>",
             f"<h1>{title}</h1><p><b>{question}</b></p><p>{note}</p>"]
    for t, label in zip(trials, sheet_lines(pid, proto, trials)[3:]):
        parts.append(f"<div class='trial'><div class='num'>{html.escape(label)}</div>")
        if t["reference"]:
            parts.append(f"<figure><img src='../images/{t['reference']}' alt=''><figcaption>painting"
                         "</figcaption></figure>")
        for side in SIDES:
            parts.append(f"<figure><img src='../images/{t[side]}' alt=''><figcaption class='box'>"
                         f"&#9744; {LETTERS[side]}</figcaption></figure>")
        parts.append("</div>")
    parts.append("</body></html>\n")
    return "".join(parts)


def sheet_pdf(path: Path, pid: str, proto: Protocol, trials: list[dict[str, Any]], images: Path,
              per_page: int = 4) -> None:
    """The same sheet as a PDF (matplotlib, always installed), ``per_page`` pairs an A4 page."""
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    lines = sheet_lines(pid, proto, trials)
    cols = 3 if proto.reference else 2
    with PdfPages(path, metadata={"Title": lines[0], "Creator": "artshift", "Producer": "artshift"}) as pdf:
        for start in range(0, len(trials), per_page):
            fig = Figure(figsize=(8.27, 11.69))
            if start == 0:
                fig.text(0.5, 0.97, lines[0], ha="center", fontsize=14, weight="bold")
                fig.text(0.5, 0.945, lines[1], ha="center", fontsize=11)
                fig.text(0.5, 0.925, lines[2], ha="center", fontsize=8)
            chunk = trials[start:start + per_page]
            for row, t in enumerate(chunk):
                top = 0.9 - row * 0.22
                fig.text(0.05, top - 0.1, lines[3 + start + row], fontsize=12, weight="bold")
                shown = ([("painting", t["reference"])] if proto.reference else []) + \
                        [(f"[  ] {LETTERS[s]}", t[s]) for s in SIDES]
                for c, (caption, name) in enumerate(shown):
                    ax = fig.add_axes((0.2 + c * 0.78 / cols, top - 0.19, 0.7 / cols, 0.18))
                    with Image.open(images / name) as im:
                        ax.imshow(np.asarray(im.convert("RGB")))
                    ax.set_xticks([])
                    ax.set_yticks([])
                    ax.set_xlabel(caption, fontsize=11)
            pdf.savefig(fig)


# --- reading a study and its answers ----------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    participant: str
    trial: int
    side: str  # "left" or "right"
    choice: str | None = None  # the chosen image's file name (the page records it; paper sheets do not)
    rt_ms: float | None = None
    source: str = ""


def load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ArtshiftError(f"cannot read {path}: {exc.strerror}", hint="is this a folder from `bench study make`?") \
            from None
    except ValueError as exc:
        raise ArtshiftError(f"{path} is not valid JSON: {exc}") from None
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ArtshiftError(f"{path} has schema version {data.get('schema_version')}, this artshift reads "
                            f"{SCHEMA_VERSION}")
    return data


ANSWERS_SQL = """CREATE TABLE IF NOT EXISTS answers (
    participant TEXT NOT NULL, trial INTEGER NOT NULL, choice TEXT NOT NULL, side TEXT NOT NULL,
    rt_ms REAL, answered_at TEXT NOT NULL, PRIMARY KEY (participant, trial))"""


def read_db_answers(path: Path) -> list[Answer]:
    if not Path(path).exists():
        return []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT participant, trial, side, choice, rt_ms FROM answers ORDER BY participant, trial")
        return [Answer(p, int(t), s, c, rt, str(path)) for p, t, s, c, rt in rows]
    finally:
        con.close()


def read_csv_answers(path: Path) -> list[Answer]:
    """Answers typed from paper sheets: columns ``participant,trial,choice`` with choice A or B."""
    out = []
    try:
        fh = open(path, newline="")
    except OSError as exc:
        raise ArtshiftError(f"cannot read {path}: {exc.strerror}") from None
    with fh:
        reader = csv.DictReader(fh)
        missing = {"participant", "trial", "choice"} - set(reader.fieldnames or [])
        if missing:
            raise ArtshiftError(f"{path} lacks the column(s) {', '.join(sorted(missing))}",
                                hint="the header must be: participant,trial,choice (choice A or B)")
        for line, row in enumerate(reader, start=2):
            choice = (row["choice"] or "").strip().upper()
            side = {"A": "left", "B": "right", "LEFT": "left", "RIGHT": "right"}.get(choice)
            if side is None:
                if not choice:
                    continue  # left blank on the sheet: not answered
                raise ArtshiftError(f"{path}:{line}: choice {row['choice']!r} is not A or B")
            try:
                trial = int(row["trial"])
            except (TypeError, ValueError):
                raise ArtshiftError(f"{path}:{line}: trial {row['trial']!r} is not a sheet number") from None
            out.append(Answer(row["participant"].strip(), trial, side, source=f"{path}:{line}"))
    return out


# --- the tally ------------------------------------------------------------------------------

def cluster_bootstrap(y: np.ndarray, participants: Sequence[str], paintings: Sequence[str], *, b: int = BOOTSTRAP_B,
                      seed: int = 0, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of ``y`` under a two-way cluster bootstrap.

    Each replicate draws participants and paintings independently with replacement; a trial
    counts (times participant draws) x (times painting draws), which keeps both sources of
    correlation (Owen 2007's pigeonhole bootstrap). Replicates that draw no trial at all are
    dropped. Without any correlation the interval comes out wider than the independent one
    (up to sqrt(3) times when every trial has its own participant and painting): the
    pigeonhole bootstrap errs on the conservative side.
    """
    y = np.asarray(y, dtype=np.float64)
    if y.size == 0:
        return math.nan, math.nan
    pu, pi = np.unique(np.asarray(participants), return_inverse=True)
    qu, qi = np.unique(np.asarray(paintings), return_inverse=True)
    rng = np.random.default_rng(seed)
    rows = np.arange(b)[:, None]
    wp = np.zeros((b, len(pu)))
    np.add.at(wp, (rows, rng.integers(0, len(pu), (b, len(pu)))), 1.0)
    wq = np.zeros((b, len(qu)))
    np.add.at(wq, (rows, rng.integers(0, len(qu), (b, len(qu)))), 1.0)
    w = wp[:, pi] * wq[:, qi]
    total = w.sum(axis=1)
    keep = total > 0
    shares = (w[keep] @ y) / total[keep]
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(shares, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _join(key: dict[str, Any], answers: Iterable[Answer]) -> list[tuple[dict[str, Any], Answer]]:
    trials = {(r["participant"], r["trial"]): r for r in key["trials"]}
    seen: dict[tuple[str, int], Answer] = {}
    for a in answers:
        k = (a.participant, a.trial)
        if k not in trials:
            raise ArtshiftError(f"{a.source}: participant {a.participant!r} has no trial {a.trial} in this study",
                                hint="check the participant id (P01, ...) and the sheet's numbering")
        if k in seen:
            raise ArtshiftError(f"participant {a.participant} trial {a.trial} answered twice ({seen[k].source} "
                                f"and {a.source})", hint="keep one of them")
        if a.side not in SIDES:
            raise ArtshiftError(f"{a.source}: side {a.side!r} is not left or right")
        if a.choice is not None and a.choice != trials[k][a.side]["image"]:
            raise ArtshiftError(f"{a.source}: participant {a.participant} trial {a.trial}: the chosen image "
                                f"{a.choice} is not the one on the {a.side}", hint="the answers belong to "
                                                                                "another study folder")
        seen[k] = a
    return [(trials[k], a) for k, a in sorted(seen.items())]


def _prop_row(chosen: int, n: int, y: np.ndarray, parts: list[str], paints: list[str], seed: int, b: int,
              invert: bool = False) -> dict[str, Any]:
    w = wilson(chosen, n) if n else None
    lo, hi = cluster_bootstrap(y, parts, paints, b=b, seed=seed) if n else (math.nan, math.nan)
    if invert:
        lo, hi = 1 - hi, 1 - lo
    return {"chosen": chosen, "n": n, "share": chosen / n if n else None,
            "low": None if math.isnan(lo) else lo, "high": None if math.isnan(hi) else hi,
            "wilson_low": w.low if w else None, "wilson_high": w.high if w else None,
            "p_value": binomial_two_sided(chosen, n) if n else None}


def tally(key: dict[str, Any], answers: Iterable[Answer], *, max_catch_failures: int = 0,
          b: int = BOOTSTRAP_B) -> dict[str, Any]:
    """Shares of choices per method (per scale for vs-real) with intervals; JSON-ready."""
    joined = _join(key, answers)
    proto = protocol(key["protocol"])
    methods = list(key["methods"])
    seed = int(key.get("seed", 0))
    failures: Counter[str] = Counter()
    catch_answered = 0
    practice_answered = 0
    for t, a in joined:
        if t["kind"] == "catch":
            catch_answered += 1
            failures[a.participant] += a.side != t["expected"]
        elif t["kind"] == "practice":
            practice_answered += 1
    answered = sorted({a.participant for _, a in joined})
    excluded = sorted(p for p in answered if failures[p] > max_catch_failures)
    main = [(t, a) for t, a in joined if t["kind"] == "main"]
    kept = [(t, a) for t, a in main if a.participant not in excluded]
    rows: list[dict[str, Any]] = []

    def chosen_method(t: dict[str, Any], a: Answer) -> str:
        return t[a.side]["method"]

    if proto.name in ("realism", "coherency"):
        y = np.array([chosen_method(t, a) == methods[1] for t, a in kept], dtype=float)
        parts = [a.participant for _, a in kept]
        paints = [t["painting"] for t, _ in kept]
        for i, m in enumerate(methods):
            k = sum(chosen_method(t, a) == m for t, a in kept)
            rows.append({"test": proto.test, "scale": kept[0][0]["scale"] if kept else key["scales"][0],
                         "method": m, **_prop_row(k, len(kept), y, parts, paints, seed, b, invert=i == 0)})
    else:
        for scale in key["scales"]:
            for m in methods:
                sub = [(t, a) for t, a in kept if t["scale"] == scale and m in (t["left"]["method"],
                                                                                 t["right"]["method"])]
                y = np.array([chosen_method(t, a) == REAL for t, a in sub], dtype=float)
                parts = [a.participant for _, a in sub]
                paints = [t["painting"] for t, _ in sub]
                k_real = int(y.sum())
                rows.append({"test": proto.test, "scale": scale, "method": m, "chosen_real": k_real,
                             "real": _prop_row(k_real, len(sub), y, parts, paints, seed, b),
                             "generated": _prop_row(len(sub) - k_real, len(sub), y, parts, paints, seed, b,
                                                    invert=True),
                             "participants": len(set(parts))})
    counts = {"participants_invited": len(key.get("participants", [])) or len({r["participant"]
                                                                                 for r in key["trials"]}),
              "participants_answered": len(answered), "participants_excluded": len(excluded),
              "participants_tallied": len(answered) - len(excluded), "excluded": excluded,
              "trials_answered": len(main), "trials_excluded": len(main) - len(kept), "trials_tallied": len(kept),
              "catch_answered": catch_answered, "catch_failed": sum(failures.values()),
              "practice_answered_not_tallied": practice_answered, "max_catch_failures": max_catch_failures}
    if proto.name == "vs-real":
        counts["per_scale"] = {str(s): {"trials": sum(1 for t, _ in kept if t["scale"] == s),
                                        "participants": len({a.participant for t, a in kept if t["scale"] == s})}
                               for s in key["scales"]}
    return {"schema_version": SCHEMA_VERSION, "kind": TALLY_KIND, "protocol": proto.name, "question": proto.question,
            "artist": key.get("artist"), "methods": methods, "runs": key.get("runs", {}),
            "interval": {"headline": f"95% percentile interval, two-way cluster bootstrap (participants x paintings), "
                                     f"B = {b}", "B": b, "seed": seed,
                         "independent": "Wilson 95% and exact two-sided binomial test against 50%, "
                                        "trials treated as independent"},
            "rows": rows, "counts": counts}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ci(lo: float | None, hi: float | None) -> str:
    return "" if lo is None or hi is None else f" [{100 * lo:.1f}, {100 * hi:.1f}]"


def _p(p: float | None) -> str:
    return "-" if p is None else (f"{p:.3g}" if p >= 1e-4 else f"{p:.1e}")


def to_markdown(result: dict[str, Any]) -> str:
    """The tally in the layout of the paper's Table 2 (realism, coherency) or Table 3 (vs-real)."""
    c = result["counts"]
    lines: list[str] = []
    if result["protocol"] in ("realism", "coherency"):
        rows = result["rows"]
        scale = rows[0]["scale"] if rows else ""
        methods = [r["method"] for r in rows]
        lines += [f"User study ({result['protocol']}, {result['artist']}, {scale}x{scale}): share of votes, "
                  f"{result['interval']['headline']}", "",
                  "| test | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods),
                  f"| {rows[0]['test'] if rows else ''} | "
                  + " | ".join(_pct(r["share"]) + _ci(r["low"], r["high"]) for r in rows) + " |", "",
                  "Trials treated as independent (Wilson 95%, two-sided binomial test against 50%):", "",
                  "| test | " + " | ".join(methods) + " | n | p |", "|---|" + "---|" * (len(methods) + 2),
                  f"| {rows[0]['test'] if rows else ''} | "
                  + " | ".join(f"{r['chosen']} = {_pct(r['share'])}{_ci(r['wilson_low'], r['wilson_high'])}"
                               for r in rows)
                  + f" | {rows[0]['n'] if rows else 0} | {_p(rows[0]['p_value'] if rows else None)} |"]
    else:
        multi = len(result["methods"]) > 1
        lines += [f"User study (vs-real, {result['artist']}): which is more realistic, generated or a random real "
                  f"photo; {result['interval']['headline']}", "",
                  "| scale | " + ("method | " if multi else "") + "real chosen | generated chosen |",
                  "|---|" + ("---|" if multi else "") + "---|---|"]
        for r in result["rows"]:
            lines.append(f"| {r['scale']}x{r['scale']} | " + (f"{r['method']} | " if multi else "")
                         + f"{_pct(r['real']['share'])}{_ci(r['real']['low'], r['real']['high'])} | "
                         + f"{_pct(r['generated']['share'])}{_ci(r['generated']['low'], r['generated']['high'])} |")
        lines += ["", "Trials treated as independent (Wilson 95%, two-sided binomial test against 50%):", "",
                  "| scale | " + ("method | " if multi else "") + "real chosen | generated chosen | n | participants | p |",
                  "|---|" + ("---|" if multi else "") + "---|---|---|---|---|"]
        for r in result["rows"]:
            real, gen = r["real"], r["generated"]
            lines.append(f"| {r['scale']}x{r['scale']} | " + (f"{r['method']} | " if multi else "")
                         + f"{real['chosen']} = {_pct(real['share'])}{_ci(real['wilson_low'], real['wilson_high'])} | "
                         + f"{gen['chosen']} = {_pct(gen['share'])}{_ci(gen['wilson_low'], gen['wilson_high'])} | "
                         + f"{real['n']} | {r['participants']} | {_p(real['p_value'])} |")
    lines += ["", f"participants: {c['participants_answered']} answered of {c['participants_invited']}, "
                  f"{c['participants_excluded']} excluded (more than {c['max_catch_failures']} failed catch "
                  f"trials){': ' + ', '.join(c['excluded']) if c['excluded'] else ''}; "
                  f"trials: {c['trials_tallied']} tallied, {c['trials_excluded']} excluded; "
                  f"catch trials: {c['catch_answered']} answered, {c['catch_failed']} failed; "
                  f"practice answers (never tallied): {c['practice_answered_not_tallied']}"]
    return "\n".join(lines) + "\n"


def tally_folder(folder: Path, csv_files: Sequence[Path] = (), *, max_catch_failures: int = 0,
                 b: int = BOOTSTRAP_B, write: bool = True) -> dict[str, Any]:
    """Tally a study folder's page answers (``answers.sqlite``) plus any CSVs typed from sheets."""
    folder = Path(folder)
    key = load_json(folder / "key" / "key.json")
    study = load_json(folder / "study.json")
    key.setdefault("participants", study.get("participants", []))
    answers = read_db_answers(folder / "answers.sqlite")
    for f in csv_files:
        answers += read_csv_answers(Path(f))
    if not answers:
        raise ArtshiftError(f"no answers in {folder / 'answers.sqlite'}" + (" or the CSV files" if csv_files else ""),
                            hint="collect them with `bench study serve --dir DIR`, or pass --answers CSV typed "
                                 "from the sheets (participant,trial,choice)")
    result = tally(key, answers, max_catch_failures=max_catch_failures, b=b)
    if write:
        (folder / "tally.json").write_text(json.dumps(result, indent=1))
    return result
