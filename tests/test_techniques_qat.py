"""Quantization-aware training on a real built-in model (digits-mlp), torch and ONNX Runtime."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from engines.bench.worker import open_recipe, run_outputs
from engines.methods.qat import QatInt4Config
from engines.models import load_model, resolve_model
from engines.passes import PassContext
from engines.passes.qat_passes import finetune
from engines.runtimes.base import UnsupportedVariant


@pytest.fixture(scope="module")
def mlp():
    return load_model(resolve_model("digits-mlp"))


def _accuracy(model, recipe: str, runtime: str, tmp: Path) -> tuple[float, object]:
    tmp.mkdir(parents=True, exist_ok=True)
    artifact, session = open_recipe(model, recipe, runtime, "cpu", 1, tmp)
    outputs = run_outputs(session, model.eval_inputs)
    return float(np.mean(outputs.argmax(-1) == model.eval_labels)), artifact


def test_qat_loses_less_than_post_training_quantization_of_the_same_layers(mlp, tmp_path):
    # At 4 bits digits-mlp loses nothing, so the difference shows at 2-bit weights; epochs=0 is the
    # same fake quantization and conversion without training (post-training quantization).
    ptq, _ = _accuracy(mlp, "qat-int4:weight_bits=2:epochs=0", "torch", tmp_path / "ptq")
    qat, artifact = _accuracy(mlp, "qat-int4:weight_bits=2", "torch", tmp_path / "qat")
    assert qat > ptq, (qat, ptq)
    history = artifact.facts["metrics"]["qat_history"]
    assert [row["epoch"] for row in history] == [0, 1, 2, 3]
    assert all(row["loss"] > 0 for row in history[1:])


def test_qat_reaches_onnx_runtime_through_a_qdq_export(mlp, tmp_path):
    from engines import catalog

    plan = catalog.plan_variant("qat-int8", "onnxruntime", "cpu")
    assert plan.names == ["qat-finetune-int8", "export-onnx"]
    torch_acc, _ = _accuracy(mlp, "qat-int8:activation_bits=0:epochs=1", "torch", tmp_path / "t")
    ort_acc, artifact = _accuracy(mlp, "qat-int8:activation_bits=0:epochs=1", "onnxruntime", tmp_path / "o")
    assert artifact.facts["ops"].get("DequantizeLinear") == 3
    assert abs(ort_acc - torch_acc) <= 0.01
    assert artifact.size_bytes < 0.3 * 4.3 * 2**20
    _, int4 = _accuracy(mlp, "qat-int4:epochs=1", "onnxruntime", tmp_path / "o4")
    assert int4.size_bytes < 0.25 * 4.3 * 2**20  # int4 initializers, blocked DequantizeLinear


def test_qat_streams_epoch_loss_and_accuracy(mlp, tmp_path):
    events: list[dict] = []
    ctx = PassContext(mlp, tmp_path, "torch", "cpu", 1, emit=lambda **data: events.append(data))
    finetune(ctx, QatInt4Config(epochs=2, max_steps_per_epoch=5))
    epochs = [e for e in events if e.get("step") == "qat"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    assert all(0 <= e["accuracy"] <= 1 for e in epochs) and "loss" in epochs[-1]


def test_a_model_without_training_data_is_unsupported_with_the_reason(mlp, tmp_path):
    bare = dataclasses.replace(mlp, training_data=None)
    for runtime in ("torch", "onnxruntime"):
        with pytest.raises(UnsupportedVariant, match="training data and digits-mlp ships none"):
            open_recipe(bare, "qat-int8", runtime, "cpu", 1, tmp_path)
