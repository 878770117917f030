"""Which ONNX Runtime execution provider took which nodes: read from ORT's profile. On the CPU
the CPU provider takes every node; on CUDA the share is recorded with the result."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.runtimes.ort.placement import placement_from_profile


def _event(name: str, provider: str, dur: int, op: str = "MatMul") -> dict:
    return {"cat": "Node", "name": f"{name}_kernel_time", "dur": dur, "args": {"provider": provider, "op_name": op}}


def test_shares_count_nodes_and_time_per_provider_and_copies_apart():
    events = [
        {"cat": "Session", "name": "model_run", "dur": 999},
        _event("a", "CUDAExecutionProvider", 30), _event("b", "CUDAExecutionProvider", 50),
        _event("c", "CPUExecutionProvider", 20, "Shape"), _event("m", "CUDAExecutionProvider", 5, "MemcpyToHost"),
        {"cat": "Node", "name": "a_fence_before", "dur": 0, "args": {"provider": "CUDAExecutionProvider"}},
    ]
    placement = placement_from_profile(events)
    assert placement["nodes"] == {"CUDAExecutionProvider": 2, "CPUExecutionProvider": 1}
    assert placement["node_share"]["CUDAExecutionProvider"] == pytest.approx(2 / 3, abs=1e-4)
    assert placement["time_share"] == {"CUDAExecutionProvider": 0.8, "CPUExecutionProvider": 0.2}
    assert placement["memcpy_nodes"] == 1
    assert placement_from_profile([]) == {"nodes": {}, "node_share": {}, "time_share": {}, "memcpy_nodes": 0}


def _digits_session(recipe: str, device: str, tmp_path: Path):
    from engines.bench.worker import open_recipe
    from engines.models import load_model, resolve_model

    model = load_model(resolve_model("digits-mlp"))
    return model, *open_recipe(model, recipe, "onnxruntime", device, 1, tmp_path)


def test_the_cpu_provider_takes_every_node_of_a_real_graph(tmp_path):
    model, _, session = _digits_session("dynamic-int8", "cpu", tmp_path)
    placement = session.placement(model.example_inputs(4))
    assert placement["node_share"] == {"CPUExecutionProvider": 1.0}
    assert placement["nodes"]["CPUExecutionProvider"] >= 5  # 3 quantized MatMuls (fused), Relus, Adds
    assert placement["providers_requested"] == ["CPUExecutionProvider"]


def test_a_missing_or_shadowed_gpu_build_and_a_fallback_to_the_cpu_are_refused_with_the_fix():
    from engines.runtimes.ort.providers import (
        CPU,
        CUDA,
        CUDA_MISSING,
        CUDA_NOT_LOADED,
        provider_missing,
        providers_taken,
    )

    assert provider_missing("cuda", [CPU], {"onnxruntime": "1.32.0"}) == CUDA_MISSING
    shadowed = provider_missing("cuda", [CPU], {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"})
    assert "onnxruntime-gpu 1.31.1 is installed but the CPU build (onnxruntime 1.32.0)" in shadowed
    assert "uv pip install --reinstall --no-deps onnxruntime-gpu==1.31.1" in shadowed
    assert provider_missing("cuda", [CUDA, CPU], {"onnxruntime-gpu": "1.31.1"}) is None
    # ONNX Runtime drops a CUDA provider that fails to load and runs on the CPU: not a CUDA result
    assert providers_taken("cuda", [CPU]) == CUDA_NOT_LOADED
    assert providers_taken("cuda", [CUDA, CPU]) is None and providers_taken("cpu", [CPU]) is None


@pytest.mark.cuda
def test_cuda_records_the_share_each_provider_took(tmp_path):
    import onnxruntime as ort

    from engines.runtimes.ort.providers import onnxruntime_builds

    # A CUDA machine (the marker found its driver) must measure ONNX Runtime on CUDA: no skip here
    assert "CUDAExecutionProvider" in ort.get_available_providers(), (
        f"CUDA is present but unused: {onnxruntime_builds()} has no CUDAExecutionProvider; "
        "install ONNX Runtime's GPU build (docs/cuda.md)")
    _, artifact, session = _digits_session("fp32", "cuda", tmp_path)
    assert session._session.get_providers()[0] == "CUDAExecutionProvider"
    placement = artifact.facts["metrics"]["ort_placement"]
    assert placement["node_share"].get("CUDAExecutionProvider", 0) > 0.5, placement
    assert any("execution providers: CUDA" in n for n in artifact.notes), artifact.notes
