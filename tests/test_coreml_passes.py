"""Core ML: conversion and weight compression with coremltools on a real model, the op counts
that prove it, and the runtime's honest refusal off macOS with the figures still recorded.

Skipped, with the reason, when coremltools is not installed (`uv sync --extra coreml`).
Prediction, compute units and the compute plan are the macOS-marked tests.
"""

from __future__ import annotations

import platform

import numpy as np
import pytest

pytest.importorskip("coremltools", reason="coremltools is not installed (`uv sync --extra coreml`)")

from engines import catalog  # noqa: E402
from engines.bench.runner import SweepRequest, SweepRunner  # noqa: E402
from engines.bench.worker import _context, apply_passes  # noqa: E402
from engines.models import load_model, resolve_model  # noqa: E402
from engines.passes import Plan  # noqa: E402
from engines.runtimes.base import UnsupportedVariant  # noqa: E402


def _artifact(model, recipe: str, tmp_path, device: str = "cpu"):
    planned = catalog.plan_variant(recipe, "coreml", device)
    assert isinstance(planned, Plan), planned
    workdir = tmp_path / recipe.replace(":", "_")
    workdir.mkdir()
    artifact, applied = apply_passes(model, [p.to_dict() for p in planned.passes],
                                     _context(model, workdir, "coreml", device, 1))
    return artifact, applied


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
    assert "entropy" in catalog.unsupported_reason("static-int8:calibration_method=entropy", "coreml", "cpu") \
        or "minmax" in catalog.unsupported_reason("static-int8:calibration_method=entropy", "coreml", "cpu")


@pytest.mark.skipif(platform.system() == "Darwin", reason="on macOS Core ML predicts: see the macos tests")
def test_off_macos_the_session_refuses_with_the_reason(tmp_path):
    from engines.runtimes.coreml.session import open_session

    model = load_model(resolve_model("digits-mlp"))
    artifact, _ = _artifact(model, "int4", tmp_path)
    with pytest.raises(UnsupportedVariant, match="needs macOS"):
        open_session(artifact, model, "cpu", 1)


@pytest.mark.slow
@pytest.mark.skipif(platform.system() == "Darwin", reason="on macOS Core ML predicts: see the macos tests")
def test_a_sweep_records_unsupported_with_size_and_op_counts(store, fast_measure):
    request = SweepRequest(model="digits-mlp", methods=("fp32", "int4"), runtimes=("coreml",),
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
    shares = artifact.metrics.get("compute_plan", {}).get("cost_share")
    assert shares is None or abs(sum(shares.values()) - 1.0) < 1e-6
