"""Core ML: conversion and weight compression with coremltools on a real model, the op counts
that prove it, and the runtime's honest refusal off macOS with the figures still recorded.

Skipped, with the reason, when coremltools is not installed (`uv sync --extra coreml`).
Prediction, compute units and the compute plan are the macOS-marked tests.
"""

from __future__ import annotations

import platform

import numpy as np
import pytest

from engines import catalog
from engines.bench.runner import SweepRequest, SweepRunner
from engines.bench.worker import _context, apply_passes
from engines.methods.recipe import parse_recipe, parse_recipes
from engines.models import load_model, resolve_model
from engines.passes import Plan
from engines.runtimes.base import UnsupportedVariant
from tests.helpers import needs

# Found, not imported, at collection: coremltools imports torch, scikit-learn and scipy (tens of seconds).
pytestmark = [needs("coremltools", reason="coremltools is not installed (`uv sync --extra coreml`)")]


def _artifact(model, recipe: str, tmp_path, device: str = "cpu", batch_sizes: tuple[int, ...] = (1,)):
    planned = catalog.plan_variant(parse_recipe(recipe), "coreml", device)
    assert isinstance(planned, Plan), planned
    workdir = tmp_path / f"{recipe.replace(':', '_')}-{device}"
    workdir.mkdir()
    artifact, applied = apply_passes(model, [p.to_dict() for p in planned.passes],
                                     _context(model, workdir, "coreml", device, 1, batch_sizes=batch_sizes))
    return artifact, applied


def read_back(path) -> tuple[dict[str, int], str | None, list[list[int]]]:
    """From the saved package alone: the float types its arithmetic ops produce, the inputs' shape
    flexibility, and the batch shapes it accepts."""
    import coremltools as ct
    from coremltools.proto import MIL_pb2

    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    floats: dict[str, int] = {}
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            for op in block.operations:
                if op.type in ("const", "cast") or op.type.startswith("constexpr_"):
                    continue
                for out in op.outputs:
                    name = MIL_pb2.DataType.Name(out.type.tensorType.dataType)
                    if name.startswith("FLOAT"):
                        floats[name] = floats.get(name, 0) + 1
    array = spec.description.input[0].type.multiArrayType
    flexibility = array.WhichOneof("ShapeFlexibility")
    shapes = [list(s.shape) for s in array.enumeratedShapes.shapes] if flexibility == "enumeratedShapes" \
        else [list(array.shape)]
    return floats, flexibility, shapes


@pytest.mark.slow  # five conversions, two of them k-means palettes (4 and 8 bits): minutes on loaded cores
def test_conversion_and_compression_shrink_the_package_and_the_ops_show_it(tmp_path):
    model = load_model(resolve_model("digits-mlp"))
    fp32, applied = _artifact(model, "fp32", tmp_path)
    assert applied == ["export-coreml"] and fp32.path.suffix == ".mlpackage"
    assert fp32.metrics["coreml_ops"]["linear"] == 3 and fp32.metrics["coreml_compressed_ops"] == 0
    sizes = {}
    for recipe in ("weight-int8", "int4", "palettize", "palettize:nbits=8"):
        artifact, applied = _artifact(model, recipe, tmp_path)
        assert applied[0] == "export-coreml" and len(applied) == 2
        assert artifact.metrics["coreml_compressed_ops"] >= 2, (recipe, artifact.metrics)
        sizes[recipe] = artifact.size_bytes / fp32.size_bytes
    assert sizes["weight-int8"] <= 0.3 and sizes["int4"] <= 0.2 and sizes["palettize"] <= 0.2, sizes
    assert sizes["palettize:nbits=8"] > sizes["palettize"]  # 8-bit indices take twice the room of 4-bit


def test_w8a8_carries_quantize_ops_and_fp16_is_a_conversion(tmp_path):
    model = load_model(resolve_model("digits-mlp"))
    w8a8, applied = _artifact(model, "static-int8:calibration_samples=64", tmp_path)
    assert applied == ["coreml-w8a8"]
    assert w8a8.metrics["coreml_ops"].get("quantize", 0) >= 1
    fp16, applied = _artifact(model, "fp16", tmp_path)
    assert applied == ["coreml-float16"] and fp16.metrics["coreml_ops"].get("cast", 0) >= 1
    assert "entropy" in catalog.unsupported_reason(parse_recipe("static-int8:calibration_method=entropy"), "coreml", "cpu") \
        or "minmax" in catalog.unsupported_reason(parse_recipe("static-int8:calibration_method=entropy"), "coreml", "cpu")


