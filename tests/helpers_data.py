"""Generated images, CycleGAN-layout zips and a small Range-capable HTTP server for data tests."""

from __future__ import annotations

import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = ("trainA", "testA", "trainB", "testB")


def jpeg_bytes(seed: int, size: int = 8) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write_images(folder: Path, n: int, seed: int = 0, ext: str = ".jpg") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{i:04d}{ext}"
        if ext == ".jpg":
            p.write_bytes(jpeg_bytes(seed * 1000 + i))
        else:
            arr = np.random.default_rng(seed * 1000 + i).integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


def make_cyclegan_tree(root: Path, name: str, counts: dict[str, int], seed: int = 0) -> Path:
    for k, split in enumerate(SPLITS):
        write_images(root / name / split, counts[split], seed=seed * 10 + k)
    return root / name


def make_zip(name: str, counts: dict[str, int], seed: int = 0, extra: list[tuple[zipfile.ZipInfo | str, bytes]] = (),
             dirs: bool = True) -> bytes:
    """A zip shaped like the CycleGAN release: ``<name>/<split>/<n>.jpg`` (+ ``extra`` raw members)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if dirs:
            zf.writestr(f"{name}/", b"")
        for k, split in enumerate(SPLITS):
            if dirs:
                zf.writestr(f"{name}/{split}/", b"")
            for i in range(counts[split]):
                zf.writestr(f"{name}/{split}/{i:04d}.jpg", jpeg_bytes(seed * 100000 + k * 1000 + i))
        for member, data in extra:
            zf.writestr(member, data)
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    server: FileServer

    def do_GET(self):  # noqa: N802 - http.server's naming
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if rng and srv.ranges:
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.path in srv.cut_once:  # simulate a dropped connection half-way
            srv.cut_once.discard(self.path)
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


class FileServer(ThreadingHTTPServer):
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1; records (path, Range header) per request."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.ranges = True
        self.cut_once: set[str] = set()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def stop(self):
        self.shutdown()
        self.server_close()
