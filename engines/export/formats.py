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
    from engines.bench.build import apply_passes
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

def _source_file(source: dict[str, Any], recipe, model, planned, work: Path, runtime: str,
                 title: str) -> tuple[Path, list[str], list[str]]:
    """The file to export: the one the result measured when it is still on disk, else rebuilt with
    ``runtime``'s passes (and said so when the source variant ran elsewhere). (path, passes, notes)"""
    measured = _measured_file(source, recipe, runtime)
    if measured is not None:
        return measured, list(source.get("passes") or []), [f"the file result {source['id']} measured ({measured.name})"]
    artifact, passes = _apply(model, planned, work, runtime)
    notes = list(artifact.notes)
    if source["runtime"] != runtime:
        notes.append(f"rebuilt with {title}'s passes ({' → '.join(passes)}); the source variant ran on "
                     f"{source['runtime']}")
    return artifact.path, passes, notes



def write_onnx(model, source: dict[str, Any], recipe, planned, target: Path, work: Path) -> Exported:
    """The measured ONNX file where it still exists, else the chain rebuilt; MatMulNBits nodes get the
    compute type the result was measured with (``onnxruntime.nbits_compute``)."""
    import onnx

    from engines.passes.onnx_passes import count_ops

    path, passes, notes = _source_file(source, recipe, model, planned, work, "onnxruntime", "ONNX Runtime")
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


# --- MLX ------------------------------------------------------------------------------------------


def write_mlx(model, source: dict[str, Any], recipe, planned, target: Path, work: Path) -> Exported:
    """The MLX module's weights as safetensors (quantized layers as MLX packs them) and ``model.json``,
    the layer-by-layer description the deploy runner rebuilds the network from."""
    import json

    from engines.export import ExportError

    artifact, passes = _apply(model, planned, work, "mlx")
    description = describe_mlx(artifact.payload, model)
    if description is None:
        raise ExportError(f"MLX export writes sequential MLP/CNN stacks; {model.name} converts to another MLX "
                          "family that the standalone runner cannot rebuild yet")
    description["dtype"] = "float16" if artifact.facts.get("half_inputs") else "float32"
    target.parent.mkdir(parents=True, exist_ok=True)
    artifact.payload.save_weights(str(target))
    target.with_suffix(".json").write_text(json.dumps(description, indent=2) + "\n")
    quantized = [layer for layer in description["layers"] if layer.get("quantized")]
    bits = sorted({layer["quantized"]["bits"] for layer in quantized})
    what = (f"MLX affine {'/'.join(map(str, bits))}-bit weights in {len(quantized)} layer(s)" if quantized
            else f"{description['dtype']} weights")
    return Exported(target, passes, list(artifact.notes), {"quantization": what, "layers": len(description["layers"]),
                                                           "quantized_layers": len(quantized)})