@pytest.mark.slow  # seven conversions; the quick loop keeps the w8a8 / fp16 conversions and the refusal
def test_neural_engine_programs_compute_in_float16_with_the_sweeps_batch_sizes_enumerated(tmp_path):
    model = load_model(resolve_model("digits-mlp"))
    for recipe in ("fp32", "fp16", "weight-int8", "palettize:nbits=6", "static-int8:calibration_samples=64"):
        artifact, _ = _artifact(model, recipe, tmp_path, "ane", batch_sizes=(8, 1, 32))
        floats, flexibility, shapes = read_back(artifact.path)
        assert set(floats) == {"FLOAT16"}, (recipe, floats)  # no fp32 arithmetic: the ANE computes only fp16
        assert flexibility == "enumeratedShapes" and [s[0] for s in shapes] == [1, 8, 32], (recipe, shapes)
        assert artifact.metrics["coreml_precision"]["compute"] == "float16", (recipe, artifact.metrics)
        assert artifact.metrics["coreml_batch_input"] == {"kind": "enumerated", "batch_sizes": [1, 8, 32]}
        assert any(n.startswith("program computes in float16") for n in artifact.notes), artifact.notes
    gpu, _ = _artifact(model, "fp32", tmp_path, "gpu", batch_sizes=(4,))
    floats, flexibility, shapes = read_back(gpu.path)
    assert set(floats) == {"FLOAT16"} and flexibility is None and shapes[0][0] == 4  # one batch size: fixed
    assert gpu.metrics["coreml_batch_input"] == {"kind": "fixed", "batch_sizes": [4]}
    cpu, _ = _artifact(model, "fp32", tmp_path, "cpu", batch_sizes=(1, 2))
    floats, flexibility, _ = read_back(cpu.path)
    assert set(floats) == {"FLOAT32"} and cpu.metrics["coreml_precision"]["compute"] == "float32"
    assert flexibility == "enumeratedShapes"  # never a range (RangeDim), on any device


def test_w8a8_calibrates_in_eval_mode():
    """Batch norm with momentum 1 would take the calibration batch's statistics in train mode; in
    eval mode the folded W8A8 module keeps the float model's answers (max error ~0.001 of 0.17
    here; ~0.96 when calibrated in train mode)."""
    import dataclasses

    import torch

    from engines.runtimes.coreml.convert import w8a8_module

    model = load_model(resolve_model("digits-mlp"))
    torch.manual_seed(0)
    float_model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.BatchNorm1d(32, momentum=1.0),
                                      torch.nn.ReLU(), torch.nn.Linear(32, 10)).eval()
    with torch.no_grad():
        float_model[1].running_mean.fill_(3.0)
        float_model[1].running_var.fill_(4.0)
    quantized = w8a8_module(float_model, dataclasses.replace(model, module=float_model), 64)
    x = torch.from_numpy(model.eval_inputs[model.input_names[0]])
    with torch.no_grad():
        expected, got = float_model(x), quantized(x)
    assert float((expected - got).abs().max()) < 0.05 * float(expected.abs().max())


def test_a_program_with_enumerated_batches_takes_any_row_count_in_those_shapes():
    from engines.runtimes.coreml.session import fitted_batches

    assert fitted_batches(300, [1, 8, 256]) == [(0, 256, 256), (256, 44, 256)]
    assert fitted_batches(9, [1, 8]) == [(0, 8, 8), (8, 1, 1)]
    assert fitted_batches(5, [4]) == [(0, 4, 4), (4, 1, 4)]  # a fixed shape: the last call padded


@pytest.mark.skipif(platform.system() == "Darwin", reason="on macOS Core ML predicts: see the macos tests")
def test_off_macos_the_session_refuses_with_the_reason(tmp_path):
    from engines.runtimes.coreml.session import open_session

    model = load_model(resolve_model("digits-mlp"))
    artifact, _ = _artifact(model, "int4", tmp_path)
    with pytest.raises(UnsupportedVariant, match="needs macOS"):
        open_session(artifact, model, "cpu", 1)
    placement = artifact.metrics["placement"]  # never passes silently: where it would run is unknown
    assert placement["status"] == "unknown" and placement["text"].startswith("placement unknown: prediction unsupported")


