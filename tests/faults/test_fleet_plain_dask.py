"""qbench workers on a plain ``dask scheduler`` (no qbench handler): a run across both hosts, then
the scheduler killed mid-run — the run ends ``interrupted`` (resumable), with no traceback."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.faults.fault_support import integrity
from tests.test_fleet import _results, _run, start_worker

pytestmark = [pytest.mark.slow]  # real workers measuring the built-in model


@pytest.fixture
def plain_dask():
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", "0", "--dashboard-address", ":0"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True, start_new_session=True)
    address = None
    deadline = time.monotonic() + 90
    while address is None and time.monotonic() < deadline:
        line = scheduler.stderr.readline()
        if "Scheduler at:" in line:
            address = line.split("Scheduler at:")[1].strip()
    assert address, "dask scheduler did not start"
    workers = {name: start_worker(address, name) for name in ("w1", "w2")}
    yield {"address": address, "scheduler": scheduler, "workers": workers}
    for worker in workers.values():
        worker.kill()
    if scheduler.poll() is None:
        scheduler.kill()
    scheduler.wait()


def test_a_run_across_workers_of_a_plain_dask_scheduler_and_the_scheduler_killed_mid_run(plain_dask, tmp_path):
    db = tmp_path / "fleet.db"
    run = _run(db, "--cluster", plain_dask["address"], "--hosts", "all")
    assert run.wait(600) == 0, run.output[-3000:]
    assert {r["host"] for r in _results(db) if r["status"] == "ok"} == {"w1", "w2"}

    second = tmp_path / "second.db"
    run = _run(second, "--cluster", plain_dask["address"], "--hosts", "all")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if sqlite3.connect(second).execute("SELECT count(*) FROM hosts WHERE activity != ''").fetchone()[0]:
                break
        except sqlite3.Error:
            pass
        time.sleep(0.2)
    else:
        raise AssertionError(f"no host started measuring:\n{run.output[-3000:]}")
    plain_dask["scheduler"].send_signal(signal.SIGKILL)
    assert run.wait(300) == 130, run.output[-3000:]
    assert "Traceback" not in run.output and "qbench run --resume" in run.output, run.output[-3000:]
    status, message = sqlite3.connect(second).execute("SELECT status, message FROM runs").fetchone()
    assert status == "interrupted" and "lost the scheduler" in message and integrity(second) == "ok"
    assert "interrupted" in {r["status"] for r in _results(second)}  # the variant in progress is recorded
