"""Sensitivity analysis and mixed precision on real models (digits-mlp quickly, tiny-lm slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.bench.worker import open_recipe
from engines.methods.mixed import parse_pins
from engines.methods.recipe import parse_recipe
from engines.models import load_model, resolve_model
from engines.runtimes.base import UnsupportedVariant
from tests.helpers import FAST, qbench_json


def _mixed(model, recipe: str, runtime: str, tmp: Path):
    tmp.mkdir(parents=True, exist_ok=True)
    artifact, _ = open_recipe(model, recipe, runtime, "cpu", 1, tmp)
    return artifact.facts["metrics"]


def test_pins_parse_and_bad_pins_say_the_syntax():
    assert parse_pins("0=fp32/blocks.0.qkv=quant") == {"0": "fp32", "blocks.0.qkv": "quant"}
    with pytest.raises(ValueError, match="LAYER=fp32 or LAYER=quant"):
        parse_pins("fc1:fp32")


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_mixed_on_digits_ranks_every_layer_and_honours_pins(runtime, tmp_path):
    model = load_model(resolve_model("digits-mlp"))
    metrics = _mixed(model, "mixed:pins=2=fp32", runtime, tmp_path)
    layers = {row["layer"] for row in metrics["sensitivity"]}
    assert layers == {"0", "2", "4"}
    assert all(row["weight_sqnr_db"] > 20 and row["output_sqnr_db"] > 20 for row in metrics["sensitivity"])
    sqnrs = [row["output_sqnr_db"] for row in metrics["sensitivity"]]
    assert sqnrs == sorted(sqnrs)  # most sensitive first
    assert metrics["mixed_plan"] == {"0": "dynamic-int8", "2": "fp32", "4": "dynamic-int8"}
    with pytest.raises(UnsupportedVariant, match="pinned layer"):
        _mixed(model, "mixed:pins=fc9=fp32", runtime, tmp_path / "bad")


@pytest.mark.slow
@pytest.mark.real_model
@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_mixed_brings_tiny_lm_int4_back_within_budget_or_says_it_cannot(runtime, tmp_path):
    model = load_model(resolve_model("tiny-lm"))
    metrics = _mixed(model, "mixed:base=int4:budget=agreement", runtime, tmp_path)
    search = metrics["mixed_search"]
    plain = next(t for t in search["trials"] if t["kept"] == 0)
    assert plain["agreement"] < 0.99 <= search["scores"]["agreement"]  # plain int4 misses, mixed meets it
    kept = [layer for layer, p in metrics["mixed_plan"].items() if p == "fp32"]
    assert 0 < len(kept) <= len(metrics["mixed_plan"]) // 2  # most layers stay quantized
    with pytest.raises(UnsupportedVariant, match="needs .* layers kept in float, more than max_kept_fraction"):
        _mixed(model, "mixed:base=int4:budget=agreement:max_kept_fraction=0.05", runtime, tmp_path / "x")


@pytest.mark.slow
def test_sensitivity_and_plan_are_in_the_json_of_a_run(tmp_path):
    proc, data = qbench_json("run", "--model", "digits-mlp", "--methods", "mixed", "--runtimes", "torch",
                             "--db", str(tmp_path / "q.db"), *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (result,) = data["results"]
    assert result["status"] == "ok"
    assert [row["layer"] for row in result["metrics"]["sensitivity"]]
    assert set(result["metrics"]["mixed_plan"]) == {"0", "2", "4"}


@pytest.mark.parametrize("runtime, keep", [("torch", "fp16"), ("torch", "bf16"), ("onnxruntime", "fp16")])
def test_kept_layers_in_half_precision_halve_their_share_and_still_agree(runtime, keep, tmp_path):
    import numpy as np

    from engines.bench.worker import reference_outputs, run_outputs

    model = load_model(resolve_model("digits-mlp"))
    artifact, session = open_recipe(model, f"mixed:pins=2=fp32:keep={keep}", runtime, "cpu", 1, tmp_path)
    assert artifact.facts["metrics"]["mixed_plan"] == {"0": "dynamic-int8", "2": keep, "4": "dynamic-int8"}
    assert any(f"kept {keep}" in n for n in artifact.notes), artifact.notes
    # layer 2 (1024x1024, 4 MB in fp32) is most of the model: in 16 bits the file is ~2.2 MB, not ~4.3
    assert artifact.size_bytes < 2.5 * 2**20, artifact.size_bytes
    outputs = run_outputs(session, model.eval_inputs)
    reference = reference_outputs(model, tmp_path / "ref")
    assert outputs.dtype == np.float32
    assert np.mean(outputs.argmax(-1) == reference.argmax(-1)) >= 0.97
    if runtime == "onnxruntime":  # the kept MatMul runs in float16 between two Casts
        assert artifact.facts["ops"]["Cast"] >= 2 and artifact.facts["ops"]["MatMul"] == 1, artifact.facts["ops"]


def test_bf16_keep_is_refused_on_onnx_runtime_with_the_reason():
    from engines import catalog

    assert "no bfloat16 kernel" in catalog.unsupported_reason(parse_recipe("mixed:keep=bf16"), "onnxruntime", "cpu")


@pytest.mark.slow
@pytest.mark.real_model
@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_tiny_lm_int4_with_fp16_kept_layers_meets_the_budget(runtime, tmp_path):
    model = load_model(resolve_model("tiny-lm"))
    metrics = _mixed(model, "mixed:base=int4:budget=agreement:keep=fp16", runtime, tmp_path)
    kept = [layer for layer, p in metrics["mixed_plan"].items() if p == "fp16"]
    assert kept and "fp32" not in metrics["mixed_plan"].values()
    assert metrics["mixed_search"]["scores"]["agreement"] >= 0.99  # searched with the kept layers in fp16
