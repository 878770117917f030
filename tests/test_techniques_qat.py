"""Quantization-aware training on a real built-in model (digits-mlp), torch and ONNX Runtime."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from engines.bench.worker import open_recipe, run_outputs
from engines.methods.qat import QatInt4Config
from engines.methods.recipe import parse_recipe
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


def test_qat_reaches_onnx_runtime_as_matmul_nbits(mlp, tmp_path):
    from engines import catalog

    plan = catalog.plan_variant(parse_recipe("qat-int8"), "onnxruntime", "cpu")
    assert plan.names == ["qat-finetune-int8", "export-onnx"]
    torch_acc, _ = _accuracy(mlp, "qat-int8:activation_bits=0:epochs=1", "torch", tmp_path / "t")
    ort_acc, artifact = _accuracy(mlp, "qat-int8:activation_bits=0:epochs=1", "onnxruntime", tmp_path / "o")
    assert artifact.facts["ops"].get("MatMulNBits") == 3 and "DequantizeLinear" not in artifact.facts["ops"]
    assert abs(ort_acc - torch_acc) <= 0.01
    assert artifact.size_bytes < 0.3 * 4.3 * 2**20
    _, int4 = _accuracy(mlp, "qat-int4:epochs=1", "onnxruntime", tmp_path / "o4")
    assert int4.size_bytes < 0.18 * 4.3 * 2**20  # two 4-bit values a byte, one fp32 scale per 32


@pytest.mark.parametrize("recipe", ["qat-int4:epochs=0", "qat-int8:activation_bits=0:epochs=0",
                                    "qat-int4:weight_bits=2:epochs=0"])
def test_matmul_nbits_export_computes_what_the_fine_tuned_module_computes(mlp, tmp_path, recipe):
    import onnxruntime as ort
    import torch

    from engines import catalog
    from engines.bench.worker import _context, source_artifact
    from engines.core.config import config_from_dict
    from engines.passes import get_pass
    from engines.passes.nbits_export import write_matmul_nbits_weights
    from engines.passes.onnx_passes import export_fp32

    step = catalog.plan_variant(parse_recipe(recipe), "onnxruntime", "cpu").passes[0].to_dict()
    spec = get_pass(step["pass"])
    tuned = spec.fn(_context(mlp, tmp_path, "onnxruntime", "cpu", 1), source_artifact(mlp, tmp_path),
                    config_from_dict(spec.config_class, step["config"]))
    out = tmp_path / "nbits.onnx"
    notes = write_matmul_nbits_weights(export_fp32(mlp, tmp_path, tuned.payload), out, tuned.facts["qdq"],
                                       accuracy_level=0)  # fp32 compute: the same arithmetic as torch
    assert "3 MatMul nodes" in notes[0], notes
    x = mlp.eval_inputs[mlp.input_names[0]][:64]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = tuned.payload(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


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
