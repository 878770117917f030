"""The ``mixed`` method on MLX: per-layer sensitivity, then one mlx.nn.quantize call with bits per
layer (4 and 8, or float for the kept layers). MLX's CPU build on Linux; skipped without mlx."""

from __future__ import annotations

import numpy as np
import pytest

from engines import catalog
from engines.bench.worker import open_recipe, reference_outputs, run_outputs
from engines.methods.recipe import parse_recipe
from engines.models import load_model, resolve_model
from tests.helpers import needs

# Found, not imported, at collection (every xdist worker collects every module).
pytestmark = [needs("mlx.core", reason="mlx is not installed (`uv sync --extra mlx`)")]

DIGITS_LAYERS = ["layers.0", "layers.2", "layers.4"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    model = load_model(resolve_model("digits-mlp"))
    tmp = tmp_path_factory.mktemp("mlx-mixed")
    (tmp / "fp32").mkdir()
    fp32, _ = open_recipe(model, "fp32", "mlx", "cpu", 1, tmp / "fp32")
    return model, reference_outputs(model, tmp / "ref"), fp32.size_bytes, tmp


def _mixed(digits, recipe: str):
    model, reference, fp32_size, tmp = digits
    workdir = tmp / recipe.replace(":", "_").replace("=", "-").replace("/", "_")
    workdir.mkdir()
    artifact, session = open_recipe(model, recipe, "mlx", "cpu", 1, workdir)
    outputs = run_outputs(session, model.eval_inputs)
    return artifact, float(np.mean(outputs.argmax(-1) == reference.argmax(-1))), fp32_size


def test_int4_with_a_kept_layer_at_8_bits_mixes_two_widths_within_the_budget(digits):
    artifact, top1, fp32_size = _mixed(digits, "mixed:base=int4:keep=int8:pins=layers.2=fp32")
    metrics = artifact.facts["metrics"]
    assert [row["layer"] for row in sorted(metrics["sensitivity"], key=lambda r: r["layer"])] == DIGITS_LAYERS
    assert all(row["output_sqnr_db"] > 10 for row in metrics["sensitivity"])
    assert metrics["mixed_plan"] == {"layers.0": "int4", "layers.2": "int8", "layers.4": "int4"}
    assert metrics["mixed_bits"] == {"layers.0": 4, "layers.2": 8, "layers.4": 4}
    assert metrics["mixed_search"]["scores"]["accuracy"] >= metrics["mixed_search"]["reference"]["accuracy"] - 0.01
    assert top1 >= 0.97  # held-out agreement with fp32
    # layer 2 (1024x1024) at 8 bits, the rest at 4: between all-int4 (~0.19x) and all-int8 (~0.31x) of fp32
    assert 0.2 * fp32_size < artifact.size_bytes < 0.31 * fp32_size, (artifact.size_bytes, fp32_size)
    assert any("layers per precision: int4 2, int8 1" in n for n in artifact.notes), artifact.notes


def test_the_default_budget_search_runs_and_says_when_one_width_was_enough(digits):
    artifact, top1, fp32_size = _mixed(digits, "mixed:base=int4")
    metrics = artifact.facts["metrics"]
    search = metrics["mixed_search"]
    assert search["trials"] and search["scores"]["accuracy"] >= search["reference"]["accuracy"] - 0.01
    assert top1 >= 0.95 and artifact.size_bytes < 0.25 * fp32_size
    widths = set(metrics["mixed_bits"].values())
    assert len(widths) >= 2 or any(n.startswith("one bit width only") for n in artifact.notes), artifact.notes


def test_kept_layers_in_float16_and_the_int8_base_as_8_bit_weights(digits):
    half, top1, fp32_size = _mixed(digits, "mixed:base=int4:keep=fp16:pins=layers.2=fp32")
    assert half.facts["metrics"]["mixed_bits"] == {"layers.0": 4, "layers.2": 16, "layers.4": 4}
    assert str(half.payload.layers[2].weight.dtype) == "mlx.core.float16" and top1 >= 0.97
    assert half.size_bytes < 0.55 * fp32_size  # ~0.48: the 1024x1024 layer in 2 bytes a weight
    int8, top1, _ = _mixed(digits, "mixed:pins=layers.0=fp32")
    assert int8.facts["metrics"]["mixed_plan"] == {"layers.0": "fp32", "layers.2": "weight-int8",
                                                   "layers.4": "weight-int8"}
    assert any("no int8 activations" in n for n in int8.notes) and top1 >= 0.97


def test_what_mlx_cannot_do_is_refused_before_running():
    assert "MLX quantizes weights only" in catalog.unsupported_reason(parse_recipe("mixed:base=static-int8"), "mlx", "cpu")
    assert "needs base=int4" in catalog.unsupported_reason(parse_recipe("mixed:keep=int8"), "mlx", "cpu")
    assert "32, 64 or 128" in catalog.unsupported_reason(parse_recipe("mixed:base=int4:group_size=16"), "mlx", "cpu")
    for runtime in ("torch", "onnxruntime"):
        assert "realised on MLX only" in catalog.unsupported_reason(parse_recipe("mixed:base=int4:keep=int8"), runtime, "cpu")
    assert catalog.unsupported_reason(parse_recipe("mixed"), "mlx", "cpu") is None


@pytest.mark.slow
@pytest.mark.real_model
def test_tiny_lm_int4_with_8_bit_kept_layers_meets_the_agreement_budget(tmp_path):
    model = load_model(resolve_model("tiny-lm"))
    artifact, _ = open_recipe(model, "mixed:base=int4:keep=int8:budget=agreement", "mlx", "cpu", 1, tmp_path)
    metrics = artifact.facts["metrics"]
    search = metrics["mixed_search"]
    plain = next(t for t in search["trials"] if t["kept"] == 0)
    assert plain["agreement"] < 0.99 <= search["scores"]["agreement"]  # plain int4 misses, 4/8 bits meets it
    assert {"tokens", "head", "blocks.0.qkv"} <= set(metrics["mixed_plan"])  # Embedding and Linear layers
    assert set(metrics["mixed_bits"].values()) == {4, 8}
    assert list(metrics["mixed_bits"].values()).count(8) <= len(metrics["mixed_bits"]) // 2
