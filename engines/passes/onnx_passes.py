"""ONNX passes: export a torch module to ONNX, and ONNX Runtime's own quantizers.

``export-onnx`` (TorchScript exporter, dynamic batch axis); ``ort-float16``
(``onnxruntime.transformers.float16``); ``ort-matmul-nbits-8`` / ``-4`` (``MatMulNBitsQuantizer``,
block-wise, embedding tables too at 4 bits); ``ort-dynamic-int8`` (``quantize_dynamic``);
``ort-static-int8`` (``quantize_static`` with a calibration reader: MinMax, Entropy or Percentile;
the recipe and what it measured are in onnx_static.py).
Everything heavy (torch, onnx, onnxruntime) is imported inside the functions.
"""

from __future__ import annotations

import logging
from pathlib import Path

from engines.methods.floats import Fp16Config
from engines.methods.int4 import Int4Algorithm, Int4Config
from engines.methods.int8 import DynamicInt8Config, StaticInt8Config, WeightInt8Config
from engines.models.onnx_export import export_fp32  # noqa: F401 - re-exported: bench scripts and tests use it here
from engines.passes import Format, PassContext, register_pass
from engines.passes.onnx_graph import gemm_to_matmul
from engines.passes.onnx_static import CalibrationReader as _CalibrationReader  # noqa: F401 - mixed_passes reads it here
from engines.passes.onnx_static import quantize_static
from engines.runtimes.base import Artifact, UnsupportedVariant

_ORT = ("onnxruntime",)  # graphs with com.microsoft ops or ORT-only layouts
_ORT_CPU_ONLY = "ONNX Runtime's int8 quantized operators run on the CPU execution provider only"

# The quantizers log every skipped node at INFO; keep the child's log readable.
logging.getLogger("onnxruntime").setLevel(logging.WARNING)


def count_ops(path: Path) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def _matmul_nbits(fp32: Path, out: Path, bits: int, block: int, symmetric: bool,
                  embeddings: bool = True, hqq: bool = False) -> list[str]:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import HQQWeightOnlyQuantConfig, MatMulNBitsQuantizer

    proto = onnx.load(str(fp32))
    rewritten = gemm_to_matmul(proto)
    proto, small_tables = _prepare_embedding_gathers(proto, bits) if embeddings else (proto, None)
    # accuracy_level 4 selects MLAS's int8-compute kernels: ~8x faster than the fp32 path for
    # 8-bit weights on x86 (measured here). It is a kernel choice, so ONNX Runtime's runtime config
    # (nbits_compute) may lower it when it opens the graph; the file carries the fast default.
    level = 4
    extra = {"op_types_to_quantize": ("MatMul", "Gather"), "quant_axes": (("MatMul", 0), ("Gather", 1)),
             "nodes_to_exclude": small_tables}
    if hqq:  # ORT's HQQ quantizes MatMul weights only (float zero points: no GatherBlockQuantized)
        algo = HQQWeightOnlyQuantConfig(block_size=block, bits=bits, op_types_to_quantize=("MatMul",),
                                        quant_axes=(("MatMul", 0),))
        quantizer = MatMulNBitsQuantizer(proto, bits=bits, block_size=block, accuracy_level=level, algo_config=algo)
    else:
        quantizer = MatMulNBitsQuantizer(proto, bits=bits, block_size=block, is_symmetric=symmetric,
                                         accuracy_level=level, **(extra if small_tables is not None else {}))
    quantizer.process()
    if bits == 8 and embeddings:  # ORT's quantizer takes 4-bit tables only; the op runs 8-bit ones too
        _gather_block_quantized_8bit(quantizer.model.model, block)
    quantizer.model.save_model_to_file(str(out), False)
    quantized = count_ops(out).get("MatMulNBits", 0)
    if quantized == 0:
        raise UnsupportedVariant("the model has no MatMul/Gemm weights for MatMulNBits to quantize")
    notes = [f"{quantized} MatMul nodes as MatMulNBits ({bits}-bit, block {block}{', HQQ' if hqq else ''})"]
    if rewritten:
        notes.append(f"{rewritten} Gemm nodes rewritten as MatMul+Add first")
    tables = count_ops(out).get("GatherBlockQuantized", 0)
    if tables:
        notes.append(f"{tables} embedding tables as GatherBlockQuantized ({bits}-bit)")
    return notes


