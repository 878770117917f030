"""``qbench run``'s live progress on a terminal (the real program in a pseudo-terminal), plain
lines when piped, the final table's ratios against fp32, and the listing commands' filters."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from helpers import FAST, qbench, qbench_json
from rich.console import Console
from test_tui_support import RUN_A, RUN_B, fill_store

from engines.core import events
from engines.store import Store
from qbench_tui.cli.output import results_table
from qbench_tui.cli.progress import LiveProgress, SweepProgress, make_progress

ROOT = Path(__file__).resolve().parents[1]


def _terminal_run(args: list[str], timeout: float = 600) -> tuple[int, str]:
    """The real ``qbench`` in a pseudo-terminal (120 columns); its whole output, escapes included."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the program, with the pty as its terminal
        os.chdir(ROOT)
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        env.update(TERM="xterm-256color", COLUMNS="120", LINES="40")
        os.execvpe(sys.executable, [sys.executable, "-m", "qbench_tui", *args], env)
    out = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the program ended and closed its side
                break
            if not chunk:
                break
            out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r", "", text)


def test_a_sweep_on_a_terminal_shows_live_progress_and_ratios(tmp_path: Path):
    db = tmp_path / "q.db"
    code, out = _terminal_run(["--db", str(db), "run", "--model", "digits-mlp", "--methods", "fp32,dynamic-int8",
                               *FAST])
    text = _plain(out)
    assert code == 0, text[-3000:]
    # The live line: the variant and its phase, done/total, elapsed; it is redrawn in place.
    assert re.search(r"variant 1/2 fp32 · onnxruntime · cpu · (load|quantize|cold-start|accuracy|warm-up|measure)",
                     text), text[-3000:]
    assert "variant 2/2 dynamic-int8 · onnxruntime · cpu" in text
    assert re.search(r"\b[01]/2\b.*\d:\d\d:\d\d", text)  # done/total then the elapsed time
    assert "\x1b[?25l" in out  # the cursor is hidden while the display is live…
    assert out.rfind("\x1b[?25h") > out.rfind("\x1b[?25l")  # …and shown again at the end
    # Each finished result as a line, and the final table with the ratios against fp32.
    assert re.search(r"ok\s+fp32\s+onnxruntime", text) and re.search(r"ok\s+dynamic-int8\s+onnxruntime", text)
    table = text[text.index("· finished"):]
    fp32_row = next(line for line in table.splitlines() if " fp32 " in line)
    assert fp32_row.count("×1.00") == 2  # its own reference: speed-up and size ratio 1
    int8_row = next((line for line in table.splitlines() if "│ dynamic" in line), table)  # may end in "…"
    speedup, size = re.findall(r"×(\d+\.\d\d)", int8_row)
    store = Store(db)
    try:
        results = {r["method"]: r for r in store.results()}
    finally:
        store.close()
    # the median of per-round ratios where the rounds were paired with fp32's, else the medians' ratio
    paired = results["dynamic-int8"]["metrics"].get("speedup_vs_fp32")
    expected = paired["ratio"] if paired else (results["fp32"]["latency_ms"]["p50"]
                                               / results["dynamic-int8"]["latency_ms"]["p50"])
    assert float(speedup) == round(expected, 2)
    assert float(size) == round(results["dynamic-int8"]["size_mb"] / results["fp32"]["size_mb"], 2) < 0.5


def test_piped_and_json_output_stay_plain(tmp_path: Path):
    db = tmp_path / "q.db"
    proc, payload = qbench_json("--db", str(db), "run", "--model", "digits-mlp", "--methods", "fp32", *FAST)
    assert proc.returncode == 0 and payload["results"][0]["status"] == "ok"
    assert "\x1b[" not in proc.stderr and "variant 1/1" not in proc.stderr  # no live display on stderr
    proc = qbench("--db", str(db), "results")  # piped: a plain table with the ratio columns
    assert proc.returncode == 0 and "\x1b[" not in proc.stdout
    assert "speedup" in proc.stdout and "×1.00" in proc.stdout


