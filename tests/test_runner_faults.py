"""Every way a variant can go wrong ends as a recorded, readable status; the sweep goes on.

Faults are real: ``QBENCH_FAULT`` makes the real worker process abort, hang or eat memory.
"""

from __future__ import annotations

import pytest

from engines.bench.runner import SweepRequest, SweepRunner
from tests.helpers import FAST, qbench_json


def _sweep(store, fast_measure, **overrides):
    request = SweepRequest(model="digits-mlp", methods=("fp32", "dynamic-int8"), runtimes=("onnxruntime",),
                           measure=fast_measure, **overrides)
    events = []
    outcome = SweepRunner(store, events.append).run(request)
    return outcome, {r["method"]: r for r in outcome.results}, events


def test_a_crashing_variant_fails_with_a_reason_and_the_sweep_continues(store, fast_measure, monkeypatch):
    monkeypatch.setenv("QBENCH_FAULT", "crash:fp32")
    outcome, results, events = _sweep(store, fast_measure)
    assert outcome.status == "finished"
    assert results["fp32"]["status"] == "failed"
    assert "worker crashed: killed by SIGABRT" in results["fp32"]["error"]
    assert results["dynamic-int8"]["status"] == "ok"
    assert sum(type(e).__name__ == "ResultRecorded" for e in events) == 2
    assert store.get_run(outcome.run_id)["status"] == "finished"


@pytest.mark.slow
def test_a_hanging_variant_is_killed_at_its_timeout(store, fast_measure, monkeypatch):
    monkeypatch.setenv("QBENCH_FAULT", "hang:fp32")
    outcome, results, _ = _sweep(store, fast_measure, timeout_s=12)
    assert results["fp32"]["status"] == "failed"
    assert results["fp32"]["error"].startswith("timed out after 12 s")
    assert results["dynamic-int8"]["status"] == "ok"


def test_a_variant_over_the_memory_limit_is_killed_as_out_of_memory(store, fast_measure, monkeypatch):
    monkeypatch.setenv("QBENCH_FAULT", "oom:fp32")
    outcome, results, _ = _sweep(store, fast_measure, memory_limit_mb=1200)
    assert results["fp32"]["status"] == "failed"
    assert "out of memory" in results["fp32"]["error"] and "1200 MB limit" in results["fp32"]["error"]
    assert results["dynamic-int8"]["status"] == "ok"


def test_an_unsupported_pair_is_recorded_with_its_reason(store, fast_measure):
    request = SweepRequest(model="digits-mlp", methods=("fp32",), runtimes=("onnxruntime",),
                           devices=("mps",), measure=fast_measure)
    outcome = SweepRunner(store).run(request)
    [result] = outcome.results
    assert result["status"] == "unsupported"
    assert "mps" in result["error"]


def test_cli_exit_code_is_1_when_a_variant_failed(tmp_path):
    proc, payload = qbench_json(
        "run", "--model", "digits-mlp", "--methods", "fp32,int4", "--runtimes", "onnxruntime",
        "--db", str(tmp_path / "q.db"), *FAST, env={"QBENCH_FAULT": "crash:int4"},
    )
    assert proc.returncode == 1
    statuses = {r["method"]: r["status"] for r in payload["results"]}
    assert statuses == {"fp32": "ok", "int4": "failed"}


@pytest.mark.parametrize("method", ["crash", "hang"])
def test_fault_injection_only_hits_the_named_method(method, monkeypatch):
    from engines.bench import worker

    monkeypatch.setenv("QBENCH_FAULT", f"{method}:int4")
    worker._inject_fault("fp32")  # returns at once: another method
