"""Published tables as data, and our numbers beside them: ``bench reproduce tomei2018``.

A reproduction is judged by what it can support. At 4 methods per column an exact Kendall test
cannot reach p < 0.083, so no p-value is printed; instead each column says whether the paper's
order of the methods came out again (tau = 1) and, where it did not, which pairs swapped and
whether our gap between them is larger than two seed standard deviations (a swap inside the seed
noise says little). Absolute values are only comparable on the paper profile, with the
pretrained extractor, on the full CycleGAN release; anything else is said in plain words above
the tables, and each block shows a photo-vs-photo FID at the same n (test photos against the
rest of the test photos), the floor a perfect method would still pay at that sample size.

Which Inception the paper used is not known (see ``reports/data/tomei2018.toml``), so both the
FID Inception (``inception``) and the 2018 pytorch-fid torchvision network (``inception-tv2018``)
are shown where their rows exist.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark import data
from benchmark.core import paths
from benchmark.core.errors import ArtshiftError
from benchmark.core.profiles import check_profile
from benchmark.core.store import Store
from benchmark.features.extract import reference_stats
from benchmark.features.extractor import calibration_photos, is_random_init
from benchmark.metrics.fid import Stats, frechet_distance
from benchmark.pipeline import runner
from benchmark.pipeline.evaluate import make_extractor
from benchmark.pipeline.runs import find_run
from reports.leaderboard import load
from reports.user_study import SCHEMA_VERSION, TALLY_KIND

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXTRACTORS = ("inception", "inception-tv2018")
FLOOR_DRAWS = 5
FLOOR_SEED = 0


@dataclass(frozen=True)
class Reference:
    name: str
    title: str
    source: str
    artists: tuple[str, ...]
    methods: tuple[str, ...]
    method_names: dict[str, str]
    metric: str
    direction: str
    dims: tuple[int, ...]
    values: dict[int, dict[str, dict[str, float]]]  # dims -> method -> artist -> published value
    raw: dict[str, Any]

    def value(self, dims: int, method: str, artist: str) -> float | None:
        return self.values.get(dims, {}).get(method, {}).get(artist)


def known_references() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("reports").joinpath("data").iterdir()
                  if p.name.endswith(".toml"))


def reference(name: str) -> Reference:
    """A published table set from ``reports/data/<name>.toml``."""
    known = known_references()
    if name not in known:
        import difflib

        close = difflib.get_close_matches(name, known, n=1)
        raise ArtshiftError(f"unknown paper {name!r} (known: {', '.join(known)})",
                            hint=f"did you mean {close[0]!r}?" if close else "e.g. `bench reproduce tomei2018`")
    raw = tomllib.loads(resources.files("reports").joinpath("data", f"{name}.toml").read_text(encoding="utf-8"))
    t1 = raw["table1"]
    values = {int(d): {m: {a: float(v) for a, v in row.items()} for m, row in table.items()}
              for d, table in t1["values"].items()}
    return Reference(raw["name"], raw["title"], raw["source"], tuple(raw["artists"]), tuple(raw["methods"]),
                     dict(raw["method_names"]), t1["metric"], t1["direction"], tuple(int(d) for d in t1["dims"]),
                     values, raw)


def check_artists(ref: Reference, artists: list[str] | None) -> list[str]:
    if not artists:
        return list(ref.artists)
    bad = [a for a in artists if a not in ref.artists]
    if bad:
        raise ArtshiftError(f"{ref.name} has no column for {', '.join(bad)} (its artists: {', '.join(ref.artists)})",
                            hint="drop --artist, or pick the paper's artists")
    return [a for a in ref.artists if a in artists]  # the paper's column order


# --- what is in the store, what is missing ---------------------------------------------------

def _store(home: Path | None) -> Any:
    return Store(paths.home(home) / "results.sqlite")


def _paper_runs(runs: pd.DataFrame, ref: Reference, profile: str, artists: list[str]) -> pd.DataFrame:
    """Trained runs of the paper's cells at ``profile`` with the method's own settings (no --set)."""
    return runs[(runs.kind == "run") & (runs.profile == profile) & (runs.overrides == "")
                & runs.method.isin(ref.methods) & runs.artist.isin(artists)]


@dataclass
class Plan:
    to_run: list[tuple[str, str]]  # (method, artist) without a finished run
    to_measure: list[dict[str, Any]]  # finished runs not yet measured with inception-tv2018


def plan(ref: Reference, profile: str, artists: list[str], *, home: Path | None = None) -> Plan:
    check_profile(profile)
    store = _store(home)
    df, runs = load(store)
    mine = _paper_runs(runs, ref, profile, artists)
    done = mine[mine.status == "done"]
    to_run = [(m, a) for a in artists for m in ref.methods
              if done[(done.method == m) & (done.artist == a)].empty]
    measured = set(df[df.layer.str.startswith("inception-tv2018:")].run_id) if not df.empty else set()
    to_measure = [dict(r) for _, r in done.iterrows() if r.run_id not in measured]
    return Plan(to_run, to_measure)


def describe_plan(p: Plan, profile: str) -> str:
    lines = [f"would run (profile {profile}, seed 0): {m} / {a}" for m, a in p.to_run]
    lines += [f"would measure with inception-tv2018: run {r['run_id']} ({r['method']} / {r['artist']})"
              for r in p.to_measure]
    lines += [f"then measure with inception-tv2018 the {len(p.to_run)} new run(s)"] if p.to_run else []
    return "\n".join(lines or ["nothing to run: every cell has a finished run measured with both extractors"]) + "\n"


def execute_plan(p: Plan, profile: str, *, data_root: Path | None = None, home: Path | None = None,
                 device: str = "cpu", progress: bool = True):
    """Run the missing cells (each resumable), then measure every finished cell with inception-tv2018.

    Yields one line per step; a failed cell is reported and the others still run (the table then
    says why that cell is empty).
    """
    store = _store(home)
    for method, artist in p.to_run:
        try:
            res = runner.execute(method, artist, profile=profile, seed=0, data_root=data_root, home=home,
                                 device=device, progress=progress, store=store)
            yield f"ran {method} / {artist}: run {res.run_id}"
        except Exception as exc:  # one failed cell must not stop the others; the table says why
            yield f"{method} / {artist} failed: {str(exc).splitlines()[0]}"
    again = plan_from(store, p, profile)
    for r in again:
        try:
            run = find_run(store, run_id=r["run_id"])
            runner.evaluate_run(run, with_=["inception-tv2018"], home=home, data_root=data_root, device=device,
                                progress=progress, store=store)
            yield f"measured run {r['run_id']} ({r['method']} / {r['artist']}) with inception-tv2018"
        except Exception as exc:  # one failed cell must not stop the others; the table says why
            yield f"run {r['run_id']} not measured with inception-tv2018: {str(exc).splitlines()[0]}"


def plan_from(store: Any, p: Plan, profile: str) -> list[dict[str, Any]]:
    """The finished runs of the planned cells (old and new) that lack inception-tv2018 rows."""
    df, runs = load(store)
    cells = {(r["method"], r["artist"]) for r in p.to_measure} | set(p.to_run)
    done = runs[(runs.kind == "run") & (runs.profile == profile) & (runs.overrides == "") & (runs.status == "done")]
    measured = set(df[df.layer.str.startswith("inception-tv2018:")].run_id) if not df.empty else set()
    return [dict(r) for _, r in done.iterrows() if (r.method, r.artist) in cells and r.run_id not in measured]


# --- comparing --------------------------------------------------------------------------------

@dataclass
class Ours:
    mean: float | None
    std: float | None = None
    seeds: int = 0
    n_fake: int | None = None
    n_real: int | None = None
    why: str = ""

    def text(self) -> str:
        if self.mean is None:
            return f"- ({self.why})"
        s = f"{self.mean:.2f}"
        if self.seeds > 1 and self.std is not None:
            s += f" +- {self.std:.2f} ({self.seeds} seeds)"
        return f"{s} (n={self.n_fake}/{self.n_real})"


def kendall(paper: dict[str, float], ours: dict[str, float]) -> tuple[float | None, list[tuple[str, str]], list[str]]:
    """(tau-b over the methods both have, discordant pairs, methods left out); None below two methods."""
    from scipy.stats import kendalltau

    common = [m for m in paper if m in ours]
    if len(common) < 2:
        return None, [], [m for m in paper if m not in ours]
    tau = float(kendalltau([paper[m] for m in common], [ours[m] for m in common]).statistic)
    pairs = [(a, b) for i, a in enumerate(common) for b in common[i + 1:]
             if (paper[a] - paper[b]) * (ours[a] - ours[b]) < 0]
    return tau, pairs, [m for m in paper if m not in ours]


def verdict(ref: Reference, paper: dict[str, float], ours: dict[str, Ours]) -> tuple[str, str]:
    """(tau line, verdict line) for one column."""
    have = {m: o.mean for m, o in ours.items() if o.mean is not None}
    tau, pairs, left = kendall(paper, have)  # type: ignore[arg-type]
    if tau is None:
        return "tau: - (fewer than 2 methods measured)", "verdict: - (nothing to compare)"
    over = f" over {len(paper) - len(left)} of {len(paper)} methods (missing: {', '.join(left)})" if left else ""
    disc = "; discordant: " + ", ".join(f"{a}/{b}" for a, b in pairs) if pairs else "; no discordant pair"
    line = f"Kendall tau = {tau:.2f}{over}{disc}"
    if not pairs and tau > 1 - 1e-9:
        return line, "verdict: order reproduced" + (" among the methods measured" if left else "")
    parts = []
    better = "lower" if ref.direction == "lower" else "higher"
    for a, b in pairs:
        oa, ob = ours[a], ours[b]
        gap = abs(oa.mean - ob.mean)  # type: ignore[operator]
        if oa.std is None or ob.std is None:
            noise = "single seed: no seed sd to judge the gap"
        else:
            sd = max(oa.std, ob.std)
            noise = (f"gap {gap:.2f} > 2 seed sd ({2 * sd:.2f}): a real swap" if gap > 2 * sd
                     else f"gap {gap:.2f} <= 2 seed sd ({2 * sd:.2f}): within seed noise")
        first = a if (paper[a] < paper[b]) == (better == "lower") else b
        parts.append(f"{a}/{b} swapped (paper: {first} better; ours: {a} {oa.mean:.2f}, {b} {ob.mean:.2f}; {noise})")
    if not parts:
        parts.append("ties in our values")
    return line, "verdict: " + "; ".join(parts)


def _ours(df: pd.DataFrame, runs: pd.DataFrame, method: str, artist: str, layer: str, extractor_id: str,
          no_run: bool = False) -> Ours:
    part = df[(df.method == method) & (df.artist == artist) & (df.layer == layer) & (df.extractor_id == extractor_id)]
    if part.empty:
        same = runs[(runs.method == method) & (runs.artist == artist)]
        counts = same.status.value_counts().to_dict()
        if counts.get("done"):
            how = ": run without --no-run to measure it" if no_run else ""
            return Ours(None, why=f"not measured with {layer.partition(':')[0]}{how}")
        if counts:
            return Ours(None, why=", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        return Ours(None, why="no run")
    counts = part.groupby("data_fingerprint").run_id.nunique().sort_values(ascending=False)
    used = part[part.data_fingerprint == counts.index[0]]
    v = used.value.to_numpy(dtype=float)
    return Ours(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else None, len(v), int(used.n_fake.min()),
                int(used.n_real.min()))


def _pick_extractor(df: pd.DataFrame, name: str) -> str | None:
    """The extractor id of ``name`` to show: real weights when present, else the one with most rows."""
    rows = df[df.layer.str.startswith(name + ":")]
    if rows.empty:
        return None
    ids = rows.extractor_id.value_counts()
    real = [i for i in ids.index if not is_random_init(i)]
    return str(real[0]) if real else str(ids.index[0])


_NETWORKS = {"inception": "the FID Inception (TF 2015-12-05 weights, as pytorch-fid >= 0.3, clean-fid and "
                          "torch-fidelity use)",
             "inception-tv2018": "torchvision's ImageNet Inception-v3, the network the paper's pytorch-fid used"}


def _delta_note(name: str, ext_id: str, df: pd.DataFrame) -> str:
    """What the delta column compares: which Inception and which resize made the artshift column."""
    modes = sorted(set(df[df.extractor_id == ext_id].resize_mode.dropna().astype(str)))
    head = f"delta = artshift - paper, artshift measured with {_NETWORKS.get(name, name)} ({ext_id}), resize " \
           f"{', '.join(modes) or '-'}; the paper used torchvision's 2018 ImageNet Inception-v3 with bilinear " \
           "resizing (../shared/reference/tomei2018.md)."
    if is_random_init(ext_id):
        return head + " No delta: these are random-init weights, and the paper's columns are filled from real " \
                      "weights only."
    return head


def _layout(run_dirs: list[str]) -> set[str]:
    out = set()
    for d in run_dirs:
        try:
            out.add(json.loads((Path(d) / "spec.json").read_text()).get("layout", "unknown"))
        except (OSError, ValueError, TypeError):
            continue
    return out


def photo_features(extractor_name: str, extractor_id: str, layers: list[str], artist: str, run_dir: str | None, *,
                   home: Path | None, data_root: Path | None, device: str = "cpu") -> dict[str, np.ndarray] | str:
    """Features of the artist's test photos at ``layers`` (from the evaluation's cache when it has them),
    or why they cannot be had with the extractor ``extractor_id``."""
    try:
        root = paths.data_root(data_root) if data_root or not run_dir else \
            Path(json.loads((Path(run_dir) / "spec.json").read_text())["data_root"])
        h = paths.home(home)
        domain = data.ensure_domain(artist, root, h, progress=False)
        weights = "random" if is_random_init(extractor_id) else "pretrained"
        ex = make_extractor(weights, calibration_photos(domain), h, device=device, name=extractor_name)
        if ex.id != extractor_id:
            return f"extractor {extractor_id} cannot be rebuilt here: got {ex.id}"
        stats = reference_stats(ex, list(domain.photos_test), h / "cache" / "stats", layers=layers, progress=False)
    except (ArtshiftError, OSError, KeyError, ValueError) as exc:
        return str(exc).splitlines()[0]
    if any(stats[k].features is None for k in layers):
        return "the cached photo statistics carry no features"
    return {k: np.asarray(stats[k].features) for k in layers}


def photo_floor(feats: np.ndarray, n: int) -> str:
    """FID of ``n`` test photos against the other test photos (mean +- sd over seeded draws)."""
    if len(feats) - n < 2 or n < 2:
        return f"- ({len(feats)} test photos: too few for n={n} against the rest)"
    rng = np.random.default_rng(FLOOR_SEED)
    values = []
    for _ in range(FLOOR_DRAWS):
        idx = rng.permutation(len(feats))
        values.append(frechet_distance(Stats.from_features(feats[idx[n:]]), Stats.from_features(feats[idx[:n]])))
    v = np.asarray(values)
    return f"{v.mean():.2f} +- {v.std(ddof=1):.2f} (n={n}/{len(feats) - n}, {FLOOR_DRAWS} draws)"


def report(ref: Reference, profile: str, artists: list[str], *, home: Path | None = None,
           data_root: Path | None = None, device: str = "cpu", no_run: bool = False) -> str:
    """The paper's Table 1 beside ours, block by block, with tau, verdicts and the photo floor."""
    store = _store(home)
    df, runs = load(store)
    mine = _paper_runs(runs, ref, profile, artists)
    df = df[df.run_id.isin(mine.run_id) & (df.metric == ref.metric)] if not df.empty else df
    lines = [f"# {ref.title}: Table 1 ({ref.raw['table1']['caption']})", "",
             f"Source: {ref.source}.", f"Ours: profile {profile}, seed(s) as stored, methods' default settings; "
             f"paper | artshift | delta (artshift - paper) per artist.", ""]
    reasons = []
    if profile != "paper":
        reasons.append(f"profile {profile}, not paper")
    if not df.empty and df.extractor_id.map(is_random_init).any():
        reasons.append("random-init extractor weights (labelled [random-init]), not the pretrained networks")
    own = mine[(mine.status == "done") & mine.method_weights.astype(str).str.startswith("random-init")]
    if not own.empty:
        reasons.append(", ".join(sorted(set(own.method))) + " with its own network at random-init weights")
    layouts = _layout(list(mine[mine.status == "done"].run_dir.dropna()))
    if layouts - {"cyclegan"}:
        reasons.append("local subset data (layout " + ", ".join(sorted(layouts - {"cyclegan"}))
                       + "), not the full CycleGAN release")
    if reasons:
        lines += ["NOT COMPARABLE: absolute numbers here are not comparable with the paper's ("
                  + "; ".join(reasons) + "). Only the ranks (Kendall tau) carry information.", ""]
    if mine.empty:
        lines += [f"No runs at profile {profile} yet: `bench reproduce {ref.name} --profile {profile}` runs them "
                  f"(`--dry-run` lists them).", ""]
    photos: dict[tuple[str, str], dict[str, np.ndarray] | str] = {}
    for dims in ref.dims:
        lines += [f"## {ref.metric.upper()}-{dims} ({ref.direction} is better)", ""]
        for name in EXTRACTORS:
            ext_id = _pick_extractor(df, name) if not df.empty else None
            if ext_id is None:
                how = "`bench reproduce` without --no-run measures every finished run with it" \
                    if name != "inception" or not mine.empty else "no runs yet"
                lines += [f"### extractor {name}: no rows ({how})", ""]
                continue
            layer = f"{name}:{dims}"
            real = not is_random_init(ext_id)
            lines += [f"### extractor {name} ({ext_id})", "", _delta_note(name, ext_id, df), ""]
            header = ["method"] + [f"{a} {col}" for a in artists for col in ("paper", "artshift", "delta")]
            lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
            ours = {a: {m: _ours(df, mine[mine.artist == a], m, a, layer, ext_id, no_run) for m in ref.methods}
                    for a in artists}
            for m in ref.methods:
                cells = [f"{m} ({ref.method_names.get(m, m)})"]
                for a in artists:
                    p, o = ref.value(dims, m, a), ours[a][m]
                    delta = f"{o.mean - p:+.2f}" if (real and p is not None and o.mean is not None) else "-"
                    cells += [f"{p:.2f}" if p is not None else "- (not published)", o.text(), delta]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
            for a in artists:
                paper_col = {m: v for m in ref.methods if (v := ref.value(dims, m, a)) is not None}
                tau_line, verdict_line = verdict(ref, paper_col, ours[a])
                present = [o for o in ours[a].values() if o.mean is not None]
                if present:
                    if (name, a) not in photos:  # one extractor and one cache read per artist, all blocks
                        run_dir = next(iter(mine[(mine.artist == a) & (mine.status == "done")].run_dir.dropna()),
                                       None)
                        photos[name, a] = photo_features(name, ext_id, [f"{name}:{d}" for d in ref.dims], a,
                                                         run_dir, home=home, data_root=data_root, device=device)
                    got = photos[name, a]
                    floor = photo_floor(got[layer], present[0].n_fake or 0) if isinstance(got, dict) else f"- ({got})"
                else:
                    floor = "- (no runs for this artist)"
                lines += [f"- {a}: {tau_line}", f"  {verdict_line}", f"  photo floor (test photos vs the rest): {floor}"]
            lines.append("")
    lines += ["No p-value is given: with 4 methods the smallest exact Kendall p-value is 0.083.", ""]
    return "\n".join(lines)


