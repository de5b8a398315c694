"""The local collection page of a user study: one pair at a time, answers into SQLite.

Standard library only (``http.server.ThreadingHTTPServer`` + ``sqlite3``): a study is run on
one machine for a handful of people, and a participant's browser needs nothing beyond
``reports/study_page/`` (no CDN). Bound to 127.0.0.1 unless another address is asked for.

What is served, and nothing else: the page's own files, the study's images by their random
names, and two JSON endpoints that need the participant's token (header ``X-Study-Token``):
``GET /api/state`` (the participant's own numbered pairs and which of them are answered) and
``POST /api/answer`` (the next pair's answer). The key, the method names, the token list and
other participants' answers never leave the study folder. Every answer is stored as it is
given, so a reload resumes at the first unanswered pair; a pair already answered is refused
(409), as are unknown tokens (403) and any path outside the whitelist (404).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmark.core.errors import ArtshiftError
from reports.user_study import ANSWERS_SQL, IMAGE_NAME_RE, SIDES, hash_token, load_json

PAGE = Path(__file__).with_name("study_page")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".jpg": "image/jpeg"}
MAX_BODY = 4096


class Study:
    """A study folder as the page sees it: tokens (hashed), each participant's public pairs, the answers file."""

    def __init__(self, folder: Path, exposure_s: float | None = None):
        self.folder = Path(folder)
        info = load_json(self.folder / "study.json")
        self.question = info["question"]
        self.tokens: dict[str, str] = info["token_sha256"]
        self.trials: dict[str, list[dict[str, Any]]] = {}
        for pid in info["participants"]:
            self.trials[pid] = json.loads((self.folder / "trials" / f"{pid}.json").read_text())["trials"]
        self.images = {p.name for p in (self.folder / "images").iterdir() if IMAGE_NAME_RE.match(p.name)}
        self.page = {p.name: p for p in PAGE.iterdir() if p.is_file()}
        if exposure_s is not None and not (0 < exposure_s < 3600):
            raise ArtshiftError(f"exposure {exposure_s} s must be positive (e.g. 1 as in the pix2pix study)")
        self.exposure_s = exposure_s
        self.db = self.folder / "answers.sqlite"
        self._lock = threading.Lock()  # one writer at a time; SQLite also locks, this avoids busy errors
        with self._connect() as con:
            con.execute(ANSWERS_SQL)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.db, timeout=10)
        con.execute("PRAGMA journal_mode=WAL")
        return con

    def participant(self, token: str | None) -> str | None:
        return self.tokens.get(hash_token(token)) if token else None

    def answered(self, pid: str) -> list[int]:
        con = self._connect()
        try:
            return [r[0] for r in con.execute("SELECT trial FROM answers WHERE participant=? ORDER BY trial", (pid,))]
        finally:
            con.close()

    def state(self, pid: str) -> dict[str, Any]:
        return {"participant": pid, "question": self.question, "exposure_ms":
                None if self.exposure_s is None else round(self.exposure_s * 1000), "trials": self.trials[pid],
                "answered": self.answered(pid)}

    def answer(self, pid: str, body: dict[str, Any]) -> tuple[HTTPStatus, dict[str, Any]]:
        trial, side, rt = body.get("trial"), body.get("side"), body.get("rt_ms")
        numbers = [t["trial"] for t in self.trials[pid]]
        if not isinstance(trial, int) or isinstance(trial, bool) or trial not in numbers:
            return HTTPStatus.BAD_REQUEST, {"error": "no such trial"}
        if side not in SIDES:
            return HTTPStatus.BAD_REQUEST, {"error": "side must be left or right"}
        if rt is not None and (not isinstance(rt, (int, float)) or isinstance(rt, bool) or not math.isfinite(rt)
                               or rt < 0):
            return HTTPStatus.BAD_REQUEST, {"error": "rt_ms must be a non-negative number"}
        shown = self.trials[pid][numbers.index(trial)]
        with self._lock:
            con = self._connect()
            try:
                done = {r[0] for r in con.execute("SELECT trial FROM answers WHERE participant=?", (pid,))}
                if trial in done:
                    return HTTPStatus.CONFLICT, {"error": "this pair is already answered"}
                expected = next(n for n in numbers if n not in done)
                if trial != expected:
                    return HTTPStatus.CONFLICT, {"error": f"answer pair {expected} first"}
                with con:
                    con.execute("INSERT INTO answers (participant, trial, choice, side, rt_ms, answered_at) "
                                "VALUES (?, ?, ?, ?, ?, ?)",
                                (pid, trial, shown[side], side, None if rt is None else float(rt),
                                 time.strftime("%Y-%m-%dT%H:%M:%S%z")))
            finally:
                con.close()
        return HTTPStatus.OK, {"stored": trial}


def _handler(study: Study, quiet: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "artshift-study"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
            if not quiet:
                super().log_message(format, *args)

        def _send(self, status: HTTPStatus, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self'")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: HTTPStatus, obj: dict[str, Any]) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def _not_found(self) -> None:
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

        def _pid(self) -> str | None:
            pid = study.participant(self.headers.get("X-Study-Token"))
            if pid is None:
                self._json(HTTPStatus.FORBIDDEN, {"error": "unknown token"})
            return pid

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = urlsplit(self.path).path
            if path in ("/", "/index.html"):
                return self._file(study.page["index.html"])
            if path.startswith("/static/") and path[len("/static/"):] in study.page:
                return self._file(study.page[path[len("/static/"):]])
            if path.startswith("/images/") and path[len("/images/"):] in study.images:
                return self._file(study.folder / "images" / path[len("/images/"):])
            if path == "/api/state":
                pid = self._pid()
                if pid is not None:
                    self._json(HTTPStatus.OK, study.state(pid))
                return None
            return self._not_found()

        do_HEAD = do_GET

        def do_POST(self) -> None:  # noqa: N802
            if urlsplit(self.path).path != "/api/answer":
                return self._not_found()
            pid = self._pid()
            if pid is None:
                return None
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 < length <= MAX_BODY:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": "bad body"})
            try:
                body = json.loads(self.rfile.read(length))
            except ValueError:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": "body is not JSON"})
            if not isinstance(body, dict):
                return self._json(HTTPStatus.BAD_REQUEST, {"error": "body is not a JSON object"})
            status, reply = study.answer(pid, body)
            return self._json(status, reply)

        def _file(self, path: Path) -> None:
            self._send(HTTPStatus.OK, path.read_bytes(), CONTENT_TYPES.get(path.suffix, "application/octet-stream"))

    return Handler


def make_server(folder: Path, *, host: str = "127.0.0.1", port: int = 8765, exposure_s: float | None = None,
                quiet: bool = True) -> ThreadingHTTPServer:
    """A ready (not yet serving) server for the study in ``folder``; ``port=0`` picks a free port."""
    study = Study(folder, exposure_s)
    try:
        server = ThreadingHTTPServer((host, port), _handler(study, quiet))
    except OSError as exc:
        raise ArtshiftError(f"cannot listen on {host}:{port}: {exc.strerror}", hint="pick another --port") from None
    server.daemon_threads = True
    return server
