"""User studies: balancing, nothing in a shown file or endpoint reveals the key, the tally,
answers through the local page over HTTP, and `bench study make|tally` on real ci runs."""

from __future__ import annotations

import csv
import hashlib
import http.client
import json
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from benchmark.core.errors import ArtshiftError
from reports import user_study as us

METHODS = ["cyclegan", "ours"]


def _image(path: Path, rng: np.random.Generator, size=(48, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    # metadata that must not survive re-encoding (a method's name in EXIF and a PNG text chunk)
    if path.suffix == ".png":
        from PIL import PngImagePlugin
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", "cyclegan ours")
        img.save(path, pnginfo=info)
    else:
        exif = Image.Exif()
        exif[0x0131] = "cyclegan ours"  # Software
        img.save(path, exif=exif)
    return path


def fake_sources(root: Path, paintings: int = 12, photos: int = 30, train: int = 8) -> us.Sources:
    """Fake translations of `paintings` test paintings by cyclegan and ours, plus photos."""
    rng = np.random.default_rng(0)
    ids = [f"cezanne_{i:03d}.jpg" for i in range(paintings)]
    return us.Sources(
        generated={m: {p: _image(root / "runs" / m / "translated" / f"{p}.png", rng) for p in ids} for m in METHODS},
        paintings={p: _image(root / "paintings" / "test" / p, rng) for p in ids},
        real=[_image(root / "photos" / "test" / f"photo_{i:03d}.jpg", rng) for i in range(photos)],
        practice_paintings=[_image(root / "paintings" / "train" / f"train_{i:03d}.jpg", rng) for i in range(train)],
        practice_photos=[_image(root / "photos" / "train" / f"tphoto_{i:03d}.jpg", rng) for i in range(train)],
        runs={"cyclegan": "run-cyclegan-0123", "ours": "run-ours-4567"}, artist="cezanne")


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> us.Sources:
    return fake_sources(tmp_path_factory.mktemp("sources"))


def _sides_ok(labels_left: list[str], labels_right: list[str]) -> None:
    left, right = Counter(labels_left), Counter(labels_right)
    for label in set(left) | set(right):
        assert abs(left[label] - right[label]) <= 1, (label, left[label], right[label])


@pytest.mark.parametrize("proto", ["realism", "coherency", "vs-real"])
def test_balance_and_no_repeats_over_many_seeds(sources, proto):
    methods = METHODS if proto != "vs-real" else ["cyclegan", "ours"]
    for seed in range(50):
        n_trials = 1 + seed % 12
        catch, practice = seed % 3, seed % 2
        scales = [256] if proto != "vs-real" else [256, 170, 128][: 1 + seed % 3]
        plans = us.plan_study(protocol_name=proto, methods=methods, sources=sources, participants=3,
                              trials=n_trials, seed=seed, scales=scales, catch=catch, practice=practice)
        assert list(plans) == ["P01", "P02", "P03"]
        orders = set()
        for plan in plans.values():
            assert [t["trial"] for t in plan] == list(range(1, n_trials + catch + practice + 1))
            kinds = [t["kind"] for t in plan]
            assert kinds[:practice] == ["practice"] * practice  # practice first, then main and catch mixed
            assert Counter(kinds) == Counter({"main": n_trials, "catch": catch, "practice": practice}) - Counter()
            shown = [t[s].source for t in plan for s in us.SIDES] + [t["reference"].source for t in plan
                                                                     if t["reference"] is not None
                                                                     and t["kind"] == "main"]
            assert len(shown) == len(set(shown)), "an image repeats for one participant"
            for t in plan:  # coherency catch/practice: the reference painting is the faithful answer
                if t["reference"] is not None and t["kind"] != "main":
                    assert t["reference"] == t[t["expected"]]
            for kind in ("main", "catch", "practice"):
                rows = [t for t in plan if t["kind"] == kind]
                _sides_ok([t["left"].label for t in rows], [t["right"].label for t in rows])
            expected = [t["expected"] for t in plan if t["kind"] == "catch"]
            assert abs(expected.count("left") - expected.count("right")) <= 1
            for t in plan:
                if t["kind"] == "main":
                    labels = {t["left"].label, t["right"].label}
                    assert labels == set(METHODS) if proto != "vs-real" else us.REAL in labels
                    assert t["painting"] is not None
                else:  # catch/practice: a training painting against a training photo
                    assert {t["left"].label, t["right"].label} == {us.PAINTING, us.REAL}
                    assert t[t["expected"]].label == (us.PAINTING if proto == "coherency" else us.REAL)
                    assert "train" in str(t["left"].source) and "train" in str(t["right"].source)
            if proto == "vs-real":
                for m in methods:  # each method's trials spread evenly over the scales
                    per = Counter(t["scale"] for t in plan if t["kind"] == "main" and m in
                                  (t["left"].label, t["right"].label))
                    counts = [per[s] for s in scales]
                    assert max(counts) - min(counts) <= 1
            orders.add(tuple(str(t["left"].source) for t in plan))
        if n_trials > 3:
            assert len(orders) > 1, "participants share one order"
    again = us.plan_study(protocol_name=proto, methods=methods, sources=sources, participants=2, trials=5, seed=7)
    assert again == us.plan_study(protocol_name=proto, methods=methods, sources=sources, participants=2, trials=5,
                                  seed=7)


def test_plan_refuses_impossible_requests(sources):
    with pytest.raises(ArtshiftError, match="need 13 paintings"):
        us.plan_study(protocol_name="realism", methods=METHODS, sources=sources, participants=1, trials=13, seed=0)
    with pytest.raises(ArtshiftError, match="exactly two methods"):
        us.plan_study(protocol_name="realism", methods=["ours"], sources=sources, participants=1, trials=3, seed=0)
    with pytest.raises(ArtshiftError, match="one scale"):
        us.plan_study(protocol_name="coherency", methods=METHODS, sources=sources, participants=1, trials=3, seed=0,
                      scales=[256, 128])
    with pytest.raises(ArtshiftError, match="unknown protocol"):
        us.plan_study(protocol_name="beauty", methods=METHODS, sources=sources, participants=1, trials=3, seed=0)
    with pytest.raises(ArtshiftError, match="catch"):
        us.plan_study(protocol_name="realism", methods=METHODS, sources=sources, participants=1, trials=3, seed=0,
                      catch=6, practice=3)


def make(tmp_path: Path, sources: us.Sources, proto: str = "realism", **kw) -> us.MadeStudy:
    args = {"participants": 2, "trials": 6, "seed": 3, "catch": 2, "practice": 1, "pdf": False} | kw
    return us.make_study(tmp_path / f"study-{proto}", protocol_name=proto,
                         methods=METHODS, sources=sources, **args)


def _secrets(sources: us.Sources) -> list[bytes]:
    """Strings that would reveal the key: method names, run ids, source file names."""
    words = list(METHODS) + list(sources.runs.values())
    words += [p.name for m in sources.generated.values() for p in m.values()]
    words += [p.name for p in sources.real] + [p.name for p in sources.paintings.values()]
    words += [p.stem for p in sources.practice_photos]
    return [w.lower().encode() for w in words]


def test_nothing_shown_reveals_the_key(tmp_path, sources):
    made = make(tmp_path, sources, "coherency", pdf=True, participants=1, trials=3, catch=1, practice=1)
    folder = made.folder
    key = json.loads((folder / "key" / "key.json").read_text())
    assert key["methods"] == METHODS and key["runs"] == sources.runs
    shown = [p for p in folder.rglob("*") if p.is_file() and "key" not in p.relative_to(folder).parts]
    assert {p.relative_to(folder).parts[0] for p in shown} == {"images", "sheets", "trials", "study.json",
                                                                 "tokens.txt"}
    for path in shown:
        blob = path.read_bytes().lower()
        for word in _secrets(sources):
            assert word not in blob, f"{word!r} in {path}"
        assert b'"sha256"' not in blob
    assert (folder / "sheets" / "P01.pdf").read_bytes().startswith(b"%PDF")
    trials = json.loads((folder / "trials" / "P01.json").read_text())["trials"]
    for line in us.sheet_lines("P01", us.PROTOCOLS["coherency"], trials):
        assert not any(m in line.lower() for m in METHODS)
    # every shown image: one format and size per scale, no metadata, a random name, hash in the key
    digests = {r[s]["image"]: r[s]["sha256"] for r in key["trials"] for s in us.SIDES}
    for path in (folder / "images").iterdir():
        assert us.IMAGE_NAME_RE.match(path.name), path.name
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.size == (256, 256)
            assert not im.getexif() and "icc_profile" not in im.info and "comment" not in im.info
            assert set(im.info) <= {"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi"}, im.info
        if path.name in digests:
            assert hashlib.sha256(path.read_bytes()).hexdigest() == digests[path.name]
    # tokens are stored hashed only; the plain list is for the researcher
    study = json.loads((folder / "study.json").read_text())
    assert made.tokens["P01"] not in (folder / "study.json").read_text()
    assert study["token_sha256"] == {us.hash_token(made.tokens["P01"]): "P01"}
    with open(folder / "key" / "key.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["method"] for r in rows if r["kind"] == "main"} == set(METHODS)
    with pytest.raises(ArtshiftError, match="not empty"):
        make(tmp_path, sources, "coherency")


def _answers_from(key: dict, choose) -> list[us.Answer]:
    return [us.Answer(r["participant"], r["trial"], choose(r)) for r in key["trials"]]


def test_tally_shares_intervals_and_exclusions(tmp_path, sources):
    made = make(tmp_path, sources, participants=4, trials=10, catch=2, practice=1)
    key = json.loads((made.folder / "key" / "key.json").read_text())

    def choose(r):  # P01 fails a catch trial; everyone picks 'ours' on 7 of 10 main trials
        if r["kind"] != "main":
            wrong = r["participant"] == "P01" and r["kind"] == "catch"
            return ("left" if r["expected"] == "right" else "right") if wrong else r["expected"] or "left"
        pick = "ours" if r["painting"] < "cezanne_007" else "cyclegan"
        return next(s for s in us.SIDES if r[s]["method"] == pick)

    answers = _answers_from(key, choose)
    res = us.tally(key, answers)
    c = res["counts"]
    assert c["excluded"] == ["P01"] and c["participants_answered"] == 4 and c["participants_tallied"] == 3
    assert c["trials_answered"] == 40 and c["trials_tallied"] == 30 and c["trials_excluded"] == 10
    assert c["catch_answered"] == 8 and c["catch_failed"] == 2 and c["practice_answered_not_tallied"] == 4
    ours = next(r for r in res["rows"] if r["method"] == "ours")
    cyc = next(r for r in res["rows"] if r["method"] == "cyclegan")
    truth = sum(1 for t, a in zip(key["trials"], answers) if t["kind"] == "main" and t["participant"] != "P01"
                and t[a.side]["method"] == "ours")
    assert ours["chosen"] == truth and ours["n"] == 30 and cyc["chosen"] == 30 - truth
    ref = stats.binomtest(truth, 30).proportion_ci(confidence_level=0.95, method="wilson")
    assert ours["wilson_low"] == pytest.approx(ref.low) and ours["wilson_high"] == pytest.approx(ref.high)
    assert ours["p_value"] == pytest.approx(stats.binomtest(truth, 30, 0.5).pvalue)
    assert ours["low"] <= ours["share"] <= ours["high"]
    assert cyc["low"] == pytest.approx(1 - ours["high"]) and cyc["high"] == pytest.approx(1 - ours["low"])
    assert res == us.tally(key, answers), "the tally is not reproducible"
    assert us.tally(key, answers, max_catch_failures=2)["counts"]["participants_excluded"] == 0
    text = us.to_markdown(res)
    assert "| test | cyclegan | ours |" in text and "| Realism of the generation |" in text
    assert "trials treated as independent" in text.lower() and "B = 2000" in text
    assert json.loads(json.dumps(res))["schema_version"] == us.SCHEMA_VERSION


def test_cluster_bootstrap_is_wider_when_participants_disagree():
    # 6 participants x 10 paintings; three always pick one method, three the other: the
    # independent interval is narrow, the participant clustering makes the honest one wide
    parts = [f"P{i}" for i in range(6) for _ in range(10)]
    paints = [f"q{j}" for _ in range(6) for j in range(10)]
    y = np.array([1.0 if int(p[1:]) < 3 else 0.0 for p in parts])
    lo, hi = us.cluster_bootstrap(y, parts, paints, b=2000, seed=0)
    w = us.wilson(30, 60)
    assert hi - lo > 1.5 * (w.high - w.low)
    assert 0 <= lo < 0.5 < hi <= 1
    # no clustering signal, every trial its own participant and painting: at least as wide as
    # the independent interval, at most sqrt(3) times (the pigeonhole bootstrap's known excess)
    y2 = np.tile([1.0, 0.0], 30)
    parts2 = [f"P{i}" for i in range(60)]
    lo2, hi2 = us.cluster_bootstrap(y2, parts2, [f"q{i}" for i in range(60)], b=2000, seed=0)
    assert w.high - w.low < hi2 - lo2 < 1.9 * (w.high - w.low)


def test_vs_real_tally_per_scale_and_table(tmp_path, sources):
    made = make(tmp_path, sources, "vs-real", participants=3, trials=12, catch=1, practice=0)
    key = json.loads((made.folder / "key" / "key.json").read_text())
    answers = _answers_from(key, lambda r: r["expected"] or next(s for s in us.SIDES if r[s]["method"] == us.REAL))
    res = us.tally(key, answers)
    assert [(r["scale"], r["method"]) for r in res["rows"]] == [(s, m) for s in (256, 170, 128) for m in METHODS]
    for r in res["rows"]:
        assert r["real"]["share"] == 1.0 and r["generated"]["share"] == 0.0
    assert sum(r["real"]["n"] for r in res["rows"]) == 36
    assert {k: v["trials"] for k, v in res["counts"]["per_scale"].items()} == {"256": 12, "170": 12, "128": 12}
    text = us.to_markdown(res)
    assert "| scale | method | real chosen | generated chosen |" in text and "| 170x170 | ours | 100.0%" in text


def test_paper_sheet_csv_equals_page_answers(tmp_path, sources):
    made = make(tmp_path, sources, participants=2, trials=6)
    folder = made.folder
    key = json.loads((folder / "key" / "key.json").read_text())
    rng = np.random.default_rng(1)
    sides = {(r["participant"], r["trial"]): ("left", "right")[rng.integers(2)] for r in key["trials"]}
    # P01 answered on the page (written as the server does), P02 on paper
    con = sqlite3.connect(folder / "answers.sqlite")
    con.execute(us.ANSWERS_SQL)
    for r in key["trials"]:
        if r["participant"] == "P01":
            side = sides["P01", r["trial"]]
            con.execute("INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?)",
                        ("P01", r["trial"], r[side]["image"], side, 800.0, "2026-01-01T00:00:00"))
    con.commit()
    con.close()
    sheet = tmp_path / "typed.csv"
    with open(sheet, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["participant", "trial", "choice"])
        for (p, t), s in sides.items():
            if p == "P02":
                w.writerow([p, t, us.LETTERS[s].lower() if t % 2 else us.LETTERS[s]])
        w.writerow(["P02", 99, ""])  # a blank line on the sheet: not answered, ignored
    res = us.tally_folder(folder, [sheet])
    direct = us.tally(key | {"participants": ["P01", "P02"]},
                      [us.Answer(p, t, s) for (p, t), s in sides.items()])
    assert res["rows"] == direct["rows"] and res["counts"] == direct["counts"]
    assert json.loads((folder / "tally.json").read_text()) == res
    bad = tmp_path / "bad.csv"
    bad.write_text("participant,trial,choice\nP02,1,C\n")
    with pytest.raises(ArtshiftError, match="not A or B"):
        us.tally_folder(folder, [bad], write=False)
    bad.write_text("participant,trial,choice\nP01,1,A\n")
    with pytest.raises(ArtshiftError, match="answered twice"):
        us.tally_folder(folder, [bad], write=False)
    bad.write_text("participant,trial,choice\nP09,1,A\n")
    with pytest.raises(ArtshiftError, match="no trial 1"):
        us.tally_folder(folder, [bad], write=False)


# --- the collection page over HTTP ----------------------------------------------------------------

class Client:
    def __init__(self, port: int, token: str | None = None):
        self.port, self.token = port, token

    def request(self, method: str, path: str, body: dict | None = None, token: str | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Content-Type": "application/json"}
        if token or self.token:
            headers["X-Study-Token"] = token or self.token
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, data

    def json(self, method: str, path: str, body: dict | None = None):
        status, data = self.request(method, path, body)
        return status, json.loads(data)


@pytest.fixture()
def served(tmp_path, sources):
    from reports.study_server import make_server

    made = make(tmp_path, sources, participants=2, trials=4, catch=1, practice=1)
    server = make_server(made.folder, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield made, server.server_address[1]
    server.shutdown()
    server.server_close()


def test_http_answers_are_stored_and_tallied(served):
    made, port = served
    key = json.loads((made.folder / "key" / "key.json").read_text())
    p1, p2 = Client(port, made.tokens["P01"]), Client(port, made.tokens["P02"])
    status, state = p1.json("GET", "/api/state")
    assert status == 200 and state["participant"] == "P01" and state["answered"] == []
    trials = state["trials"]
    assert [t["trial"] for t in trials] == list(range(1, 7)) and trials[0]["practice"]
    for t in trials:  # every image the participant is shown is served
        for side in us.SIDES:
            status, data = p1.request("GET", f"/images/{t[side]}")
            assert status == 200 and data == (made.folder / "images" / t[side]).read_bytes()
    given = {}
    for t in trials[:3]:
        side = "right" if t["trial"] % 2 else "left"
        assert p1.json("POST", "/api/answer", {"trial": t["trial"], "side": side, "rt_ms": 900 + t["trial"]}) == \
            (200, {"stored": t["trial"]})
        given[t["trial"]] = side
    # replayed, out of order, malformed: refused, nothing stored
    assert p1.json("POST", "/api/answer", {"trial": 2, "side": "left", "rt_ms": 1})[0] == 409
    assert p1.json("POST", "/api/answer", {"trial": 6, "side": "left", "rt_ms": 1})[0] == 409
    assert p1.json("POST", "/api/answer", {"trial": 77, "side": "left"})[0] == 400
    assert p1.json("POST", "/api/answer", {"trial": 4, "side": "middle"})[0] == 400
    assert p1.json("POST", "/api/answer", {"trial": 4, "side": "left", "rt_ms": -5})[0] == 400
    # a reload resumes: the state says what is answered
    assert p1.json("GET", "/api/state")[1]["answered"] == [1, 2, 3]
    # the second token sees its own (empty) progress and cannot answer for P01
    status, state2 = p2.json("GET", "/api/state")
    assert status == 200 and state2["participant"] == "P02" and state2["answered"] == []
    assert json.dumps(state2).find(made.tokens["P01"]) < 0
    assert p2.json("POST", "/api/answer", {"trial": 1, "side": "left", "rt_ms": 5})[0] == 200
    assert p1.json("GET", "/api/state")[1]["answered"] == [1, 2, 3]
    for t in trials[3:]:
        assert p1.json("POST", "/api/answer", {"trial": t["trial"], "side": "left", "rt_ms": 700})[0] == 200
        given[t["trial"]] = "left"
    con = sqlite3.connect(made.folder / "answers.sqlite")
    rows = con.execute("SELECT participant, trial, choice, side, rt_ms FROM answers ORDER BY participant, trial")
    stored = [r for r in rows]
    con.close()
    mine = [r for r in stored if r[0] == "P01"]
    assert [(r[1], r[3]) for r in mine] == sorted(given.items())
    assert all(r[2] == trials[r[1] - 1][r[3]] for r in mine)  # the chosen image is the one on that side
    assert mine[0][4] == 901.0
    res = us.tally_folder(made.folder)
    by_key = {(r["participant"], r["trial"]): r for r in key["trials"]}
    ours = sum(1 for n, s in given.items() if by_key["P01", n]["kind"] == "main" and by_key["P01", n][s]["method"]
               == "ours")
    catch_ok = all(by_key["P01", n]["expected"] == s for n, s in given.items() if by_key["P01", n]["kind"] == "catch")
    row = next(r for r in res["rows"] if r["method"] == "ours")
    assert res["counts"]["participants_answered"] == 2  # P02 answered its practice pair only
    if catch_ok:
        assert (row["chosen"], row["n"]) == (ours, 4)
    else:
        assert res["counts"]["excluded"] == ["P01"] and row["n"] == 0


def test_http_refuses_unknown_tokens_traversal_and_reveals_nothing(served, sources):
    made, port = served
    anon = Client(port)
    assert anon.json("GET", "/api/state")[0] == 403
    assert Client(port, "not-a-token").json("GET", "/api/state")[0] == 403
    assert Client(port, "not-a-token").json("POST", "/api/answer", {"trial": 1, "side": "left"})[0] == 403
    for path in ["/../key/key.json", "/images/../key/key.json", "/images/..%2fkey%2fkey.json",
                 "/static/../../reports/user_study.py", "/%2e%2e/key/key.json", "/key/key.json", "/tokens.txt",
                 "/study.json", "/answers.sqlite", "/trials/P01.json", "/sheets/P01.html", "/images/",
                 "/images/" + "0" * 16 + ".jpg", "/static/", "/static/..", "/api/key"]:
        assert anon.request("GET", path)[0] == 404, path
    assert anon.request("POST", "/api/state")[0] == 404
    from reports.study_server import Study

    assert Study(made.folder, exposure_s=1.0).state("P01")["exposure_ms"] == 1000  # --exposure 1
    with pytest.raises(ArtshiftError, match="exposure"):
        Study(made.folder, exposure_s=-1)
    token = Client(port, made.tokens["P01"])
    blobs = [anon.request("GET", p)[1] for p in ("/", "/static/app.js", "/static/style.css", "/static/index.html")]
    blobs.append(token.request("GET", "/api/state")[1])
    blobs.append(token.request("POST", "/api/answer", {"trial": 1, "side": "left", "rt_ms": 1})[1])
    for blob in blobs:
        for word in _secrets(sources):
            assert word not in blob.lower()


# --- the CLI on finished runs ---------------------------------------------------------------------

def finished_run(home: Path, domain, method: str, profile: str, tint: tuple[int, int, int]) -> str:
    """A finished run as `bench run` leaves it (store row, spec.json, DONE, translations), without
    training: a ci run of cyclegan and ours costs minutes of CPU, and the study only reads the
    translations. The translations are tinted copies of the test paintings."""
    from benchmark import data
    from benchmark.core.spec import SPEC_VERSION
    from benchmark.core.store import Store
    from benchmark.pipeline.runner import make_spec, run_dir_for
    from benchmark.pipeline.runs import output_name

    _, config, spec = make_spec(method, domain.artist, profile, 0, {}, data.split_fingerprint(domain))
    run_dir = run_dir_for(home, spec)
    for p in domain.paintings_test:
        out = run_dir / "translated" / output_name(domain.relpath(p))
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(p) as im:
            small = im.convert("RGB").resize((64, 64))
        Image.blend(small, Image.new("RGB", small.size, tint), 0.3).save(out)
    (run_dir / "spec.json").write_text(json.dumps({"spec": spec.as_dict(), "run_id": spec.run_id, "config": {},
                                                   "data_root": str(domain.root), "layout": domain.layout},
                                                  default=str))
    store = Store(home / "results.sqlite")
    store.start_run(spec.run_id, kind="run", method=method, artist=domain.artist, profile=profile, seed=0,
                    spec_json=spec.canonical_json(), run_dir=str(run_dir), data_fingerprint=spec.data_fingerprint,
                    spec_version=SPEC_VERSION)
    store.finish_run(spec.run_id, "done", {})
    (run_dir / "DONE").write_text("done\n")
    return spec.run_id


def test_cli_make_and_tally_on_finished_runs(shared_data, home, tmp_path):
    from typer.testing import CliRunner

    from benchmark.cli import build_app
    from benchmark.data import ensure_domain

    domain = ensure_domain("cezanne", shared_data, home, allow_download=False, progress=False)
    ids = {m: finished_run(home, domain, m, "ci", tint) for m, tint in zip(METHODS, [(255, 0, 0), (0, 0, 255)])}
    finished_run(home, domain, "cyclegan", "smoke", (0, 255, 0))  # no smoke 'ours': ci is the shared profile
    app, runner = build_app(), CliRunner()
    out = tmp_path / "study"
    res = runner.invoke(app, ["study", "make", "--protocol", "realism", "--artist", "cezanne", "--methods",
                              "cyclegan,ours", "--participants", "2", "--trials", "10", "--seed", "1", "--out",
                              str(out), "--data-root", str(shared_data), "--home", str(home)])
    assert res.exit_code == 0, res.output
    assert f"cyclegan: run {ids['cyclegan']} (ci, seed 0)" in res.output
    for pid in ("P01", "P02"):
        assert (out / "sheets" / f"{pid}.html").exists() and (out / "sheets" / f"{pid}.pdf").exists()
    key = json.loads((out / "key" / "key.json").read_text())
    assert key["methods"] == METHODS and key["runs"] == ids and len(key["trials"]) == 2 * (10 + 2 + 1)
    assert {r["painting"] for r in key["trials"] if r["kind"] == "main"} == {domain.relpath(p)
                                                                            for p in domain.paintings_test}
    assert all(r["left"]["source"].startswith("paintings/train/") or r["left"]["source"].startswith("photos/train/")
               for r in key["trials"] if r["kind"] != "main")
    typed = tmp_path / "typed.csv"
    typed.write_text("participant,trial,choice\n" + "".join(
        f"{r['participant']},{r['trial']},{us.LETTERS[r['expected'] or 'left']}\n" for r in key["trials"]))
    res = runner.invoke(app, ["study", "tally", "--dir", str(out), "--answers", str(typed)])
    assert res.exit_code == 0, res.output
    assert "| test | cyclegan | ours |" in res.output and "Realism of the generation" in res.output
    tally = json.loads((out / "tally.json").read_text())
    assert tally["counts"]["trials_tallied"] == 20 and tally["runs"] == ids
    left = sum(r["left"]["method"] == "ours" for r in key["trials"] if r["kind"] == "main")
    assert next(r for r in tally["rows"] if r["method"] == "ours")["chosen"] == left
    res = runner.invoke(app, ["study", "make", "--protocol", "realism", "--artist", "cezanne", "--runs",
                              ids["ours"], "--participants", "1", "--trials", "3", "--out", str(tmp_path / "x"),
                              "--home", str(home), "--data-root", str(shared_data)])
    assert res.exit_code != 0 and "exactly two methods" in str(res.exception)
    res = runner.invoke(app, ["study", "make", "--protocol", "realism", "--artist", "cezanne", "--methods",
                              "cyclegan,ours", "--profile", "smoke", "--participants", "1", "--trials", "3", "--out",
                              str(tmp_path / "y"), "--home", str(home), "--data-root", str(shared_data)])
    assert res.exit_code != 0 and "no finished ours run" in str(res.exception)


def test_reproduce_places_tallies_beside_the_papers_tables(tmp_path, sources):
    from reports import paper

    made = make(tmp_path / "realism", sources, participants=2, trials=10, catch=0, practice=0)
    key = json.loads((made.folder / "key" / "key.json").read_text())
    answers = _answers_from(key, lambda r: next(s for s in us.SIDES if r[s]["method"] == "ours"))
    (made.folder / "tally.json").write_text(json.dumps(us.tally(key, answers)))
    real = make(tmp_path / "vsreal", sources, "vs-real", participants=2, trials=6, catch=0, practice=0)
    rkey = json.loads((real.folder / "key" / "key.json").read_text())
    ranswers = _answers_from(rkey, lambda r: next(s for s in us.SIDES if r[s]["method"] == us.REAL))
    (real.folder / "tally.json").write_text(json.dumps(us.tally(rkey, ranswers)))
    text = paper.study_report(paper.reference("tomei2018"), [made.folder, real.folder])
    assert "| ours | 58.4% | 100.0%" in text and "+41.6 |" in text  # everyone chose ours: 100 - 58.4
    assert "| cyclegan | 41.6% | 0.0%" in text and "-41.6 |" in text
    assert "| 256x256 | ours | 4.9% | 0.0%" in text and "-4.9 |" in text and "| 128x128 | cyclegan | 12.0%" in text
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtshiftError, match="bench study tally --dir"):
        paper.study_report(paper.reference("tomei2018"), [tmp_path / "empty"])
