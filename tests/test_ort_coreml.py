"""ONNX Runtime's Core ML execution provider as devices ``gpu`` and ``ane``: the provider list each
device asks for, the refusal on machines without it (Linux: fast, nothing spawned), the placement
notes, and on a Mac a real run whose placement names the Core ML provider."""

from __future__ import annotations

import platform
import time

import pytest

from engines.methods.recipe import parse_recipe
from engines.runtimes.ort.providers import (
    COREML,
    COREML_MISSING,
    CPU,
    CUDA,
    CUDA_MISSING,
    execution_providers,
    provider_missing,
)
from tests.helpers import qbench_json

not_mac = pytest.mark.skipif(platform.system() == "Darwin", reason="the refusal is for machines without macOS")


def test_each_device_asks_for_its_providers_with_the_cpu_last(tmp_path):
    assert execution_providers("cpu") == [CPU]
    assert execution_providers("cuda") == [CUDA, CPU]
    for device, units in (("gpu", "CPUAndGPU"), ("ane", "CPUAndNeuralEngine")):
        (name, options), last = execution_providers(device, tmp_path)
        assert (name, last) == (COREML, CPU)
        assert options == {"MLComputeUnits": units, "ModelFormat": "MLProgram", "RequireStaticInputShapes": "0",
                           "EnableOnSubgraphs": "0", "ModelCacheDirectory": str(tmp_path)}
    assert "ModelCacheDirectory" not in execution_providers("ane")[0][1]  # no cache where there is no path
    with pytest.raises(ValueError, match="no provider for device 'mps'"):
        execution_providers("mps")


def test_a_build_without_the_provider_says_which_one_is_missing():
    assert provider_missing("ane", [CPU]) == COREML_MISSING
    assert provider_missing("gpu", [COREML, CPU]) is None
    assert provider_missing("cuda", [CPU]) == CUDA_MISSING
    assert provider_missing("cpu", [CPU]) is None


@not_mac
def test_the_session_refuses_core_ml_devices_with_the_reason(tmp_path):
    from engines.bench.worker import open_recipe
    from engines.models import load_model, resolve_model
    from engines.runtimes.base import UnsupportedVariant
    from engines.runtimes.ort.session import OnnxSession

    model = load_model(resolve_model("digits-mlp"))
    artifact, _ = open_recipe(model, "fp32", "onnxruntime", "cpu", 1, tmp_path)
    with pytest.raises(UnsupportedVariant, match="Core ML execution provider needs macOS"):
        OnnxSession(artifact.path, "ane", 1)


@not_mac
def test_a_sweep_on_gpu_and_ane_records_unsupported_without_running(tmp_path):
    from engines import catalog

    assert catalog.unsupported_reason(parse_recipe("fp32"), "onnxruntime", "ane") == COREML_MISSING
    started = time.monotonic()
    proc, data = qbench_json("run", "--model", "digits-mlp", "--methods", "fp32", "--runtimes", "onnxruntime",
                             "--devices", "gpu,ane", "--db", str(tmp_path / "q.db"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {(r["device"], r["status"], r["error"]) for r in data["results"]} == {
        ("gpu", "unsupported", COREML_MISSING), ("ane", "unsupported", COREML_MISSING)}
    assert all(r["passes"] == [] for r in data["results"])  # refused by the planner: no child, no export
    assert time.monotonic() - started < 120  # the CLI's start-up only (seconds; generous for a loaded machine)


def test_core_ml_placement_notes_count_partitions_and_flag_qdq_graphs():
    from engines.runtimes.ort.session import placement_notes

    placement = {"nodes": {COREML: 1, CPU: 2}, "node_share": {COREML: 0.3333, CPU: 0.6667},
                 "time_share": {COREML: 0.9, CPU: 0.1}, "memcpy_nodes": 0, "providers_requested": [COREML, CPU]}
    notes = placement_notes(placement, {"MatMul": 3})
    assert notes == ["execution providers: Core ML 1 compiled partition(s), 90% of the run's time; "
                     "CPU 2 node(s), 10%"]
    qdq = placement_notes(placement, {"QuantizeLinear": 3, "DequantizeLinear": 6, "MatMul": 3})
    assert "QDQ int8 graphs mostly fall back to the CPU under the Core ML EP" in qdq[1]
    cuda = {"nodes": {CUDA: 2, CPU: 1}, "node_share": {CUDA: 0.6667, CPU: 0.3333}, "providers_requested": [CUDA, CPU]}
    assert placement_notes(cuda, {}) == ["execution providers: CUDA 67%, CPU 33% of 3 nodes"]


@pytest.mark.macos
@pytest.mark.parametrize("device", ["gpu", "ane"])
def test_core_ml_ep_takes_digits_mlp_and_records_its_share(device, tmp_path):
    import numpy as np

    from engines.bench.worker import open_recipe, reference_outputs, run_outputs
    from engines.models import load_model, resolve_model

    model = load_model(resolve_model("digits-mlp"))
    artifact, session = open_recipe(model, "fp32", "onnxruntime", device, 1, tmp_path)
    placement = artifact.facts["metrics"]["ort_placement"]
    assert placement["providers_requested"] == [COREML, CPU]
    assert placement["nodes"].get(COREML, 0) >= 1, placement  # Gemm/Relu are Core ML ops: one partition at least
    assert placement["time_share"].get(COREML, 0) > 0.5, placement
    assert any(n.startswith("execution providers: Core ML") for n in artifact.notes), artifact.notes
    assert any((tmp_path / "coreml-cache").iterdir())  # compiled once, kept for the placement session
    outputs = run_outputs(session, model.eval_inputs)
    reference = reference_outputs(model, tmp_path / "ref")
    assert np.mean(outputs.argmax(-1) == reference.argmax(-1)) >= 0.99  # Core ML may compute in float16


def test_core_ml_options_follow_the_graph_float16_and_static_shapes(tmp_path):
    """The options the Core ML EP gets come from the variant's own graph: float16 weights ask for
    float16 accumulation on the GPU, fully static inputs require static shapes (the ANE's)."""
    import onnx

    from engines.bench.worker import open_recipe
    from engines.models import load_model, resolve_model
    from engines.runtimes.ort.providers import coreml_options, graph_inputs

    model = load_model(resolve_model("digits-mlp"))
    (tmp_path / "fp32").mkdir()
    (tmp_path / "fp16").mkdir()
    fp32, _ = open_recipe(model, "fp32", "onnxruntime", "cpu", 1, tmp_path / "fp32")
    fp16, _ = open_recipe(model, "fp16", "onnxruntime", "cpu", 1, tmp_path / "fp16")
    assert graph_inputs(fp32.path) == {"fp16": False, "static_shapes": False}  # exported with a dynamic batch
    assert graph_inputs(fp16.path)["fp16"] is True
    proto = onnx.load(str(fp32.path))
    for graph_input in proto.graph.input:
        graph_input.type.tensor_type.shape.dim[0].dim_value = 8  # the batch fixed, as one program per size
    assert graph_inputs(proto.SerializeToString()) == {"fp16": False, "static_shapes": True}
    ane = coreml_options("ane", None, **graph_inputs(proto.SerializeToString()))
    assert ane["RequireStaticInputShapes"] == "1" and ane["ModelFormat"] == "MLProgram"
    gpu = coreml_options("gpu", None, **graph_inputs(fp16.path))
    assert gpu["AllowLowPrecisionAccumulationOnGPU"] == "1" and gpu["RequireStaticInputShapes"] == "0"
    assert "AllowLowPrecisionAccumulationOnGPU" not in coreml_options("ane", None, fp16=True)
