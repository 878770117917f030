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
        if method == "weight-int8" and gpu["status"] == "unsupported":
            assert gpu["error"], gpu  # torchao's int8 kernels on this GPU: ran, or the reason
            continue
        assert gpu["status"] == "ok", gpu  # fp32 and fp16 must run on CUDA
        assert gpu["agreement"]["top1"] >= 0.95, gpu
        assert gpu["memory_mb"] is not None and gpu["memory_mb"] > 0  # torch.cuda.max_memory_allocated
    assert abs(on[("fp32", "cuda")]["accuracy"] - on[("fp32", "cpu")]["accuracy"]) < 0.01


def test_onnxruntime_runs_on_cuda():
    """A CUDA machine must measure ONNX Runtime on CUDA: a missing GPU build, one the CPU build
    shadowed, or a CUDA provider that fell back to the CPU is a failure here, not a skip."""
    proc, payload = qbench_json(
        "run", "--model", "digits-mlp", "--methods", "fp32,dynamic-int8", "--runtimes", "onnxruntime",
        "--devices", "cuda", "--repeat", "1", *FAST,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = by_key(payload["results"])
    assert {r["status"] for r in results.values()} == {"ok"}, {k: r["error"] for k, r in results.items()}
    for (method, _), r in results.items():
        assert "CUDAExecutionProvider" in r["runtime_info"]["providers"], r["runtime_info"]
        share = r["metrics"]["ort_placement"]["node_share"]
        assert share.get("CUDAExecutionProvider", 0) > 0, (method, share)  # CUDA took nodes of the graph
        assert r["agreement"]["top1"] >= 0.95, (method, r["agreement"])
    fp32 = results[("fp32", "onnxruntime")]["metrics"]["ort_placement"]["node_share"]
    assert fp32.get("CUDAExecutionProvider", 0) > 0.5, fp32  # a float MLP runs on CUDA, not beside it
