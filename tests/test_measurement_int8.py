"""torch static int8 runs int8 kernels by default and is saved with int8 weights; the
eager Q/DQ graph runs only when asked, flagged as a simulation."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from tests.helpers import FAST, qbench_json

pytestmark = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                                reason="the PT2E x86 quantizer needs an x86 CPU")


@pytest.mark.slow
def test_static_int8_on_torch_is_small_real_and_simulation_only_when_asked(tmp_path: Path):
    db = tmp_path / "q.db"
    proc, out = qbench_json("--db", str(db), "run", "--model", "digits-mlp", "--methods", "fp32,static-int8",
                            "--runtimes", "torch", "--repeat", "1", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {r["method"]: r for r in out["results"]}
    fp32, int8 = results["fp32"], results["static-int8"]
    assert int8["status"] == "ok", int8["error"]
    assert int8["size_mb"] <= 0.35 * fp32["size_mb"], (int8["size_mb"], fp32["size_mb"])
    assert int8["artifact"].endswith((".pt2", ".pt"))
    assert any("oneDNN int8" in n for n in int8["notes"]) and "simulated" not in int8["flags"]
    assert int8["agreement"]["top1"] > 0.95

    proc, out = qbench_json("--db", str(db), "run", "--model", "digits-mlp", "--methods", "static-int8",
                            "--runtimes", "torch", "--repeat", "1", "--set", "torch.simulate_int8=true", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sim = out["results"][0]
    assert sim["status"] == "ok" and "simulated" in sim["flags"]
    assert any("simulating int8" in n for n in sim["notes"])