EMBEDDING_MIN_VALUES = 1 << 16  # smaller tables are not worth the accuracy


def _prepare_embedding_gathers(proto, bits: int):
    """(graph, names of small Gather tables to leave alone), or (graph, None): no embeddings.

    In a transformer the token-embedding table (a Gather on a float initializer) is often the
    largest tensor: MiniLM's is half the file. ORT quantizes it to 4 bits as GatherBlockQuantized,
    an op that needs opset 21, so the graph is converted to opset 21 first; when that conversion
    fails, only the MatMul weights are quantized.
    """
    import numpy as np
    from onnx import version_converter

    if bits != 4:  # GatherBlockQuantized takes 4-bit data only
        return proto, None
    inits = {t.name: t for t in proto.graph.initializer}
    tables = [n for n in proto.graph.node if n.op_type == "Gather" and n.input[0] in inits
              and inits[n.input[0]].data_type == 1 and len(inits[n.input[0]].dims) == 2]
    large = [n for n in tables if np.prod(inits[n.input[0]].dims) >= EMBEDDING_MIN_VALUES]
    if not large:
        return proto, None
    small = [n.name for n in tables if n not in large and n.name]
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset >= 21:
        return proto, small
    try:
        return version_converter.convert_version(proto, 21), small
    except Exception:  # noqa: BLE001 - an op the converter cannot lift: embeddings stay float
        return proto, None