def test_live_progress_events_and_eta():
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    progress = make_progress(console)
    assert isinstance(progress, LiveProgress)
    info = events.VariantInfo("int4", "int4(g128)", "abc", "onnxruntime", "cpu")
    result = {"status": "ok", "method": "int4", "label": "int4(g128)", "runtime": "onnxruntime", "device": "cpu",
              "batch_size": 1, "latency_ms": {"p50": 1.25}}
    progress(events.RunStarted("r1", model="m", total=4, done=1, resumed=True))
    progress(events.VariantStarted("r1", info, 1, 3, (1,)))
    progress(events.PhaseChanged("r1", "measure", 1))
    task = progress._progress.tasks[0]
    assert task.completed == 1 and task.total == 4 and "int4(g128) · onnxruntime · cpu" in task.description
    assert "measure bs 1" in task.description and task.fields["eta"] == ""  # nothing measured here yet
    progress._started -= 30  # the first result here took 30 s
    progress(events.ResultRecorded("r1", result))
    assert task.completed == 2 and task.fields["eta"] == "~1:00 left"  # two more at 30 s each
    progress(events.RunFinished("r1", "finished"))
    assert progress._progress is None
    assert "p50 1.250 ms" in _plain(console.file.getvalue())

    piped = Console(file=io.StringIO(), force_terminal=False)
    assert type(make_progress(piped)) is SweepProgress
    assert type(make_progress(console, plain=True)) is SweepProgress  # --json -


def test_results_table_ratios_use_the_runs_fp32_even_when_filtered_out(store):
    fill_store(store)
    ok_int8 = [{**r, "memory_mb": 31.0} for r in store.results(RUN_A) if r["method"] == "dynamic-int8"]
    console = Console(file=io.StringIO(), width=250)
    console.print(results_table(ok_int8, references=store.fp32_references([RUN_A])))
    row = next(line for line in console.file.getvalue().splitlines() if "dynamic-int8" in line)
    assert "×1.97" in row and "×0.26" in row and " 31 " in row  # 0.120/0.061, 1.10/4.30, the variant's MB


def test_results_and_runs_filters_and_limits(store):
    fill_store(store)
    db = str(store.path)
    proc = qbench("--db", db, "results", "--status", "ok", "--limit", "2", "--format", "json")
    newest_ok = [r for r in store.results() if r["status"] == "ok"][-2:]
    assert [r["id"] for r in json.loads(proc.stdout)] == [r["id"] for r in newest_ok]
    proc = qbench("--db", db, "results", "--method", "static-int8", "--runtime", "onnxruntime", "--format", "json")
    assert [(r["run_id"], r["status"]) for r in json.loads(proc.stdout)] == [(RUN_A, "ok"), (RUN_B, "failed")]
    proc = qbench("--db", db, "results", "--since", "2026-11-22", "--device", "cpu", "--label", "fp32",
                  "--format", "json")
    assert [r["run_id"] for r in json.loads(proc.stdout)] == [RUN_B]
    proc = qbench("--db", db, "results", "--model", "digits-mlp", "--status", "failed")
    assert "1 of 1 results" not in proc.stdout and "1 results" in proc.stdout and "SIGKILL" in proc.stdout
    proc = qbench("--db", db, "runs", "--limit", "1", "--json")
    runs = json.loads(proc.stdout)
    assert [(r["id"], r["results"]) for r in runs] == [(RUN_B, 4)]
    proc = qbench("--db", db, "runs", "--status", "finished", "--since", "2026-11-01T00:00")
    assert RUN_A in proc.stdout and RUN_B not in proc.stdout
    proc = qbench("--db", db, "results", "--since", "yesterday-ish")
    assert proc.returncode == 2 and "--since" in proc.stderr
    assert subprocess.run([sys.executable, "-m", "qbench_tui", "--db", db, "results", "--limit", "-1"],
                          capture_output=True, text=True, check=False).returncode == 2
    proc = qbench("--db", db, "results", "--limit", "3")
    assert "the newest 3 of 8 results" in proc.stdout and proc.stdout.count("digits-mlp") == 3