def describe_mlx(module, model) -> dict[str, Any] | None:
    """``model.json``: the sequential stack's layers with their shapes and quantization, or None for
    other families."""
    import re

    from mlx import nn

    from engines.runtimes.mlx.convert import FlattenChannelsFirst, QuantizedConv2d, SequentialModel, ToChannelsLast

    if not isinstance(module, SequentialModel):
        return None
    layers: list[dict[str, Any]] = []
    for layer in module.layers:
        if isinstance(layer, nn.QuantizedLinear):
            rows, packed = layer.weight.shape
            layers.append({"type": "linear", "in": packed * 32 // layer.bits, "out": rows, "bias": "bias" in layer,
                           "quantized": {"bits": layer.bits, "group_size": layer.group_size,
                                         "mode": getattr(layer, "mode", "affine")}})
        elif isinstance(layer, nn.Linear):
            out, cin = layer.weight.shape
            layers.append({"type": "linear", "in": cin, "out": out, "bias": "bias" in layer})
        elif isinstance(layer, QuantizedConv2d):
            layers.append({"type": "conv2d", "shape": list(layer.shape), "stride": list(layer.stride),
                           "padding": list(layer.padding), "bias": "bias" in layer,
                           "quantized": {"bits": layer.bits, "group_size": layer.group_size, "mode": "affine"}})
        elif isinstance(layer, nn.Conv2d):
            layers.append({"type": "conv2d", "shape": list(layer.weight.shape), "stride": list(layer.stride),
                           "padding": list(layer.padding), "bias": "bias" in layer})
        elif isinstance(layer, nn.MaxPool2d):
            values = {k: [int(a), int(b)]
                      for k, a, b in re.findall(r"(kernel_size|stride|padding)=\((\d+), ?(\d+)\)", repr(layer))}
            layers.append({"type": "maxpool2d", "kernel": values["kernel_size"], "stride": values["stride"],
                           "padding": values["padding"]})
        elif isinstance(layer, ToChannelsLast):
            layers.append({"type": "to_channels_last"})
        elif isinstance(layer, FlattenChannelsFirst):
            layers.append({"type": "flatten", "channels_last": layer.channels_last})
        elif isinstance(layer, nn.GELU):
            layers.append({"type": "gelu", "approx": getattr(layer, "_approx", "none")})
        else:
            layers.append({"type": type(layer).__name__.lower()})
    return {"family": "sequential", "model": model.name, "inputs": [
        {"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in model.inputs], "layers": layers}


# --- Core ML --------------------------------------------------------------------------------------


def write_coreml(model, source: dict[str, Any], recipe, planned, target: Path, work: Path) -> Exported:
    """coremltools conversion and ``coremltools.optimize`` compression: an ``.mlpackage``."""
    from engines.runtimes.coreml.convert import compressed_ops, load, op_counts

    measured = None
    path = Path(source["artifact"]) if source.get("artifact") else None
    if source["runtime"] == "coreml" and recipe.id == source.get("recipe_id") and path is not None and path.is_dir():
        measured = path
    if measured is not None:
        package, passes, notes = measured, list(source.get("passes") or []), [f"the package result {source['id']} "
                                                                               f"measured ({measured.name})"]
    else:
        artifact, passes = _apply(model, planned, work, "coreml")
        package, notes = artifact.path, list(artifact.notes)
        # each Core ML pass notes its compressed ops; the last count is the package's
        counts_noted = [n for n in notes if n.endswith("ops compressed")]
        notes = [n for n in notes if n not in counts_noted[:-1]]
    copy_tree(package, target)
    mlmodel = load(target)
    counts = op_counts(mlmodel)
    description = mlmodel.get_spec().description
    io = {"inputs": [i.name for i in description.input], "outputs": [o.name for o in description.output]}
    compressed = compressed_ops(counts)
    what = (f"compressed weights in {compressed} of {sum(counts.values())} ops "
            f"({', '.join(sorted(k for k in counts if k.startswith(('constexpr', 'quantize', 'dequantize'))))})"
            if compressed else "float weights")
    return Exported(target, passes, notes, {"coreml_ops": counts, "coreml_op_total": sum(counts.values()),
                                            "coreml_compressed_ops": compressed, "quantization": what, "io": io})


# --- GGUF (llama.cpp) -----------------------------------------------------------------------------


def write_gguf(model, source: dict[str, Any], recipe, planned, target: Path, work: Path) -> Exported:
    """The GGUF file the result measured where it still exists, else the chain rebuilt (qbench writes
    F32 / F16 with gguf, llama.cpp's quantizer makes Q8_0 and the 4-bit types)."""
    from engines.passes.gguf_passes import describe_types
    from engines.runtimes.llamacpp.gguf_write import tensor_types

    path, passes, notes = _source_file(source, recipe, model, planned, work, "llama.cpp", "llama.cpp")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    types = tensor_types(target)
    return Exported(target, passes, notes, {"gguf_tensor_types": types, "quantization": describe_types(types)})
