"""Format writers: build the variant as a file of one format in the export directory.

Each ``write_<format>(model, source, recipe, planned, target, work) -> Exported`` runs the planned
chain of registered passes (the same passes a sweep runs) and puts the result at ``target``.
Heavy: imports torch and the format's converter.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from engines.export.pipeline import Exported


def _apply(model, planned, work: Path, runtime: str):
    from engines.bench.worker import apply_passes
    from engines.passes import PassContext

    ctx = PassContext(model, work, runtime, "cpu", 1)
    return apply_passes(model, [p.to_dict() for p in planned.passes], ctx)


def _measured_file(source: dict[str, Any], recipe, runtime: str) -> Path | None:
    """The file the result measured, when it ran on ``runtime`` and is still on disk."""
    path = Path(source["artifact"]) if source.get("artifact") else None
    if source["runtime"] != runtime or recipe.id != source.get("recipe_id") or path is None or not path.is_file():
        return None
    return path


# --- ONNX -----------------------------------------------------------------------------------------


def write_onnx(model, source: dict[str, Any], recipe, planned, target: Path, work: Path) -> Exported:
    """The measured ONNX file where it still exists, else the chain rebuilt; MatMulNBits nodes get the
    compute type the result was measured with (``onnxruntime.nbits_compute``)."""
    import onnx

    from engines.passes.onnx_passes import count_ops

    measured = _measured_file(source, recipe, "onnxruntime")
    if measured is not None:
        path, passes = measured, list(source.get("passes") or [])
        notes = [f"the file result {source['id']} measured ({measured.name})"]
    else:
        artifact, passes = _apply(model, planned, work, "onnxruntime")
        path, notes = artifact.path, list(artifact.notes)
        if source["runtime"] != "onnxruntime":
            notes.append(f"rebuilt with ONNX Runtime's passes ({' → '.join(passes)}); the source variant ran on "
                         f"{source['runtime']}")
    proto = onnx.load(str(path))  # with any external data beside it
    level = {"int8": 4, "fp32": 1}.get(str((source.get("runtime_config") or {}).get("nbits_compute", "int8")), 4)
    for node in proto.graph.node:
        if node.op_type == "MatMulNBits":
            for attr in node.attribute:
                if attr.name == "accuracy_level":
                    attr.i = level
    _save_onnx(proto, target)
    ops = count_ops(target)
    quant_ops = {k: v for k, v in ops.items() if k in QUANT_OPS}
    return Exported(target, passes, notes, {"ops": ops, "quantized_ops": quant_ops,
                                            "quantization": describe_onnx(quant_ops)})


QUANT_OPS = ("QuantizeLinear", "DequantizeLinear", "MatMulNBits", "MatMulInteger", "ConvInteger", "QLinearConv",
             "QLinearMatMul", "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "GatherBlockQuantized", "QGemm")


def describe_onnx(quant_ops: dict[str, int]) -> str:
    if not quant_ops:
        return "float (no quantized operators)"
    if "MatMulNBits" in quant_ops:
        return "block-quantized weights (MatMulNBits)"
    if "QuantizeLinear" in quant_ops:
        return "QDQ (QuantizeLinear / DequantizeLinear pairs)"
    if "DynamicQuantizeLinear" in quant_ops or "MatMulInteger" in quant_ops:
        return "dynamic int8 (MatMulInteger with run-time activation scales)"
    return "int8 (" + ", ".join(sorted(quant_ops)) + ")"


def _save_onnx(proto, target: Path) -> None:
    import onnx

    target.parent.mkdir(parents=True, exist_ok=True)
    data = target.with_name(target.name + ".data")
    if data.exists():
        data.unlink()
    if proto.ByteSize() > 1_800_000_000:  # protobuf's 2 GB cap: weights beside the graph
        onnx.save(proto, str(target), save_as_external_data=True, location=data.name)
    else:
        onnx.save(proto, str(target))


def copy_tree(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
    shutil.copytree(src, dst) if src.is_dir() else shutil.copyfile(src, dst)


# --- TFLite ---------------------------------------------------------------------------------------


def write_tflite(model, source: dict[str, Any], recipe, planned, target: Path, work: Path) -> Exported:
    """litert-torch conversion (and its PT2E or ai-edge-quantizer int8 / int4) of the torch module."""
    artifact, passes = _apply(model, planned, work, "litert")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifact.path, target)
    notes = list(artifact.notes)
    if source["runtime"] != "litert":
        notes.append(f"rebuilt with LiteRT's passes ({' → '.join(passes)}); the source variant ran on "
                     f"{source['runtime']}")
    ops, io = tflite_facts(target)
    return Exported(target, passes, notes, {"ops": ops, "io": io, "batch": 1,
                                            "quantization": artifact.facts.get("quantization", "")})


def tflite_facts(path: Path) -> tuple[dict[str, int], dict[str, Any]]:
    """Operator histogram and input / output tensor types and quantization of a .tflite file."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    ops: dict[str, int] = {}
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) or str(op.opcodeIndex)
            ops[name] = ops.get(name, 0) + 1
    runner = Interpreter(model_path=str(path)).get_signature_runner()

    def describe(details: dict) -> dict[str, Any]:
        return {name: {"dtype": str(d["dtype"].__name__ if hasattr(d["dtype"], "__name__") else d["dtype"]),
                       "shape": [int(x) for x in d["shape"]],
                       "scale": float((d.get("quantization") or (0.0, 0))[0]),
                       "zero_point": int((d.get("quantization") or (0.0, 0))[1])} for name, d in details.items()}

    return dict(sorted(ops.items())), {"inputs": describe(runner.get_input_details()),
                                       "outputs": describe(runner.get_output_details())}