@pytest.mark.slow
@pytest.mark.skipif(platform.system() == "Darwin", reason="on macOS Core ML predicts: see the macos tests")
def test_a_sweep_records_unsupported_with_size_and_op_counts(store, fast_measure):
    request = SweepRequest(model="digits-mlp", methods=parse_recipes(("fp32", "int4")), runtimes=("coreml",),
                           measure=fast_measure, threads=1)
    results = {r["label"]: r for r in SweepRunner(store).run(request).results}
    for r in results.values():
        assert r["status"] == "unsupported" and "needs macOS" in r["error"]
        assert r["size_mb"] > 0 and r["metrics"]["coreml_op_total"] > 0
    assert results["int4"]["size_mb"] <= 0.2 * results["fp32"]["size_mb"]
    assert results["int4"]["metrics"]["coreml_compressed_ops"] == 3
    stored = {r["label"]: r for r in store.results(None)}  # the figures survive the SQLite round trip
    assert stored["int4"]["metrics"]["coreml_compressed_ops"] == 3 and stored["int4"]["size_mb"] > 0


@pytest.mark.macos
@pytest.mark.parametrize("device", ["cpu", "gpu", "ane"])
def test_prediction_and_the_compute_plan_on_each_compute_unit(device, tmp_path):
    from engines.bench.worker import open_recipe, reference_outputs, run_outputs

    model = load_model(resolve_model("digits-mlp"))
    reference = reference_outputs(model, tmp_path)
    artifact, session = open_recipe(model, "palettize", "coreml", device, 1, tmp_path)
    outputs = run_outputs(session, model.eval_inputs)
    assert np.mean(outputs.argmax(-1) == reference.argmax(-1)) >= 0.95
    shares = artifact.metrics["compute_plan"]["cost_share"]  # macOS 14.4+: the plan must be read
    assert abs(sum(shares.values()) - 1.0) < 1e-6, shares
    if device == "ane":  # the label is true: at least half of the program's estimated cost on the Neural Engine
        assert shares.get("ane", 0.0) >= 0.5, shares
        assert artifact.metrics["placement"]["status"] == "on-device", artifact.metrics["placement"]


@pytest.mark.slow
@pytest.mark.skipif(platform.system() == "Darwin", reason="on macOS Core ML predicts: see the macos tests")
def test_auto_for_the_neural_engine_converts_here_and_records_what_the_program_is(tmp_path):
    """`qbench run --methods auto --runtimes coreml --devices ane` on a machine without a Neural
    Engine: each variant is converted and compressed for it, and the result, the JSON and the
    package's own spec say float16 compute, a batch input enumerated or fixed, and prediction
    `unsupported` with the reason."""
    from tests.helpers import qbench_json

    proc, data = qbench_json("run", "--model", "digits-mlp", "--methods", "auto", "--runtimes", "coreml",
                             "--devices", "ane", "--db", str(tmp_path / "q.db"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = data["results"]
    assert {r["label"] for r in results} >= {"fp16", "weight-int8", "palettize"}, [r["label"] for r in results]
    for r in results:
        assert r["device"] == "ane" and r["status"] == "unsupported" and "needs macOS" in r["error"], r
        assert r["passes"] and r["artifact"], r  # converted (and compressed), not refused by the planner
        m = r["metrics"]
        assert m["coreml_precision"]["compute"] == "float16" and m["coreml_precision"]["weights"] == "float16", m
        assert m["coreml_batch_input"]["kind"] in ("enumerated", "fixed"), m
        assert m["placement"]["status"] == "unknown" and m["placement"]["text"].startswith("placement unknown")
        floats, flexibility, _ = read_back(r["artifact"])
        assert set(floats) == {"FLOAT16"} and flexibility in (None, "enumeratedShapes"), (r["label"], floats)
        if r["label"] not in ("fp16", "fp32"):  # auto's search measures the fp32 reference beside its candidates
            assert m["coreml_compressed_ops"] >= 2, (r["label"], m)
