"""ONNX export: writer, metadata in the model properties, an ONNX Runtime session on the file, and
the FastAPI service and Triton model repository templates."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from engines.export.build import save_onnx, source_file
from engines.export.targets.base import PREFIX, Exported
from engines.export.templates import copy_template, model_slug
from engines.runtimes.base import Session

QUANT_OPS = ("QuantizeLinear", "DequantizeLinear", "MatMulNBits", "MatMulInteger", "ConvInteger", "QLinearConv",
             "QLinearMatMul", "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "GatherBlockQuantized", "QGemm")
TRITON_TYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 4: "TYPE_UINT16", 5: "TYPE_INT16",
                6: "TYPE_INT32", 7: "TYPE_INT64", 9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64",
                12: "TYPE_UINT32", 13: "TYPE_UINT64", 16: "TYPE_BF16"}
MAX_BATCH = 64


def write(model, source: dict[str, Any], recipe, planned, target: Path, work: Path) -> Exported:
    """The measured ONNX file where it still exists, else the chain rebuilt; MatMulNBits nodes get the
    compute type the result was measured with (``onnxruntime.nbits_compute``)."""
    import onnx

    from engines.passes.onnx_passes import count_ops

    path, passes, notes = source_file(source, recipe, model, planned, work, "onnxruntime", "ONNX Runtime")
    proto = onnx.load(str(path))  # with any external data beside it
    level = {"int8": 4, "fp32": 1}.get(str((source.get("runtime_config") or {}).get("nbits_compute", "int8")), 4)
    for node in proto.graph.node:
        if node.op_type == "MatMulNBits":
            for attr in node.attribute:
                if attr.name == "accuracy_level":
                    attr.i = level
    save_onnx(proto, target)
    ops = count_ops(target)
    quant_ops = {k: v for k, v in ops.items() if k in QUANT_OPS}
    return Exported(target, passes, notes, {"ops": ops, "quantized_ops": quant_ops,
                                            "quantization": describe(quant_ops)})


def describe(quant_ops: dict[str, int]) -> str:
    if not quant_ops:
        return "float (no quantized operators)"
    if "MatMulNBits" in quant_ops:
        return "block-quantized weights (MatMulNBits)"
    if "QuantizeLinear" in quant_ops:
        return "QDQ (QuantizeLinear / DequantizeLinear pairs)"
    if "DynamicQuantizeLinear" in quant_ops or "MatMulInteger" in quant_ops:
        return "dynamic int8 (MatMulInteger with run-time activation scales)"
    return "int8 (" + ", ".join(sorted(quant_ops)) + ")"


def write_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Model properties (``metadata_props``)."""
    import onnx

    proto = onnx.load(str(path))
    kept = {p.key: p.value for p in proto.metadata_props if not p.key.startswith(PREFIX)}
    onnx.helper.set_model_props(proto, {**kept, **metadata})
    proto.doc_string = f"{metadata[PREFIX + 'source_model']} {metadata[PREFIX + 'label']}, exported by qbench"
    save_onnx(proto, path)


def read_metadata(path: Path) -> dict[str, str]:
    """As ONNX Runtime reads them (``get_modelmeta().custom_metadata_map``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    return {k: v for k, v in props.items() if k.startswith(PREFIX)}


def open_file(path: Path, model) -> Session:
    """ONNX Runtime, CPU execution provider, one thread."""
    from engines.runtimes.ort.session import OnnxSession, runtime_info

    session = OnnxSession(path, "cpu", threads=1)
    session.info = runtime_info()
    return session


def templates(deploy: Path, out_dir: Path, report: dict[str, Any], model) -> dict[str, dict[str, Any]]:
    app = copy_template("fastapi_app.py", deploy / "fastapi" / "app.py")
    (deploy / "fastapi" / "requirements.txt").write_text(
        "onnxruntime>=1.22\nnumpy>=1.26\nfastapi>=0.115\nuvicorn>=0.30\nprometheus-client>=0.20\n")
    name = model_slug(f"{report['model']}-{report['label']}")
    repo = deploy / "triton" / "model_repository"
    version_dir = repo / name / "1"  # only this model's own files are replaced; nothing else there is removed
    version_dir.mkdir(parents=True, exist_ok=True)
    (version_dir / "model.onnx").unlink(missing_ok=True)
    source = out_dir / report["file"]
    try:  # a hard link: no second copy of the weights
        (version_dir / "model.onnx").hardlink_to(source)
    except OSError:
        shutil.copyfile(source, version_dir / "model.onnx")
    (repo / name / "config.pbtxt").write_text(triton_config(source, name))
    return {
        "fastapi": {"path": app.relative_to(out_dir),
                    "run": "cd deploy/fastapi && uvicorn app:app --port 8000  (or MODEL_PATH=… uvicorn app:app)"},
        "triton": {"path": (repo / name / "config.pbtxt").relative_to(out_dir),
                   "run": "docker run --rm -p8000:8000 -v $PWD/deploy/triton/model_repository:/models "
                          "nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models"},
    }


def triton_config(onnx_path: Path, name: str) -> str:
    """``config.pbtxt`` from the ONNX file's own graph inputs and outputs. A leading symbolic axis is
    the batch (``max_batch_size`` > 0, dims without it); other symbolic axes are -1."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]

    def dims(value) -> list[Any]:
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in value.type.tensor_type.shape.dim]

    batched = all(dims(v) and isinstance(dims(v)[0], str) for v in [*inputs, *graph.output])
    lines = [f'name: "{name}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {MAX_BATCH if batched else 0}"]

    def block(kind: str, values) -> None:
        lines.append(f"{kind} [")
        entries = []
        for value in values:
            shape = dims(value)[1:] if batched else dims(value)
            shown = ", ".join(str(d) if isinstance(d, int) and d > 0 else "-1" for d in shape)
            elem = value.type.tensor_type.elem_type
            if elem not in TRITON_TYPES:
                raise ValueError(f"{kind[:-1]} {value.name!r} has an element type Triton does not take ({elem})")
            entries.append(f'  {{\n    name: "{value.name}"\n    data_type: {TRITON_TYPES[elem]}\n'
                           f"    dims: [ {shown or '1'} ]\n  }}")
        lines.append(",\n".join(entries))
        lines.append("]")

    block("input", inputs)
    block("output", graph.output)
    lines.append("instance_group [\n  {\n    count: 1\n    kind: KIND_CPU\n  }\n]")
    if batched:
        lines.append("dynamic_batching {\n  max_queue_delay_microseconds: 100\n}")
    return "\n".join(lines) + "\n"
