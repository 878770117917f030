"""``ort-static-int8``'s recipe: ``quantize_static`` with the choices that keep quality, recorded.

On a CNN every op ONNX Runtime can quantize is quantized (QDQ), after convolution bias correction.
On an attention graph (one with Softmax) measured on all-MiniLM-L6-v2 (seq 128, calibration on the
shipped sentences, cosine of the embeddings to fp32 on the held-out ones):

- only the weight matmuls are static int8: the attention mask's add would stretch a per-tensor range
  (cosine 0.37), activation×activation matmuls change range with every input, and the embedding
  ``Gather`` would cost a ``DequantizeLinear`` of the whole table on every call (1.88× → 2.05× fp32
  with it left float): :func:`gather_before_dequantize` gathers the int8 rows first instead;
- the matmuls that read a GELU's output go dynamic int8 (``gelu_inputs``, onnx_outliers.py);
- the matmuls' outputs stay float (``OpTypesToExcludeOutputQuantization``): ONNX Runtime then fuses
  each into ``MatMulIntegerToFloat``, as dynamic int8 does, instead of ``QLinearMatMul`` followed by a
  ``DequantizeLinear`` (cosine 0.988 → 0.989, and faster), and onnx_qdq_fold.py takes the bias in;
- SmoothQuant (onnx_smoothquant.py) on the static matmuls' inputs: 0.989 → 0.996 at α 0.5
  (0.995 at α 0.3), above dynamic int8's 0.993; the out-projection's ``1/s`` goes into the value
  weights, the rest are ``Mul`` nodes. Calibration method: MinMax 0.9894, Percentile 0.9896
  (twice the calibration time), Entropy alike; per-tensor weights 0.959.

On EfficientNet-Lite0 (200 held-out photo views, 36 where fp32 is confident; one view is 0.005 of
top-1 on all views): MinMax per-channel with bias correction, ReLU6 folded into the convolutions'
output ranges by the quantizer, is 1.000 on the confident views, 0.915 on all, top-5 0.995,
20.5 dB. Measured against it (docs/models.md): Entropy 0.915, Percentile 0.900 (99.99: 0.890),
moving-average MinMax 0.900, no bias correction 0.835 / 14.7 dB; the stem convolution kept float
0.890, the classifier 0.920, stem, head and classifier 0.890; the stem's output at 16 bits
0.910 / 22.1 dB and top-5 1.000, but its next convolution then runs in float (p50 ×2.14 → ×1.75
fp32 under load): none beats the default by more than one or two views, so it stays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engines.methods.configs import ActivationType, CalibrationMethod, QuantFormat
from engines.methods.int8 import GeluInputs, StaticInt8Config
from engines.passes.onnx_bias_correction import correct_conv_biases
from engines.passes.onnx_outliers import activation_matmuls, finish_static, gelu_fed_matmuls
from engines.passes.onnx_qdq_fold import fold_static_matmuls
from engines.passes.onnx_smoothquant import smooth_matmuls


class CalibrationReader:
    """Feeds calibration batches to ``quantize_static``."""

    def __init__(self, batches: list[dict[str, Any]]):
        self._batches = iter(batches)

    def get_next(self) -> dict[str, Any] | None:
        return next(self._batches, None)


ATTENTION_OPS = ("MatMul", "Gemm", "Conv", "Gather")  # what static int8 quantizes in an attention graph


def gather_before_dequantize(path: Path) -> int:
    """``DequantizeLinear(table) → Gather`` becomes ``Gather(int8 table) → DequantizeLinear``, in place.

    QDQ leaves an embedding table's dequantization before its Gather, and ONNX Runtime fuses no
    such pair: it dequantizes the whole table (MiniLM: 11.7 M values) on every call, which made
    static int8 slower than dynamic int8 (1.88× against 2.10× fp32). With one scale for the table
    the two commute: gathering the int8 rows first dequantizes only those. Returns the pairs swapped."""
    import onnx
    from onnx import helper, numpy_helper

    from engines.passes.onnx_graph import graph_links

    proto = onnx.load(str(path))
    graph = proto.graph
    inits, producer, consumers = graph_links(graph)
    users = {name: len(nodes) for name, nodes in consumers.items()}
    swapped = 0
    for gather in list(graph.node):
        dq = producer.get(gather.input[0]) if gather.op_type == "Gather" else None
        if dq is None or dq.op_type != "DequantizeLinear" or users[dq.output[0]] != 1 or dq.input[0] not in inits:
            continue
        if any(numpy_helper.to_array(inits[name]).size != 1 for name in dq.input[1:] if name in inits):
            continue  # per-axis scales do not commute with the gather
        rows = gather.output[0] + "_int8"
        new_gather = helper.make_node("Gather", [dq.input[0], gather.input[1]], [rows], name=gather.name,
                                      **{a.name: helper.get_attribute_value(a) for a in gather.attribute})
        new_dq = helper.make_node("DequantizeLinear", [rows, *dq.input[1:]], list(gather.output),
                                  name=dq.name, **{a.name: helper.get_attribute_value(a) for a in dq.attribute})
        index = list(graph.node).index(gather)
        graph.node.remove(gather)
        graph.node.insert(index, new_dq)
        graph.node.insert(index, new_gather)
        graph.node.remove(dq)
        swapped += 1
    if swapped:
        onnx.save(proto, str(path))
    return swapped


def static_op_types(path: Path) -> tuple[list[str] | None, str | None]:
    """Which ops static int8 quantizes: all it can (None), except in attention graphs.

    A transformer adds its attention mask to the scores with values near float32's minimum;
    a per-tensor int8 range fitted to that would flatten every other value of the tensor (MiniLM:
    cosine 0.37 to fp32). In graphs with Softmax, only the weight-bearing ops are quantized.
    """
    import onnx

    ops = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
    if "Softmax" not in ops:
        return None, None
    kept = [op for op in ATTENTION_OPS if op in ops]
    return kept, (f"attention graph: static int8 on {', '.join(kept)} only, outputs float (mask adds "
                  "stay float)")


def quantize_static(model, config: StaticInt8Config, fp32: Path, out: Path, workdir: Path) -> tuple[list[str], dict]:
    """Quantize ``fp32`` into ``out``; returns (notes, the record of the choices made: ``metrics["static_int8"]``)."""
    from onnxruntime import quantization as ortq
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = workdir / "model.pre.onnx"
    try:
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    except Exception:  # noqa: BLE001 - pre-processing is an optimisation; quantize the raw graph if it fails
        pre = fp32
    method = {
        CalibrationMethod.MINMAX: ortq.CalibrationMethod.MinMax,
        CalibrationMethod.ENTROPY: ortq.CalibrationMethod.Entropy,
        CalibrationMethod.PERCENTILE: ortq.CalibrationMethod.Percentile,
    }[config.calibration_method]
    batches = model.calibration_batches(config.calibration_samples)
    op_types, attention_note = static_op_types(pre)
    attention = op_types is not None
    corrected = correct_conv_biases(pre, workdir / "model.bias-corrected.onnx", batches, config.per_channel) \
        if config.bias_correction and (not attention or "Conv" in op_types) else 0
    if corrected:
        pre = workdir / "model.bias-corrected.onnx"
    gelu_fed = [] if config.gelu_inputs is GeluInputs.INT8 else gelu_fed_matmuls(pre)
    excluded = gelu_fed + (activation_matmuls(pre) if attention else [])
    smoothing = None
    if attention and config.smooth_quant_alpha > 0:
        smoothing = smooth_matmuls(pre, workdir / "model.smooth.onnx", batches, config.smooth_quant_alpha,
                                   skip=set(excluded))
        pre = workdir / "model.smooth.onnx"
    extra: dict[str, Any] = {"DefaultTensorType": 1}
    if attention:
        extra["OpTypesToExcludeOutputQuantization"] = ["MatMul", "Gemm"]
    ortq.quantize_static(
        str(pre), str(out), CalibrationReader(batches), nodes_to_exclude=excluded, extra_options=extra,
        quant_format=ortq.QuantFormat.QDQ if config.quant_format is QuantFormat.QDQ else ortq.QuantFormat.QOperator,
        per_channel=config.per_channel,
        activation_type=(ortq.QuantType.QUInt8 if config.activation_type is ActivationType.UINT8
                         else ortq.QuantType.QInt8),
        weight_type=ortq.QuantType.QInt8,
        calibrate_method=method,
        op_types_to_quantize=op_types,
    )
    samples = sum(len(next(iter(b.values()))) for b in batches)
    notes = [f"calibrated on {samples} samples ({config.calibration_method.value})"]
    if corrected:
        notes.append(f"{corrected} convolution biases corrected for int8 weight rounding")
    if smoothing:
        notes.append(f"SmoothQuant α {smoothing['alpha']}: {smoothing['matmuls']} matmuls on "
                     f"{smoothing['tensors']} inputs smoothed ({smoothing['folded']} by the preceding "
                     "matmul's weight columns, the rest by a Mul)")
    gathered = gather_before_dequantize(out) if attention else 0
    if gathered:
        notes.append(f"{gathered} embedding tables gathered as int8, then dequantized (the rows only)")
    fused = fold_static_matmuls(out) if attention and config.quant_format is QuantFormat.QDQ else 0
    if fused:
        notes.append(f"{fused} static matmuls written as MatMulIntegerToFloat with their bias")
    notes += finish_static(out, excluded, config.gelu_inputs is GeluInputs.DYNAMIC, config.per_channel)
    record = {
        "calibration_method": config.calibration_method.value, "calibration_samples": samples,
        "per_channel": config.per_channel, "quant_format": config.quant_format.value,
        "activation_type": config.activation_type.value, "op_types": op_types or "all",
        "matmul_outputs": "float" if attention else "int8", "smooth_quant": smoothing,
        "bias_corrected": corrected, "gelu_inputs": config.gelu_inputs.value,
        "kept_out_of_static": excluded, "tables_gathered_int8": gathered, "matmuls_fused_with_bias": fused,
    }
    return notes + ([attention_note] if attention_note else []), record
