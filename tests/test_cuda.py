"""The CUDA paths, on a machine with an NVIDIA GPU (skipped elsewhere, saying so): the device is
detected and sampled, and real sweeps run on it through the same code the CPU tests exercise."""

from __future__ import annotations

import pytest

from tests.helpers import FAST, by_key, qbench_json

pytestmark = [pytest.mark.cuda, pytest.mark.slow]


def test_cuda_is_detected_and_sampled():
    from engines.devices import detect_devices
    from engines.devices.sampling import DeviceSampler

    cuda = {d.name: d for d in detect_devices()}["cuda"]
    assert cuda.present, cuda.detail
    sample = DeviceSampler().sample()
    [gpu] = [a for a in sample.accelerators if a.name.startswith("cuda")][:1]
    assert gpu.present and gpu.memory_total_mb and gpu.memory_total_mb > 1000


def test_torch_sweep_on_cuda_matches_the_cpu():
    proc, payload = qbench_json(
        "run", "--model", "digits-mlp", "--methods", "fp32,fp16,weight-int8", "--runtimes", "torch",
        "--devices", "cpu,cuda", "--repeat", "1", *FAST,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    on = {(r["method"], r["device"]): r for r in payload["results"]}
    for method in ("fp32", "fp16", "weight-int8"):
        gpu = on[(method, "cuda")]
        assert gpu["status"] in ("ok", "unsupported"), gpu
        if gpu["status"] == "ok":
            assert gpu["agreement"]["top1"] >= 0.95, gpu
            assert gpu["memory_mb"] is not None  # torch.cuda.max_memory_allocated
    assert on[("fp32", "cuda")]["status"] == "ok"
    assert abs(on[("fp32", "cuda")]["accuracy"] - on[("fp32", "cpu")]["accuracy"]) < 0.01


def test_onnxruntime_on_cuda_runs_or_says_why():
    proc, payload = qbench_json(
        "run", "--model", "digits-mlp", "--methods", "fp32,dynamic-int8", "--runtimes", "onnxruntime",
        "--devices", "cuda", "--repeat", "1", *FAST,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for r in by_key(payload["results"]).values():
        assert r["status"] in ("ok", "unsupported"), r
        if r["status"] == "unsupported":
            assert r["error"], r  # the reason (e.g. no CUDAExecutionProvider in this onnxruntime build)
