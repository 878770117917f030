"""Static int8 on ONNX Runtime: the recipe's choices on a small real transformer (torch export,
ONNX Runtime's quantizer and sessions), and that they are recorded in the variant's metrics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.helpers import lazy_module, needs

# Found, not imported, at collection (torch and ONNX Runtime take seconds in every xdist worker);
# imported on first use.
pytestmark = [needs("torch", "onnx", "onnxruntime")]
onnx, ort = lazy_module("onnx"), lazy_module("onnxruntime")

VOCAB, HIDDEN, SEQ = 300, 32, 8


def _encoder():
    import torch

    class _Encoder(torch.nn.Module):
        """Embedding → LayerNorm → one-head attention (+ residual) → LayerNorm → GELU FFN, mean-pooled;
        channel 3 of the LayerNorm output is an outlier (bias 8), as in BERT-class encoders."""

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.emb = torch.nn.Embedding(VOCAB, HIDDEN)
            self.ln1, self.ln2 = torch.nn.LayerNorm(HIDDEN), torch.nn.LayerNorm(HIDDEN)
            with torch.no_grad():
                self.ln1.bias[3] = 8.0
            self.q, self.k, self.v, self.o = (torch.nn.Linear(HIDDEN, HIDDEN) for _ in range(4))
            self.up, self.down = torch.nn.Linear(HIDDEN, 4 * HIDDEN), torch.nn.Linear(4 * HIDDEN, HIDDEN)

        def forward(self, ids):
            x = self.ln1(self.emb(ids))
            scores = torch.softmax(self.q(x) @ self.k(x).transpose(1, 2) / HIDDEN**0.5, dim=-1)
            x = self.ln2(x + self.o(scores @ self.v(x)))
            return (x + self.down(torch.nn.functional.gelu(self.up(x)))).mean(dim=1)

    return _Encoder()


def _model():
    from engines.models.base import InputSpec, LoadedModel

    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, size=(96, SEQ)).astype(np.int64)
    return LoadedModel(name="tiny-encoder", task="embedding", module=_encoder().eval(),
                       inputs=[InputSpec("ids", ("batch", SEQ), "int64")], output_name="y",
                       eval_inputs={"ids": ids[64:]}, calibration_inputs={"ids": ids[:64]})


def _run(path, inputs):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, inputs)[0]


def _static(tmp_path, model, **settings):
    from engines.methods.int8 import StaticInt8Config
    from engines.passes.onnx_passes import export_fp32
    from engines.passes.onnx_static import quantize_static

    tmp_path.mkdir(exist_ok=True)
    fp32 = export_fp32(model, tmp_path)
    out = tmp_path / "static.onnx"
    notes, record = quantize_static(model, dataclasses.replace(StaticInt8Config(), **settings), fp32, out, tmp_path)
    return fp32, out, notes, record


def test_smoothquant_is_exact_in_float_and_flattens_the_outlier_channel(tmp_path):
    from engines.passes.onnx_passes import export_fp32
    from engines.passes.onnx_smoothquant import channel_ranges, smooth_matmuls

    model = _model()
    fp32 = export_fp32(model, tmp_path)
    batches = model.calibration_batches(64)
    record = smooth_matmuls(fp32, tmp_path / "smooth.onnx", batches, alpha=0.5)
    assert record["tensors"] >= 2 and record["matmuls"] >= 4  # q/k/v share one input; up reads ln2's output
    np.testing.assert_allclose(_run(tmp_path / "smooth.onnx", model.eval_inputs), _run(fp32, model.eval_inputs),
                               rtol=1e-4, atol=1e-4)
    graph = onnx.load(str(tmp_path / "smooth.onnx")).graph
    muls = [n for n in graph.node if n.name.endswith("_smooth_Mul")]
    ranges = channel_ranges(tmp_path / "smooth.onnx", [m.output[0] for m in muls] + [m.input[0] for m in muls],
                            batches)
    spread = {name: r.max() / np.median(r) for name, r in ranges.items()}
    assert max(spread[m.output[0]] for m in muls) < max(spread[m.input[0]] for m in muls)
    # the output projection reads probs @ V: its 1/s went into V's weight columns and bias, not a Mul;
    # ln1's and ln2's outputs also feed a residual, so theirs stay Muls
    producer = {o: n for n in graph.node for o in n.output}
    o_proj = next(n for n in graph.node if n.name == "/o/MatMul")
    assert record["folded"] == 1 and producer[o_proj.input[0]].op_type == "MatMul"
    assert len(muls) == record["tensors"] - record["folded"]
    # fold=False (what the writer falls back to when the folded graph's outputs differ): a Mul each
    unfolded = smooth_matmuls(fp32, tmp_path / "unfolded.onnx", batches, alpha=0.5, fold=False)
    assert unfolded["folded"] == 0 and unfolded["tensors"] == record["tensors"]
    assert sum(n.name.endswith("_smooth_Mul") for n in onnx.load(str(tmp_path / "unfolded.onnx")).graph.node) \
        == unfolded["tensors"]
    np.testing.assert_allclose(_run(tmp_path / "unfolded.onnx", model.eval_inputs),
                               _run(tmp_path / "smooth.onnx", model.eval_inputs), rtol=1e-4, atol=1e-4)


def test_static_int8_on_an_attention_graph_records_its_choices(tmp_path):
    model = _model()
    fp32, out, notes, record = _static(tmp_path, model)
    assert record["calibration_method"] == "minmax" and record["calibration_samples"] == 64
    assert record["smooth_quant"]["alpha"] == 0.5 and record["smooth_quant"]["tensors"] >= 2
    assert record["matmul_outputs"] == "float"
    graph = onnx.load(str(out)).graph
    # the GELU-fed down-projection and both activation×activation matmuls are kept out of static int8
    assert any("down" in name for name in record["kept_out_of_static"])
    assert sum("MatMul" in name and "down" not in name for name in record["kept_out_of_static"]) == 2
    assert not any(n.op_type == "QLinearMatMul" for n in graph.node)
    # each static weight matmul is one MatMulIntegerToFloat that takes its bias
    fused = [n for n in graph.node if n.op_type == "MatMulIntegerToFloat"]
    assert len(fused) == record["matmuls_fused_with_bias"] >= 5 and all(len(n.input) == 7 for n in fused)
    # the embedding table is gathered as int8, then dequantized
    inits = {t.name: t for t in graph.initializer}
    gathers = [n for n in graph.node if n.op_type == "Gather" and n.input[0] in inits]
    assert record["tables_gathered_int8"] == 1
    assert any(inits[g.input[0]].data_type in (onnx.TensorProto.UINT8, onnx.TensorProto.INT8) for g in gathers)
    reference, quantized = _run(fp32, model.eval_inputs), _run(out, model.eval_inputs)
    cosine = (reference * quantized).sum(1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(quantized, axis=1)
    assert cosine.mean() > 0.99, cosine.mean()
    assert any("SmoothQuant" in note for note in notes)


def test_smooth_quant_alpha_zero_turns_it_off_and_percentile_is_recorded(tmp_path):
    from engines.methods.configs import CalibrationMethod
    from engines.methods.int8 import StaticInt8Config

    _, out, _, record = _static(tmp_path, _model(), smooth_quant_alpha=0.0,
                                calibration_method=CalibrationMethod.PERCENTILE)
    assert record["smooth_quant"] is None and record["calibration_method"] == "percentile"
    assert not any(n.name.endswith("_smooth_Mul") for n in onnx.load(str(out)).graph.node)
    assert StaticInt8Config.upgrade({}, 4)["smooth_quant_alpha"] == 0.0  # stored before: no smoothing
    with pytest.raises(ValueError, match="smooth_quant_alpha"):
        StaticInt8Config(smooth_quant_alpha=1.5)
