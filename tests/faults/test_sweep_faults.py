"""A sweep under faults: Ctrl-C before anything finished, between rounds and while the sweep shuts
down; a disk that fills up mid-sweep. Each ends with the recorded status, one readable line, and
the results measured before it intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from engines.bench.runner import SweepInterrupted, SweepRequest, SweepRunner
from engines.methods.recipe import parse_recipes
from engines.store import Store
from tests.faults.fault_support import fill, integrity
from tests.helpers import FAST, count_rows, wait_for

pytestmark = [pytest.mark.slow]  # real sweeps of the built-in model


def _request(fast_measure, methods=("fp32",), repeat=1):
    from dataclasses import replace

    return SweepRequest(model="digits-mlp", methods=parse_recipes(methods), runtimes=("onnxruntime",),
                        measure=replace(fast_measure, repeat=repeat))


def test_a_variant_interrupted_after_one_of_three_rounds_is_stored_partial(store, fast_measure):
    runner = SweepRunner(store)

    def on_event(event):  # round one is stored in the parent: Ctrl-C as round two starts
        if type(event).__name__ == "PhaseChanged" and (event.detail or {}).get("round") == 2:
            runner.cancel.set()

    runner.on_event = on_event
    with pytest.raises(SweepInterrupted) as info:
        runner.run(_request(fast_measure, repeat=3))
    run_id = str(info.value)
    [result] = store.results(run_id)
    assert result["status"] == "ok" and "partial" in result["flags"] and len(result["rounds"]) == 1
    assert any("interrupted after 1 round" in n for n in result["notes"])
    assert store.get_run(run_id)["status"] == "interrupted"
    resumed = SweepRunner(store).resume(run_id)  # the partial variant is measured again, in full
    [again] = resumed.results
    assert resumed.status == "finished" and "partial" not in again["flags"] and len(again["rounds"]) >= 3
    assert integrity(store.path) == "ok"


def test_ctrl_c_while_the_sweep_shuts_down_keeps_a_complete_run_finished(store, fast_measure, monkeypatch):
    from engines.bench import runner as runner_module

    real_stop = runner_module.stop_fork_server

    def interrupted_stop(*args, **kwargs):  # Ctrl-C lands while the fork server is being joined
        os.kill(os.getpid(), signal.SIGINT)
        return real_stop(*args, **kwargs)

    monkeypatch.setattr(runner_module, "stop_fork_server", interrupted_stop)
    outcome = SweepRunner(store).run(_request(fast_measure))
    assert outcome.status == "finished"
    assert store.get_run(outcome.run_id)["status"] == "finished"
    assert [r["status"] for r in outcome.results] == ["ok"]


def _start(db, *extra):
    return subprocess.Popen([sys.executable, "-m", "qbench_tui", "run", "--model", "digits-mlp", "--methods",
                             "fp32,dynamic-int8,int4", "--runtimes", "onnxruntime", "--db", str(db), *FAST, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_before_anything_finished_says_none_were_stored(tmp_path):
    db = tmp_path / "q.db"
    proc = _start(db)
    try:
        assert wait_for(lambda: count_rows(db, "SELECT count(*) FROM runs") >= 1, timeout=300)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    text = out + err
    assert "Traceback" not in text
    assert "none of 3 measurements finished" in text and "nothing was stored" in text, text[-2000:]
    assert "qbench run --resume" in text and "starts them all again" in text
    run = Store(db).list_runs()[0]
    assert run["status"] == "interrupted" and count_rows(db) == 0


def test_a_disk_that_fills_mid_sweep_ends_in_one_line_with_the_resume_command(tmpfs):
    where = tmpfs(3072)
    db = where / "q.db"
    proc = _start(db, "--repeat", "1")
    try:
        assert wait_for(lambda: count_rows(db) >= 1, timeout=300), "no result was stored"
        stored = count_rows(db)
        fill(where)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "Traceback" not in err, err[-3000:]
    [line] = [x for x in err.splitlines() if "no space left" in x]
    assert "qbench run --resume" in line
    (where / "filler").unlink()
    assert integrity(db) == "ok" and count_rows(db) >= stored
    reopened = Store(db)  # the run whose process is gone reads as interrupted, resumable
    assert reopened.list_runs()[0]["status"] == "interrupted"


def test_the_memory_limit_caps_the_same_memory_the_result_reports(store, fast_measure, monkeypatch):
    """The limit counts the variant's own memory (RSS above the harness's baseline of interpreter
    and preloaded libraries, some 300-400 MB here), the figure results report as
    ``memory.variant_peak_mb``: a limit above that figure keeps the variant, one far under it kills it
    (the limit is checked by sampling every 0.2 s, so a peak shorter than that may pass)."""
    from dataclasses import replace

    [free] = SweepRunner(store).run(_request(fast_measure)).results
    memory = free["memory"]
    own = memory["variant_peak_mb"]
    assert free["status"] == "ok" and 0 < own < memory["process_peak_mb"]
    assert own == pytest.approx(memory["process_peak_mb"] - memory["baseline_mb"])
    [kept] = SweepRunner(store).run(replace(_request(fast_measure), memory_limit_mb=own * 1.5 + 30)).results
    assert kept["status"] == "ok", kept["error"]  # far under the process's whole RSS, above the variant's own
    # The same limit kills a variant that keeps growing (the test hook allocates 64 MiB at a time): a
    # limit on a few MB of a short variant would depend on when the 0.2 s sampling lands.
    monkeypatch.setenv("QBENCH_FAULT", "oom:fp32")
    [killed] = SweepRunner(store).run(replace(_request(fast_measure), memory_limit_mb=own * 1.5 + 30)).results
    assert killed["status"] == "failed" and "out of memory: the variant used" in killed["error"]