# --- user studies: the paper's Tables 2-3 beside a tally.json of `bench study tally` -------------

_STUDY_ROWS = {"realism": "Realism of the generation", "coherency": "Coherency with the painting"}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def study_report(ref: Reference, folders: list[Path]) -> str:
    """Each study folder's tally (``tally.json``) beside the published Table 2 or 3, with deltas in points."""
    lines = ["", "## User studies: the paper's Tables 2-3 beside ours", ""]
    for folder in folders:
        path = Path(folder) / "tally.json"
        try:
            tally = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ArtshiftError(f"cannot read {path}: {exc}", hint=f"run `bench study tally --dir {folder}` first") \
                from None
        if tally.get("kind") != TALLY_KIND or tally.get("schema_version") != SCHEMA_VERSION:
            raise ArtshiftError(f"{path} is not a tally of this artshift (kind {tally.get('kind')!r}, schema "
                                f"{tally.get('schema_version')!r})", hint=f"tally it again: `bench study tally --dir {folder}`")
        proto, counts = tally["protocol"], tally["counts"]
        lines.append(f"{folder}: {proto}, {tally.get('artist')}, {counts['participants_tallied']} participants, "
                     f"{counts['trials_tallied']} trials ({tally['interval']['headline']})")
        lines.append("")
        if proto in _STUDY_ROWS:
            published = next(r for r in ref.raw["table2"]["rows"] if r["test"] == _STUDY_ROWS[proto])
            lines += ["| method | paper | artshift [95% CI] | delta (points) |", "|---|---|---|---|"]
            for r in tally["rows"]:
                paper = published.get(r["method"])
                ours = r["share"]
                delta = "" if paper is None or ours is None else f"{100 * ours - paper:+.1f}"
                ci = "" if r.get("low") is None else f" [{100 * r['low']:.1f}, {100 * r['high']:.1f}]"
                lines.append(f"| {r['method']} | {'-' if paper is None else f'{paper:.1f}%'} | {_pct(ours)}{ci} | "
                             f"{delta} |")
        else:
            published = {r["scale"]: r for r in ref.raw["table3"]["rows"]}
            lines += ["| scale | method | paper: generated chosen | artshift [95% CI] | delta (points) |",
                      "|---|---|---|---|---|"]
            for r in tally["rows"]:
                paper = published.get(f"{r['scale']}x{r['scale']}", {}).get("generated")
                gen = r["generated"]
                delta = "" if paper is None or gen["share"] is None else f"{100 * gen['share'] - paper:+.1f}"
                ci = "" if gen.get("low") is None else f" [{100 * gen['low']:.1f}, {100 * gen['high']:.1f}]"
                lines.append(f"| {r['scale']}x{r['scale']} | {r['method']} | "
                             f"{'-' if paper is None else f'{paper:.1f}%'} | {_pct(gen['share'])}{ci} | {delta} |")
        lines.append("")
    lines.append("The paper's studies used its own participants and trained models; read the deltas as a check of "
                 "the protocol, not of the paper.")
    return "\n".join(lines) + "\n"
