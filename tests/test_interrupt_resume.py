"""Ctrl-C or SIGTERM in the middle of a sweep: the run is 'interrupted', finished results stay,
and ``qbench run --resume RUN_ID`` runs only what is missing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from engines.store import Store
from tests.helpers import FAST, count_rows, qbench_json, wait_for

pytestmark = [pytest.mark.slow]


METHODS = "fp32,dynamic-int8,int4"


def _start(db, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "qbench_tui", "run", "--model", "digits-mlp", "--methods", METHODS,
         # one round: each variant's results are stored as it finishes (with --repeat K they all
         # come after the last round), which is what an interrupt mid-sweep must keep
         "--runtimes", "onnxruntime", "--db", str(db), "--repeat", "1", *FAST, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_interrupted_sweep_keeps_results_and_resume_completes_it(tmp_path, sig):
    db = tmp_path / "q.db"
    proc = _start(db)
    try:
        assert wait_for(lambda: count_rows(db) >= 1, timeout=300), "no result was stored"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err + out
    store = Store(db)
    [run] = store.list_runs()
    assert run["status"] == "interrupted"
    kept = store.results(run["id"])
    assert 1 <= len(kept) < 3 and all(r["status"] == "ok" for r in kept)
    store.close()
    if sig is signal.SIGTERM:
        return  # resume is exercised once, after Ctrl-C

    resumed, payload = qbench_json("run", "--resume", run["id"], "--db", str(db))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert payload["run_id"] == run["id"] and payload["status"] == "finished"
    assert sorted(r["method"] for r in payload["results"]) == sorted(METHODS.split(","))
    # what had finished was not measured again
    again = {r["method"]: r for r in payload["results"]}
    for r in kept:
        assert again[r["method"]]["id"] == r["id"]
        assert again[r["method"]]["latency_ms"] == r["latency_ms"]
    assert count_rows(db) == 3
    assert json.loads(json.dumps(payload))  # valid JSON throughout


def test_a_second_interrupt_leaves_at_once_and_nothing_is_lost(tmp_path):
    """Impatient users press Ctrl-C twice: the second one leaves without waiting for clean-up, and
    the run still reads as interrupted (the store reaps a run whose process is gone)."""
    db = tmp_path / "q.db"
    proc = _start(db)
    try:
        assert wait_for(lambda: count_rows(db) >= 1, timeout=300), "no result was stored"
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    store = Store(db)
    [run] = store.list_runs()
    assert run["status"] == "interrupted"
    assert store.results(run["id"]) and all(r["status"] == "ok" for r in store.results(run["id"]))
    store.close()
