"""The real ``qbench`` program loses its terminal (SSH dropped, window closed) at any moment —
during start-up, once it is up, in the middle of a sweep — and ends: no process is left, neither
the app nor a benchmark worker.

The program runs in a pseudo-terminal as a session leader (as a login shell's job would); closing
the pty's master side is the hang-up: the kernel sends SIGHUP to the program.
"""

from __future__ import annotations

import os
import pty
import select
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
FAST = {"QBENCH_MEASURE_MIN_TIME": "5", "QBENCH_MEASURE_MIN_REPS": "5", "QBENCH_MEASURE_WARMUP_S": "0",
        "QBENCH_MEASURE_WARMUP_REPS": "2", "QBENCH_MEASURE_MAX_TIME": "20"}


def _tagged(tag: str) -> list[psutil.Process]:
    """Every live process started with QBENCH_TEST_TAG=tag (children inherit the environment)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("QBENCH_TEST_TAG") == tag and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


class Terminal:
    """The program in a pseudo-terminal; its output is read as a terminal would."""

    def __init__(self, db: Path, env: dict[str, str] | None = None):
        self.tag = uuid.uuid4().hex
        environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        environ.update(TERM="xterm-256color", QBENCH_TEST_TAG=self.tag, **(env or {}))
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(ROOT)
            os.execvpe(sys.executable, [sys.executable, "-m", "qbench_tui", "--db", str(db)], environ)
        self.output = bytearray()
        self.open = True

    def read_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while self.open and time.monotonic() < end:
            ready, _, _ = select.select([self.fd], [], [], 0.02)
            if ready:
                try:
                    self.output += os.read(self.fd, 65536)
                except OSError:
                    return

    def wait_for(self, text: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while text.encode() not in self.output:
            assert time.monotonic() < end, f"{text!r} not shown in {timeout} s"
            self.read_for(0.1)

    def send(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def hang_up(self) -> None:
        os.close(self.fd)
        self.open = False

    def exit_status(self, timeout: float) -> int | None:
        """The program's exit code once it ends (None: still running after ``timeout``)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        return None

    def kill(self) -> None:
        for proc in _tagged(self.tag):
            proc.kill()
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


# From the first instant (Python still importing) to a fully drawn, loaded app: hung up at
# each, the program ends within the grace period and nothing it started survives.
@pytest.mark.parametrize("after_s", [0.05, 0.3, 0.6, 1.0, 1.5, 2.0, 2.5, 3.5])
def test_hanging_up_during_start_up_leaves_no_process(tmp_path: Path, after_s: float):
    term = Terminal(tmp_path / "q.db")
    try:
        term.read_for(after_s)
        term.hang_up()
        code = term.exit_status(timeout=1.5)  # gone within 1.5 s at any moment of start-up
        # SIGHUP's default ends it while Python starts; from then on the handler: exit code 130.
        assert code is not None, "the app kept running without its terminal"
        assert code in (130, -1), code
        time.sleep(0.2)
        assert _tagged(term.tag) == []
    finally:
        term.kill()


def test_hanging_up_during_a_sweep_stops_the_benchmark_process(tmp_path: Path):
    db = tmp_path / "q.db"
    term = Terminal(db, env=FAST)
    try:
        term.wait_for("digits-mlp", 60)
        term.read_for(0.5)
        term.send("b")  # the starter sweep: digits-mlp, fp32 and dynamic-int8 on ONNX Runtime
        end = time.monotonic() + 240
        workers: list[psutil.Process] = []
        while not workers:  # a benchmark worker process is measuring
            assert time.monotonic() < end, "the sweep's worker process never started"
            term.read_for(0.2)
            workers = [p for p in _tagged(term.tag) if p.pid != term.pid and "python" in p.name()]
        term.hang_up()
        assert term.exit_status(timeout=20) == 130
        time.sleep(0.2)
        assert _tagged(term.tag) == [], "a process outlived the hang-up"
        from engines.store import Store

        store = Store(db)
        try:
            run = store.get_run(store.latest_run_id())
        finally:
            store.close()
        assert run["status"] == "interrupted"  # recorded as such, resumable
    finally:
        term.kill()
