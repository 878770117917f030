"""One sweep measures at a time on a machine; a second waits and says for whom."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engines.bench.lock import MeasurementLock, read_holder
from tests.helpers import FAST


def test_a_second_holder_waits_and_hears_who_holds_it(tmp_path: Path):
    path = tmp_path / "measure.lock"
    first = MeasurementLock("run-a", "cli", path=path)
    first.acquire()
    assert read_holder(path)["run_id"] == "run-a" and read_holder(path)["pid"] == os.getpid()
    heard: list[dict] = []
    second = MeasurementLock("run-b", "tui", path=path, on_wait=heard.append, poll_s=0.05)
    got = threading.Event()
    # flock is per open file description: a second one in this process still has to wait
    thread = threading.Thread(target=lambda: (second.acquire(), got.set()))
    thread.start()
    time.sleep(0.5)
    assert not got.is_set() and heard and heard[0]["run_id"] == "run-a" and heard[0]["source"] == "cli"
    first.release()
    thread.join(5)
    assert got.is_set() and read_holder(path)["run_id"] == "run-b" and second.waited_s >= 0.4
    second.release()


def test_cancel_ends_the_wait(tmp_path: Path):
    from engines.bench.child import Cancelled

    path = tmp_path / "measure.lock"
    holder = MeasurementLock("run-a", "cli", path=path)
    holder.acquire()
    cancel = threading.Event()
    waiter = MeasurementLock("run-b", "tui", path=path, cancel=cancel, poll_s=0.05,
                             on_wait=lambda h: cancel.set())
    with pytest.raises(Cancelled):
        waiter.acquire()
    holder.release()


@pytest.mark.slow
def test_two_qbench_runs_started_together_take_turns(tmp_path: Path):
    """Two real `qbench run` at once: the second waits for the first and says so; both store."""
    db = tmp_path / "q.db"
    args = [sys.executable, "-m", "qbench_tui", "--db", str(db), "run", "--model", "digits-mlp",
            "--methods", "fp32,dynamic-int8", "--runtimes", "onnxruntime", "--repeat", "2", *FAST]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    home = Path(os.environ["QBENCH_HOME"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (read_holder(home / "measure.lock") or {}).get("pid") != first.pid:
        time.sleep(0.1)
    second = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out1, _ = first.communicate(timeout=600)
    out2, _ = second.communicate(timeout=600)
    assert first.returncode == 0, out1[-2000:]
    assert second.returncode == 0, out2[-2000:]
    assert "waiting" in out2 and f"pid {first.pid}" in out2 and "qbench run" in out2, out2[-2000:]
    conn = sqlite3.connect(db)
    runs = conn.execute("SELECT id, status FROM runs ORDER BY created_at").fetchall()
    assert [s for _, s in runs] == ["finished", "finished"]
    assert conn.execute("SELECT count(*) FROM results WHERE status = 'ok'").fetchone()[0] == 4
    # they measured one after the other: the first's results all come before the second's
    order = [r for (r,) in conn.execute("SELECT run_id FROM results ORDER BY id")]
    assert order == sorted(order, key=lambda run: [i for i, _ in runs].index(run) if run in [i for i, _ in runs] else 0)


@pytest.mark.slow
def test_the_apps_sweep_controller_turns_the_wait_into_a_message(store, fast_measure):
    """The app's controller, on a real sweep: while another holds the machine it posts
    SweepWaiting naming the holder, then measures once the machine is free."""
    from qbench_tui import messages
    from qbench_tui.controllers.sweep import SweepController, SweepSetup

    home = Path(os.environ["QBENCH_HOME"])
    other = MeasurementLock("someone-elses-run", "cli", path=home / "measure.lock")
    other.acquire()
    posted: list = []
    controller = SweepController(posted.append, lambda job: threading.Thread(target=job).start(), store=store)
    setup = SweepSetup.of(model="digits-mlp", methods=("fp32",), runtimes=("onnxruntime",), devices=("cpu",),
                          batch_sizes=(1,), measure={**fast_measure.to_dict(), "repeat": 1})
    controller.start(setup)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(isinstance(m, messages.SweepWaiting) for m in posted):
            time.sleep(0.1)
        waiting = [m for m in posted if isinstance(m, messages.SweepWaiting)]
        assert waiting and waiting[0].holder["run_id"] == "someone-elses-run"
        assert not any(isinstance(m, messages.ResultRecorded) for m in posted)
    finally:
        other.release()
    assert controller.wait(300)
    assert any(isinstance(m, messages.SweepWaiting) and m.holder is None for m in posted)
    assert any(isinstance(m, messages.SweepFinished) for m in posted), posted[-3:]
