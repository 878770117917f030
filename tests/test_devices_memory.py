"""Device memory: one meaning per device and one unified-memory warning, shared by torch (mps,
cuda) and MLX (gpu). The shared logic runs here; the hardware paths are marked."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.devices.memory import device_memory_metrics, working_set_warning

GIB = 2**30


def test_unified_memory_is_said_for_apple_devices_and_not_for_cuda():
    mps, gpu, cuda = (device_memory_metrics(d, 16 * GIB) for d in ("mps", "gpu", "cuda"))
    assert mps["device_memory_unified"] and gpu["device_memory_unified"] and not cuda["device_memory_unified"]
    assert mps["device_memory_counter"].startswith("torch.mps.driver_allocated_memory")
    assert cuda["device_memory_counter"] == "torch.cuda.max_memory_allocated"
    assert "RSS" in mps["device_memory_meaning"] and "not part of the process's RSS" in cuda["device_memory_meaning"]
    assert mps["device_memory_limit_mb"] == 16 * 1024
    assert device_memory_metrics("cpu") == {}


def test_the_working_set_warning_is_shared_and_says_what_happens_on_each_kind_of_memory():
    assert working_set_warning("mps", 10 * GIB, 16 * GIB) is None  # 62 %: room for activations
    assert working_set_warning("mps", 14 * GIB, None) is None  # limit unknown: nothing claimed
    for device in ("mps", "gpu"):
        assert "expect paging on unified memory" in working_set_warning(device, 14 * GIB, 16 * GIB)
    assert "expect out-of-memory" in working_set_warning("cuda", 14 * GIB, 16 * GIB)


def _open_on(device: str, tmp_path: Path):
    from engines.bench.worker import open_recipe
    from engines.models import load_model, resolve_model

    model = load_model(resolve_model("digits-mlp"))
    artifact, session = open_recipe(model, "fp32", "torch", device, 1, tmp_path)
    session.run(model.example_inputs(8))
    return artifact.facts["metrics"], session


@pytest.mark.macos
def test_torch_on_mps_records_unified_memory(tmp_path):
    metrics, session = _open_on("mps", tmp_path)
    assert metrics["device_memory_unified"] is True and metrics["device_memory_limit_mb"] > 0
    assert session.device_memory_mb() > 0


@pytest.mark.cuda
def test_torch_on_cuda_records_the_gpus_own_memory(tmp_path):
    metrics, session = _open_on("cuda", tmp_path)
    assert metrics["device_memory_unified"] is False and metrics["device_memory_limit_mb"] > 1024
    assert metrics["device_memory_counter"] == "torch.cuda.max_memory_allocated"
    assert session.device_memory_mb() > 0
