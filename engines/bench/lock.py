"""One sweep measures at a time on a machine: a lock file under the state directory.

Two sweeps timed at once (two terminals, or the app and the CLI) disturb each other's figures
and nothing in either says so. The runner takes this lock before its first child starts; a
second sweep waits for it, and its listener hears for whom (pid, run id, source). The lock is
an ``flock`` on ``$QBENCH_HOME/measure.lock``: the kernel releases it when its holder exits, so
a crashed sweep never leaves it taken. The holder's details are written into the file.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from engines.core.schema import now_iso
from engines.paths import qbench_home


def lock_path() -> Path:
    return qbench_home() / "measure.lock"


def read_holder(path: Path | None = None) -> dict[str, Any] | None:
    try:
        text = (path or lock_path()).read_text()
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None


class MeasurementLock:
    """``with MeasurementLock(run_id, source, on_wait=..., cancel=...):`` measures alone.

    ``on_wait(holder)`` is called once if the lock is taken (holder: pid, run_id, source, host,
    since); waiting polls every ``poll_s`` so that ``cancel`` (a threading.Event) can end it."""

    def __init__(self, run_id: str, source: str, on_wait: Callable[[dict[str, Any]], None] | None = None,
                 cancel: threading.Event | None = None, path: Path | None = None, poll_s: float = 0.25):
        self.run_id, self.source = run_id, source
        self.on_wait = on_wait or (lambda holder: None)
        self.cancel = cancel or threading.Event()
        self.path = path or lock_path()
        self.poll_s = poll_s
        self._fd: int | None = None
        self.waited_s = 0.0

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        t0 = time.monotonic()
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    self.on_wait(read_holder(self.path) or {"pid": None, "run_id": None, "source": "unknown"})
                    told = True
                if self.cancel.is_set():
                    os.close(fd)
                    from engines.bench.child import Cancelled

                    raise Cancelled from None
                time.sleep(self.poll_s)
        self.waited_s = time.monotonic() - t0
        holder = {"pid": os.getpid(), "run_id": self.run_id, "source": self.source, "host": socket.gethostname(),
                  "since": now_iso()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def describe_holder(holder: dict[str, Any]) -> str:
    """``run 20250101-… (pid 123, from the app)``: for whom a sweep waits."""
    source = {"tui": "the app", "cli": "qbench run"}.get(holder.get("source") or "", holder.get("source") or "?")
    run = holder.get("run_id") or "?"
    return f"run {run} (pid {holder.get('pid')}, {source}, since {holder.get('since', '?')})"
