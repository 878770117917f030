"""One variant's child process: start it, feed it its job, read its events, end it.

The parent waits on the child's event pipe with ``selectors`` (no busy loop), enforces a
timeout and a memory limit, and reports how the child ended so the runner can record it.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Cancelled(Exception):
    """The sweep's cancel flag was set while the child ran (the child has been killed)."""


def default_memory_limit_mb() -> float:
    import psutil

    return psutil.virtual_memory().total / 2**20 * 0.8


class WorkerProcess:
    """Runs ``python -m engines.bench.worker`` for one job; :meth:`kill` may be called from any thread."""

    def __init__(self, cancel: threading.Event):
        self.cancel = cancel
        self._proc: subprocess.Popen | None = None

    def run(self, job: dict[str, Any], handle: Callable[[dict[str, Any]], None], log_path: Path, threads: int,
            timeout_s: float, memory_limit_mb: float | None) -> tuple[int | None, str | None]:
        """Run the worker to its end; returns (exit code, the reason the parent ended it or None)."""
        import psutil

        read_fd, write_fd = os.pipe()
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        limit_mb = memory_limit_mb or default_memory_limit_mb()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "engines.bench.worker", str(write_fd)],
                stdin=subprocess.PIPE, stdout=log, stderr=log, pass_fds=(write_fd,), env=env,
                # Own process group: the terminal's Ctrl-C reaches the parent, which then ends
                # the child itself and records the run as interrupted.
                start_new_session=True,
            )
        os.close(write_fd)
        self._proc = proc
        ended_by: str | None = None
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(job).encode())
            proc.stdin.close()
            ps = psutil.Process(proc.pid)
            deadline = time.monotonic() + timeout_s
            buffer = b""
            with selectors.DefaultSelector() as sel:
                sel.register(read_fd, selectors.EVENT_READ)
                while True:
                    if self.cancel.is_set():
                        raise Cancelled
                    if sel.select(timeout=0.2):
                        chunk = os.read(read_fd, 1 << 16)
                        if not chunk:
                            break  # the child closed its end: it has exited
                        buffer += chunk
                        *lines, buffer = buffer.split(b"\n")
                        for line in lines:
                            if line.strip():
                                handle(json.loads(line))
                    if time.monotonic() > deadline:
                        ended_by = f"timed out after {timeout_s:.0f} s (killed)"
                        break
                    try:
                        rss_mb = ps.memory_info().rss / 2**20
                    except psutil.Error:
                        continue
                    if rss_mb > limit_mb:
                        ended_by = (f"out of memory: the process used {rss_mb:.0f} MB, over the "
                                    f"{limit_mb:.0f} MB limit (killed)")
                        break
        finally:
            os.close(read_fd)
            if ended_by:
                self.kill()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
                proc.wait()
            self._proc = None
        return proc.returncode, ended_by

    def kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
            proc.wait()


def exit_reason(returncode: int | None, log_path: Path) -> str:
    """Why a child ended without a result, in one line, with the last line of its log."""
    tail = ""
    try:
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        tail = lines[-1][:300] if lines else ""
    except OSError:
        pass
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"worker crashed: killed by {name}{hint}" + (f"; last log line: {tail}" if tail else "")
    return f"worker exited with code {returncode}" + (f": {tail}" if tail else "")
