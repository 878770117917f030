"""MLX: torch → MLX conversion of the built-ins and tiny-lm, mlx.nn.quantize, and a real sweep.

Runs on MLX's CPU build on Linux (correctness, not speed); skipped, with the reason, when mlx is
not installed (`uv sync --extra mlx`). The Metal path is the same session on ``gpu`` (macOS test).
"""

from __future__ import annotations

import numpy as np
import pytest

from engines.bench.runner import SweepRequest, SweepRunner
from engines.bench.worker import open_recipe, reference_outputs, run_outputs
from engines.methods.recipe import parse_recipe, parse_recipes
from engines.models import load_model, resolve_model
from tests.helpers import needs

# Found, not imported, at collection (every xdist worker collects every module).
pytestmark = [needs("mlx.core", reason="mlx is not installed (`uv sync --extra mlx`)")]


def _variant(name: str, recipe: str, tmp_path, device: str = "cpu"):
    model = load_model(resolve_model(name))
    reference = reference_outputs(model, tmp_path)
    workdir = tmp_path / recipe.replace(":", "_")
    workdir.mkdir(exist_ok=True)
    artifact, session = open_recipe(model, recipe, "mlx", device, 1, workdir)
    outputs = run_outputs(session, model.eval_inputs)
    top1 = float(np.mean(outputs.argmax(-1) == reference.argmax(-1)))
    return artifact, session, outputs, reference, top1


@pytest.mark.parametrize("name", ["digits-mlp", "digits-cnn"])
def test_builtins_convert_exactly_and_int4_keeps_their_answers_at_a_fifth_of_the_size(name, tmp_path):
    fp32, _, out, ref, top1 = _variant(name, "fp32", tmp_path)
    assert np.abs(out - ref).max() < 1e-3 and top1 == 1.0  # same weights, same maths
    int4, session, _, _, top1 = _variant(name, "int4", tmp_path)
    assert top1 >= 0.95
    assert int4.size_bytes <= 0.2 * fp32.size_bytes, (int4.size_bytes, fp32.size_bytes)
    assert any("4-bit" in n for n in int4.notes)
    session.bind({k: v[:4] for k, v in load_model(resolve_model(name)).eval_inputs.items()})()
    assert session.device_memory_mb() > 0  # MLX's own peak counter


def test_cnn_convolutions_are_quantized_and_say_how(tmp_path):
    import mlx.core as mx
    import mlx.nn as mx_nn

    from engines.runtimes.mlx.convert import QuantizedConv2d

    artifact, session, _, _, top1 = _variant("digits-cnn", "weight-int8", tmp_path)
    torch_convs = [m for m in load_model(resolve_model("digits-cnn")).module.modules()
                   if type(m).__name__ == "Conv2d"]
    convs = [m for m in session._module.layers if isinstance(m, (QuantizedConv2d, mx_nn.Conv2d))]
    assert len(torch_convs) == len(convs) == 3
    # the first convolution's rows (1 channel x 3 x 3 = 9) fit no group of 32/64/128: it stays float
    assert isinstance(convs[0], mx_nn.Conv2d) and any("1 layer(s) stay float" in n for n in artifact.notes)
    for conv, original in zip(convs[1:], torch_convs[1:]):  # the others: quantized, not only the Linear layers
        assert isinstance(conv, QuantizedConv2d), conv
        assert conv.weight.dtype == mx.uint32 and conv.bits == 8  # stored packed, 8 bits a weight
        back = np.array(mx.dequantize(conv.weight, conv.scales, conv.biases, conv.group_size, conv.bits))
        want = original.weight.detach().numpy().transpose(0, 2, 3, 1)  # MLX: (out, kh, kw, in)
        step = np.abs(want).max() / 127
        assert np.abs(back.reshape(want.shape) - want).max() <= step, "not the convolution's own weights"
    assert top1 >= 0.95  # the dequantize-per-call convolutions compute the same answers
    assert any("Conv2d weights dequantized per call" in n for n in artifact.notes)


@pytest.mark.slow
@pytest.mark.real_model
def test_tiny_lm_converts_and_weight_int8_keeps_its_next_byte_predictions(tmp_path):
    _, _, out, ref, top1 = _variant("tiny-lm", "fp32", tmp_path)
    assert np.abs(out - ref).max() < 1e-3
    int8, _, _, _, top1 = _variant("tiny-lm", "weight-int8", tmp_path)
    assert top1 >= 0.95
    assert any("group 32" in n for n in int8.notes)  # width 96: groups of 64 do not fit, 32 do


def test_group_sizes_mlx_lacks_are_refused_before_running():
    from engines import catalog

    reason = catalog.unsupported_reason(parse_recipe("int4:group_size=16"), "mlx", "cpu")
    assert reason and "32, 64 or 128" in reason
    reason = catalog.unsupported_reason(parse_recipe("static-int8"), "mlx", "cpu")
    assert "MLX has no pass for static-int8" in reason and "coreml" in reason


@pytest.mark.slow
def test_a_sweep_on_mlx_records_memory_and_notes(store, fast_measure):
    request = SweepRequest(model="digits-mlp", methods=parse_recipes(("fp32", "int4:group_size=32", "fp4")), runtimes=("mlx",),
                           measure=fast_measure, threads=1)
    results = {r["label"]: r for r in SweepRunner(store).run(request).results}
    assert all(r["status"] == "ok" for r in results.values()), results
    assert results["int4(g32)"]["passes"] == ["export-mlx", "mlx-quantize-int4"]
    assert results["int4(g32)"]["agreement"]["top1"] >= 0.95
    assert results["fp32"]["metrics"]["device_memory_mb"] > 0
    assert results["fp32"]["runtime_info"]["mlx"]


@pytest.mark.macos
def test_mlx_on_metal_runs_the_same_variant(tmp_path):
    _, session, out, ref, top1 = _variant("digits-mlp", "int4", tmp_path, device="gpu")
    assert top1 >= 0.95 and session.device_memory_mb() > 0
