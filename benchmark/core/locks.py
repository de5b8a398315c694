"""One process at a time in a run directory: an O_EXCL lock file with owner and heartbeat.

Why not ``flock``: clusters keep runs on network file systems where advisory locks are
unreliable or silently local to one node; creating a file with O_EXCL is atomic on NFSv3+.
The lock file names its holder (host, pid, command) so a second process can say who has the
run; a heartbeat thread touches it every ``HEARTBEAT_S`` seconds, and a lock whose heartbeat
is older than ``STALE_S`` (a killed node) or whose holder on this host is dead is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from benchmark.core.errors import ArtshiftError

HEARTBEAT_S = 60.0
STALE_S = 600.0


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """``with RunLock(path): ...``; ``wait`` seconds to wait for a live holder (0: fail at once)."""

    def __init__(self, path: Path, *, wait: float = 0.0, what: str = "this run"):
        self.path = Path(path)
        self.wait = wait
        self.what = what
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def held(self) -> bool:
        """Whether a live process holds this lock now (read by `bench sweep status`)."""
        return self.path.exists() and not self._stale()

    def _stale(self) -> bool:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False
        info = self.holder()
        if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
            return not pid_alive(info["pid"]) or age > STALE_S
        return age > STALE_S

    def _try_create(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                       "command": " ".join(sys.argv)[:500]}, fh)
        return True

    def acquire(self) -> RunLock:
        deadline = time.monotonic() + self.wait
        while not self._try_create():
            if self._stale():
                stale = self.path.with_name(f"{self.path.name}.stale.{os.getpid()}")
                try:
                    os.replace(self.path, stale)  # one taker wins; the others retry against its new lock
                    stale.unlink(missing_ok=True)
                except FileNotFoundError:
                    pass
                continue
            if time.monotonic() >= deadline:
                info = self.holder()
                who = (f"process {info.get('pid')} on {info.get('host')} (started "
                       f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info.get('started', 0)))}: "
                       f"{info.get('command', '?')})") if info else "another process"
                raise ArtshiftError(f"{self.what} is in use by {who}; lock {self.path}",
                                    hint="wait for it to finish (or pass --wait SECONDS); if that process is gone, "
                                         f"the lock is taken over after {STALE_S / 60:.0f} minutes without a "
                                         "heartbeat")
            time.sleep(min(2.0, max(0.05, deadline - time.monotonic())))
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        info = self.holder()
        if info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
