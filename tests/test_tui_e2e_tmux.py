"""End to end: the real ``qbench`` program in a real terminal (tmux), driven by key presses.

It opens on an empty store, runs the configured sweep (the starter: digits-mlp, fp32 and
dynamic-int8 on ONNX Runtime, with short timing windows from QBENCH_MEASURE_*), and the
finished rows are read back twice: from the screen (tmux capture-pane) and from the database.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from engines.store import Store

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")

WIDTH, HEIGHT = 130, 40
FAST = {"QBENCH_MEASURE_MIN_TIME": "0.05", "QBENCH_MEASURE_MIN_REPS": "5", "QBENCH_MEASURE_WARMUP_S": "0",
        "QBENCH_MEASURE_WARMUP_REPS": "2", "QBENCH_MEASURE_MAX_TIME": "2"}


class Tmux:
    def __init__(self, session: str):
        self.session = session

    def run(self, *args: str) -> str:
        out = subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30, check=False)
        return out.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.session, *keys)

    def wait_for(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if re.search(pattern, screen):
                return screen
            time.sleep(0.25)
        raise AssertionError(f"{pattern!r} did not appear within {timeout:.0f} s; the screen:\n{screen}")


def test_run_a_sweep_in_the_real_program(tmp_path: Path):
    db = tmp_path / "qbench.db"
    env = {**FAST, "QBENCH_HOME": os.environ["QBENCH_HOME"], "TERM": "xterm-256color"}
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    program = f"{shlex.quote(sys.executable)} -m qbench_tui --db {shlex.quote(str(db))}"
    # COLUMNS/LINES may leak into tmux from the test runner and would pin the app to 80x24.
    # After the program ends the shell prints its exit code and waits, so the test can read it.
    command = (f"cd {shlex.quote(str(Path(__file__).parents[1]))} && env -u COLUMNS -u LINES {exports} {program}; "
               "echo EXITED=$?; sleep 60")
    tmux = Tmux(f"qbench-e2e-{uuid.uuid4().hex[:8]}")
    tmux.run("new-session", "-d", "-s", tmux.session, "-x", str(WIDTH), "-y", str(HEIGHT), command)
    try:
        tmux.wait_for(r"Welcome to qbench", 60)  # the empty store offers the starter sweep
        tmux.wait_for(r"digits-mlp", 30)
        screen = tmux.wait_for(r"r Run[\s\S]*q Quit|q Quit[\s\S]*r Run", 30)  # bindings in the footer
        # Chosen or not reads in text, not colour alone: the starter's two methods and no other.
        screen = tmux.wait_for(r"\[x\] fp32", 30)
        assert "[x] dynamic-int8" in screen and "[ ] fp16" in screen and "▐X▌" not in screen, screen

        tmux.keys("r")
        tmux.wait_for(r"▶ running", 30)
        screen = tmux.wait_for(r"✓ finished", 240)  # the first sweep of a session trains digits-mlp
        assert "2 ok · 0 failed · 0 unsupported" in screen

        # The runtime may be shortened ("onnx…") when the table is narrower than its columns.
        rows = [line for line in screen.splitlines() if "digits-mlp" in line and re.search(r"\bonnx", line)]
        shown = {m for line in rows for m in ("fp32", "dynamic-int8") if re.search(rf"\b{m}\b.*\bok\b", line)}
        assert shown == {"fp32", "dynamic-int8"}, screen
        p50_on_screen = {m: float(re.search(rf"\b{m}\b.*?\bok\b\s+([0-9.]+)", line).group(1))
                         for line in rows for m in ("fp32", "dynamic-int8") if re.search(rf"\b{m}\b.*\bok\b", line)}

        store = Store(db)
        try:
            run = store.get_run(store.latest_run_id())
            results = store.results(run["id"])
        finally:
            store.close()
        assert run["status"] == "finished" and run["source"] == "tui"
        assert {r["method"]: r["status"] for r in results} == {"fp32": "ok", "dynamic-int8": "ok"}
        for r in results:  # the screen shows what the database holds (rounded), the result's id first
            assert p50_on_screen[r["method"]] == pytest.approx(r["latency_ms"]["p50"], abs=0.0015, rel=0.01)
            assert any(re.match(rf"^\W*\s+{r['id']}\s.*\b{r['method']}\b", line) for line in rows), (r["id"], rows)

        tmux.keys("q")
        tmux.wait_for(r"EXITED=0", 20)
    finally:
        tmux.run("kill-session", "-t", tmux.session)
