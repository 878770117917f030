"""The matmuls static int8 should not quantize per tensor: those fed by a GELU.

A transformer's FFN down-projection reads the GELU's output, whose few large channels (the
activation outliers SmoothQuant and LLM.int8() describe) stretch a per-tensor int8 range until the
rest of the tensor rounds to a handful of steps. On all-MiniLM-L6-v2 those 6 matmuls alone take
static int8 from cosine 0.991 to 0.937 (every calibration method alike: the range is right, one
scale for the tensor is not). :func:`gelu_fed_matmuls` finds them in a plain or a fused graph;
the static pass leaves them to dynamic int8 (a scale per input, computed at run time) or float.
"""

from __future__ import annotations

from pathlib import Path

GELU_OPS = ("Gelu", "FastGelu", "BiasGelu", "QuickGelu")
_HOPS = 3  # Erf-based GELU: x * 0.5 * (1 + erf(x / sqrt 2)) ends in a Mul a few nodes after the Erf


def gelu_fed_matmuls(path: Path) -> list[str]:
    """Names of the MatMul/Gemm nodes whose data input is a GELU's output (fused op or Erf form)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}

    def is_gelu(name: str, hops: int) -> bool:
        node = producer.get(name)
        if node is None or hops < 0:
            return False
        if node.op_type in GELU_OPS or node.op_type == "Erf":
            return True
        return node.op_type in ("Mul", "Add", "Div") and any(is_gelu(i, hops - 1) for i in node.input)

    return [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and n.name and is_gelu(n.input[0], _HOPS)]


def activation_matmuls(path: Path) -> list[str]:
    """Names of the MatMul nodes with no constant input: attention's scores (Q·Kᵀ) and context (P·V),
    whose operands change with every input (a per-tensor range calibrated once fits them badly)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    consts = {t.name for t in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in graph.node if n.op_type == "MatMul" and n.name and not any(i in consts for i in n.input)]


def finish_static(path: Path, gelu_fed: list[str], dynamic: bool, per_channel: bool) -> list[str]:
    """After ``quantize_static``: the GELU-fed matmuls it left out, and a fused graph's Attention /
    EmbedLayerNormalization (which static QDQ does not cover), become dynamic int8 (QAttention,
    MatMulInteger: run-time activation scales), in place. Returns the notes."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fused = [n.name for n in onnx.load(str(path), load_external_data=False).graph.node
             if n.op_type in ("Attention", "EmbedLayerNormalization") and n.name]
    nodes = (gelu_fed if dynamic else []) + fused
    if nodes:
        quantize_dynamic(str(path), str(path), weight_type=QuantType.QInt8, per_channel=per_channel,
                         nodes_to_quantize=nodes, op_types_to_quantize=["MatMul", "Gemm", "Attention",
                                                                        "EmbedLayerNormalization"],
                         extra_options={"DefaultTensorType": 1})
    notes = []
    if gelu_fed:
        notes.append(f"{len(gelu_fed)} GELU-fed and activation×activation matmuls (outlier or per-input "
                     "ranges) left out of static int8: " + ("dynamic int8 where a weight is constant, float "
                                                            "otherwise" if dynamic else "float"))
    if fused:
        notes.append(f"{len(fused)} fused Attention/EmbedLayerNormalization nodes as dynamic int8 "
                     "(static QDQ has no form for them)")
    return notes
