"""Every way a variant can go wrong ends as a recorded, readable status; the sweep goes on.

Faults are real: ``QBENCH_FAULT`` (a test hook, engines/test_hooks.py) makes the real worker process\nabort, hang or eat memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engines.bench.runner import SweepRequest, SweepRunner
from engines.methods.recipe import parse_recipes
from tests.helpers import FAST, qbench_json, wait_for


def _sweep(store, fast_measure, **overrides):
    request = SweepRequest(model="digits-mlp", methods=parse_recipes(("fp32", "dynamic-int8")), runtimes=("onnxruntime",),
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
    _, results, _ = _sweep(store, fast_measure, timeout_s=12)
    assert results["fp32"]["status"] == "failed"
    assert results["fp32"]["error"].startswith("timed out after 12 s")
    assert results["dynamic-int8"]["status"] == "ok"


def test_a_variant_over_the_memory_limit_is_killed_as_out_of_memory(store, fast_measure, monkeypatch):
    monkeypatch.setenv("QBENCH_FAULT", "oom:fp32")
    _, results, _ = _sweep(store, fast_measure, memory_limit_mb=1200)
    assert results["fp32"]["status"] == "failed"
    assert "out of memory" in results["fp32"]["error"] and "1200 MB limit" in results["fp32"]["error"]
    assert results["dynamic-int8"]["status"] == "ok"


def test_an_unsupported_pair_is_recorded_with_its_reason(store, fast_measure):
    request = SweepRequest(model="digits-mlp", methods=parse_recipes(("fp32",)), runtimes=("onnxruntime",),
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


_CALL_HOOK = """
import sys
from pathlib import Path
from engines.test_hooks import inject_worker_fault
from engines.methods.recipe import parse_recipes
for method in ("fp32", "int4"):
    inject_worker_fault(method)
    Path(sys.argv[1], method).touch()  # this method came through the hook
"""


def _hooked_process(kind: str, tmp_path):
    return subprocess.Popen([sys.executable, "-c", _CALL_HOOK, str(tmp_path)],
                            env={**os.environ, "QBENCH_FAULT": f"{kind}:int4"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_fault_injection_only_hits_the_named_method_crash(tmp_path):
    proc = _hooked_process("crash", tmp_path)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGABRT  # aborted, for real…
    assert (tmp_path / "fp32").exists()  # …after fp32 went through untouched
    assert not (tmp_path / "int4").exists()


def test_fault_injection_only_hits_the_named_method_hang(tmp_path):
    proc = _hooked_process("hang", tmp_path)
    try:
        assert wait_for(lambda: (tmp_path / "fp32").exists() or proc.poll() is not None, timeout=120)
        assert (tmp_path / "fp32").exists(), proc.communicate()
        # int4 hangs: the process neither finishes nor gets past the hook
        assert not wait_for(lambda: (tmp_path / "int4").exists() or proc.poll() is not None, timeout=3)
    finally:
        proc.kill()
        proc.wait()


def test_fault_hooks_are_inert_unless_set_and_refuse_an_unknown_kind(monkeypatch):
    from engines.test_hooks import inject_worker_fault

    monkeypatch.delenv("QBENCH_FAULT", raising=False)
    inject_worker_fault("fp32")  # unset: nothing happens
    monkeypatch.setenv("QBENCH_FAULT", "crash")  # no method named: nothing happens
    inject_worker_fault("fp32")
    monkeypatch.setenv("QBENCH_FAULT", "explode:fp32")
    with pytest.raises(ValueError, match="unknown fault"):
        inject_worker_fault("fp32")


def test_the_exported_service_reads_the_delay_hook_under_its_documented_name():
    from engines.test_hooks import FAULT_DELAY_FILE

    source = (Path(__file__).resolve().parents[1] / "engines/export/templates/files/fastapi_app.py").read_text()
    assert f'os.environ.get("{FAULT_DELAY_FILE}")' in source
    assert "if FAULT_DELAY_FILE:" in source  # inert unless set