def _gather_block_quantized_8bit(proto, block: int) -> int:
    """Large float Gather tables (embeddings) → ``GatherBlockQuantized`` with 8-bit blocks along the
    hidden axis (uint8 data, zero point 128: symmetric), in place. Returns the tables rewritten."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    done = 0
    for node in list(graph.node):
        if node.op_type != "Gather" or node.input[0] not in inits:
            continue
        table = inits[node.input[0]]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (table.data_type != 1 or len(table.dims) != 2 or np.prod(table.dims) < EMBEDDING_MIN_VALUES
                or attrs.get("axis", 0) != 0 or table.dims[1] % block):
            continue
        w = numpy_helper.to_array(table).astype(np.float32)
        blocks = w.reshape(w.shape[0], -1, block)
        scale = np.abs(blocks).max(axis=-1) / 127.0
        scale[scale == 0] = 1.0
        q = (np.clip(np.round(blocks / scale[..., None]), -127, 127).astype(np.int16) + 128).astype(np.uint8)
        name = node.input[0]
        graph.initializer.extend([numpy_helper.from_array(q.reshape(w.shape), name + "_Q8"),
                                  numpy_helper.from_array(scale.astype(np.float32), name + "_scales"),
                                  numpy_helper.from_array(np.full(scale.shape, 128, np.uint8), name + "_zp")])
        new = helper.make_node("GatherBlockQuantized", [name + "_Q8", node.input[1], name + "_scales", name + "_zp"],
                               list(node.output), name=node.name + "_Q8", domain="com.microsoft", bits=8,
                               block_size=block, gather_axis=0, quantize_axis=1)
        index = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(index, new)
        done += 1
    if done:
        used = {i for n in graph.node for i in n.input}
        keep = [t for t in graph.initializer if t.name in used]
        del graph.initializer[:]
        graph.initializer.extend(keep)
        if not any(o.domain == "com.microsoft" for o in proto.opset_import):
            proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return done


# --- the registered passes ------------------------------------------------------------------------


@register_pass("export-onnx", config=None, input=Format.TORCH, output=Format.ONNX)
def export_onnx(ctx: PassContext, artifact: Artifact, config: None) -> Artifact:
    """Export the torch module to ONNX (opset 17, dynamic batch axis); learnt integer weights
    (QAT: ``artifact.facts["qdq"]``) become MatMulNBits nodes (``write_qdq_weights`` writes the
    QDQ form of the same weights, which ``bench/qat_export.py`` compares)."""
    fine_tuned = artifact.payload is not None and artifact.payload is not ctx.model.module
    path = export_fp32(ctx.model, ctx.workdir, artifact.payload if fine_tuned else None)
    if not artifact.facts.get("qdq"):
        return Artifact(path, format=Format.ONNX.value, facts=dict(artifact.facts))
    out = ctx.workdir / "model.qat.onnx"
    from engines.passes.nbits_export import write_matmul_nbits_weights

    notes = write_matmul_nbits_weights(path, out, artifact.facts["qdq"])
    facts = {k: v for k, v in artifact.facts.items() if k != "qdq"}
    quantized = _quantized(out, notes)
    quantized.facts.update(facts)
    return quantized


def write_qdq_weights(fp32: Path, out: Path, learnt: dict) -> list[str]:
    """Replace each learnt layer's MatMul weight by ``DequantizeLinear(integers, scales)``.

    ``learnt``: module name → {"q": int8 [out, in], "scale": [out, in/group], "group", "bits"}.
    Per-channel int8 is opset-17 QDQ; groups need opset 21's blocked DequantizeLinear, and weights
    of 4 bits or fewer are stored as INT4 (ONNX has no narrower type), which ONNX Runtime fuses with
    the MatMul into MatMulNBits when it opens the graph."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper, version_converter

    proto = onnx.load(str(fp32))
    gemm_to_matmul(proto)
    blocked = any(v["group"] != v["q"].shape[1] or v["bits"] < 8 for v in learnt.values())
    if blocked:
        opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
        if opset < 21:
            proto = version_converter.convert_version(proto, 21)
        proto.ir_version = max(proto.ir_version, 10)
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    dq_nodes, done = [], set()
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits:
            continue
        layer = ".".join(node.name.strip("/").split("/")[:-1])
        entry = learnt.get(layer)
        weight = inits[node.input[1]]
        if entry is None or tuple(weight.dims) != entry["q"].T.shape or layer in done:
            continue
        q, scale, group, bits = entry["q"].T, entry["scale"].T.astype(np.float32), entry["group"], entry["bits"]
        base = node.input[1] + "_qdq"
        per_channel = group == q.shape[0] and bits == 8
        if bits <= 4:
            values = helper.make_tensor(base + "_q", TensorProto.INT4, q.shape, q.flatten().tolist())
        else:
            values = numpy_helper.from_array(np.ascontiguousarray(q.astype(np.int8)), base + "_q")
        scales = numpy_helper.from_array(np.ascontiguousarray(scale[0] if per_channel else scale), base + "_scale")
        graph.initializer.extend([values, scales])
        attrs = {"axis": 1} if per_channel else {"axis": 0, "block_size": int(group)}
        dq_nodes.append(helper.make_node("DequantizeLinear", [values.name, scales.name], [base],
                                         name=node.name + "_DQ", **attrs))
        node.input[1] = base
        done.add(layer)
    used = {i for n in list(graph.node) + dq_nodes for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = dq_nodes + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    missing = sorted(set(learnt) - done)
    bits = sorted({v["bits"] for v in learnt.values()})
    notes = [f"QDQ export: {len(done)} MatMul weights as DequantizeLinear of learnt {'/'.join(map(str, bits))}-bit "
             f"integers" + (" (stored as INT4)" if bits[0] < 4 else "")]
    if missing:
        notes.append(f"{len(missing)} learnt layers not found in the graph stay float: {', '.join(missing[:4])}")
    return notes


def _quantized(out: Path, notes: list[str], prior: Artifact | None = None) -> Artifact:
    """The pass's output artifact; ``prior`` (its input) hands on the figures earlier passes recorded
    (a fused graph's ``fusions``)."""
    ops = count_ops(out)
    int_ops = {k: v for k, v in ops.items() if k.startswith(("QLinear", "DequantizeLinear", "MatMulInteger", "ConvInteger",
                                                           "DynamicQuantize", "QuantizeLinear", "MatMulNBits",
                                                           "GatherBlockQuantized", "QAttention", "QEmbedLayerNormalization"))}
    if int_ops:
        notes.append("ops: " + ", ".join(f"{k}×{v}" for k, v in sorted(int_ops.items())))
    return Artifact(out, notes=notes, format=Format.ONNX.value, facts={"ops": ops},
                    metrics=dict(prior.metrics) if prior is not None else {})


@register_pass("ort-float16", config=Fp16Config, input=Format.ONNX, output=Format.ONNX)
def ort_float16(ctx: PassContext, artifact: Artifact, config: Fp16Config) -> Artifact:
    """Cast the graph to float16 (onnxruntime.transformers.float16)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out = ctx.workdir / "model.fp16.onnx"
    proto = convert_float_to_float16(onnx.load(str(artifact.path)), keep_io_types=config.keep_io_types)
    onnx.save(proto, str(out))
    return _quantized(out, [], artifact)


@register_pass("ort-matmul-nbits-8", config=WeightInt8Config, input=Format.ONNX, output=Format.ONNX,
               runtimes=_ORT, unsupported={"cuda": "MatMulNBits 8-bit has no CUDA kernel"})
def ort_weight_int8(ctx: PassContext, artifact: Artifact, config: WeightInt8Config) -> Artifact:
    """8-bit block-wise weights (MatMulNBitsQuantizer)."""
    out = ctx.workdir / "model.weight-int8.onnx"
    return _quantized(out, _matmul_nbits(artifact.path, out, 8, config.block_size, config.symmetric,
                                         config.quantize_embeddings), artifact)


@register_pass("ort-matmul-nbits-4", config=Int4Config, input=Format.ONNX, output=Format.ONNX, runtimes=_ORT)
def ort_int4(ctx: PassContext, artifact: Artifact, config: Int4Config) -> Artifact:
    """4-bit block-wise weights, embedding tables included (MatMulNBitsQuantizer)."""
    out = ctx.workdir / "model.int4.onnx"
    hqq = config.algorithm is Int4Algorithm.HQQ
    return _quantized(out, _matmul_nbits(artifact.path, out, 4, config.group_size, config.symmetric,
                                         config.quantize_embeddings and not hqq, hqq=hqq), artifact)


@register_pass("ort-dynamic-int8", config=DynamicInt8Config, input=Format.ONNX, output=Format.ONNX,
               runtimes=_ORT, unsupported={"cuda": _ORT_CPU_ONLY}, owns=("quantize_conv", "reduce_range"))
def ort_dynamic_int8(ctx: PassContext, artifact: Artifact, config: DynamicInt8Config) -> Artifact:
    """int8 weights, activation scales at run time (quantize_dynamic)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = ctx.workdir / "model.dynamic-int8.onnx"
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    ops = sorted(op for op in IntegerOpsRegistry if config.quantize_conv or op != "Conv")
    # A fused graph's contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape inference:
    # their outputs are float, which the quantizer is told rather than left to guess.
    quantize_dynamic(str(artifact.path), str(out), weight_type=QuantType.QInt8, per_channel=config.per_channel,
                     reduce_range=config.reduce_range, op_types_to_quantize=ops,
                     extra_options={"DefaultTensorType": 1})
    notes = []
    if not config.quantize_conv and count_ops(artifact.path).get("Conv"):
        notes.append("convolutions kept float (quantize_conv=false: run-time per-tensor scales wreck them); "
                     "static-int8 quantizes them with calibrated ranges")
    return _quantized(out, notes, artifact)


@register_pass("ort-static-int8", config=StaticInt8Config, input=Format.ONNX, output=Format.ONNX,
               runtimes=_ORT, unsupported={"cuda": _ORT_CPU_ONLY},
               owns=("quant_format", "activation_type", "gelu_inputs", "smooth_quant_alpha"))
def ort_static_int8(ctx: PassContext, artifact: Artifact, config: StaticInt8Config) -> Artifact:
    """W8A8 with calibrated activation ranges (quantize_static, QDQ or QOperator)."""
    out = ctx.workdir / "model.static-int8.onnx"
    notes, record = quantize_static(ctx.model, config, artifact.path, out, ctx.workdir)
    quantized = _quantized(out, notes, artifact)
    quantized.metrics["static_int8"] = record
    return quantized
