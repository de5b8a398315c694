"""The collection page in a real headless browser (Debian's chromium + chromium-driver):
open it with a token, answer three pairs, reload, answer the rest, check what was stored and
the tally. Skipped with a reason where the browser is missing, except under CI=true."""

from __future__ import annotations

import json
import os
import sqlite3
import threading

import pytest

from reports import user_study as us

CHROMIUM = os.environ.get("ARTSHIFT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ARTSHIFT_CHROMEDRIVER", "/usr/bin/chromedriver")


def _need_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    if missing:
        why = f"headless browser test needs {', '.join(missing)} (Debian: apt install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


def start_chromium(profile_dir, *, network_log: bool = False):
    """Headless system chromium with a fresh profile (skipped, or failed under CI=true, without it);
    ``network_log`` records every request for ``driver.get_log("performance")``."""
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={profile_dir}"):
        opts.add_argument(arg)
    if network_log:
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    # the driver path is given explicitly, so selenium-manager never looks for (or downloads) a browser
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(20)
    return driver


@pytest.fixture()
def browser(tmp_path):
    driver = start_chromium(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.quit()


def test_page_answers_reload_resume_and_tally(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from test_user_study import METHODS, fake_sources

    from reports.study_server import make_server

    sources = fake_sources(tmp_path / "sources", paintings=5, photos=6, train=3)
    made = us.make_study(tmp_path / "study", protocol_name="realism", methods=METHODS, sources=sources,
                         participants=2, trials=4, seed=5, catch=1, practice=1, pdf=False)
    server = make_server(made.folder, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    wait = WebDriverWait(browser, 15)
    clicked: dict[int, str] = {}

    def current() -> int:
        wait.until(lambda d: d.find_element(By.ID, "progress").get_attribute("data-trial")
                   and d.find_element(By.ID, "choose-left").is_enabled())
        return int(browser.find_element(By.ID, "progress").get_attribute("data-trial"))

    def answer() -> None:
        n = current()
        side = "left" if n % 2 else "right"
        browser.find_element(By.ID, f"choose-{side}").click()
        clicked[n] = side
        wait.until(lambda d: d.find_element(By.ID, "progress").get_attribute("data-trial") != str(n)
                   or d.find_element(By.ID, "done").is_displayed())

    try:
        browser.get(f"http://127.0.0.1:{port}/#t={made.tokens['P01']}")
        assert browser.find_element(By.ID, "question").text == us.PROTOCOLS["realism"].question
        for _ in range(3):
            answer()
        assert sorted(clicked) == [1, 2, 3]
        browser.refresh()
        assert current() == 4, "a reload does not resume at the first unanswered pair"
        while not browser.find_element(By.ID, "done").is_displayed():
            answer()
        assert sorted(clicked) == list(range(1, 7))
        page = browser.page_source.lower()
        assert not any(m in page for m in METHODS)
        browser.get(f"http://127.0.0.1:{port}/#t=not-a-token")
        wait.until(lambda d: d.find_element(By.ID, "login-error").is_displayed())
    finally:
        server.shutdown()
        server.server_close()

    con = sqlite3.connect(made.folder / "answers.sqlite")
    stored = con.execute("SELECT participant, trial, side, rt_ms FROM answers ORDER BY trial").fetchall()
    con.close()
    assert [(p, t, s) for p, t, s, _ in stored] == [("P01", n, clicked[n]) for n in range(1, 7)]
    assert all(rt is not None and rt >= 0 for *_, rt in stored)
    key = json.loads((made.folder / "key" / "key.json").read_text())
    res = us.tally_folder(made.folder)
    assert res == us.tally(key | {"participants": ["P01", "P02"]},
                           [us.Answer("P01", n, s) for n, s in clicked.items()])
    trials = {r["trial"]: r for r in key["trials"] if r["participant"] == "P01"}
    if all(trials[n]["expected"] == s for n, s in clicked.items() if trials[n]["kind"] == "catch"):
        ours = sum(trials[n][s]["method"] == "ours" for n, s in clicked.items() if trials[n]["kind"] == "main")
        assert next(r for r in res["rows"] if r["method"] == "ours")["chosen"] == ours
    else:
        assert res["counts"]["excluded"] == ["P01"]
