"""The metadata that travels with an exported model, and where each format keeps it.

One flat dict of strings (``qbench.*`` keys; JSON text for the nested parts) goes inside the file
where the format has a place — ONNX model properties (``metadata_props``, read back by ONNX
Runtime's ``get_modelmeta().custom_metadata_map``), Core ML ``user_defined_metadata``, a TFLite
``metadata`` entry named ``qbench`` (a JSON buffer), MLX safetensors' header metadata — and into
the side-car ``qbench.json`` for every format. :func:`read` reads it back from the file alone.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PREFIX = "qbench."
TFLITE_NAME = "qbench"
FIGURE_KEYS = ("p50", "p90", "p99", "mean")


def qbench_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qbench")
    except PackageNotFoundError:
        return "0+unknown"


def model_hash(model) -> str:
    """sha256 of the source model: its file's bytes, or its fp32 weights (names, shapes, bytes)."""
    digest = hashlib.sha256()
    if model.module is None and model.onnx_source is not None:
        with open(model.onnx_source, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return "sha256:" + digest.hexdigest()
    for name, tensor in model.module.state_dict().items():
        array = tensor.detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(array.shape)).encode())
        digest.update(array.numpy().tobytes() if array.dtype.is_floating_point or not array.is_quantized
                      else array.int_repr().numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def _calibration(steps: list[dict[str, Any]]) -> str:
    for step in steps:
        config = step.get("config") or {}
        if "calibration_method" in config:
            samples = config.get("calibration_samples")
            return f"{config['calibration_method']}" + (f", {samples} samples" if samples else "") + \
                ", the model's calibration split"
        if step["method"].startswith("qat"):
            return "quantization-aware training on the model's training split"
        if step["method"] == "mixed":
            return "per-layer sensitivity on the model's calibration split"
    return "none (weights only, or activation scales at run time)"


def _group_size(steps: list[dict[str, Any]]) -> int | None:
    for step in steps:
        config = step.get("config") or {}
        for key in ("group_size", "block_size"):
            if config.get(key):
                return int(config[key])
    return None


def build(source: dict[str, Any], run: dict[str, Any], recipe, model, model_spec, fmt, exported) -> dict[str, str]:
    """``qbench.*`` → text for the file and the side-car."""
    steps = recipe.to_list()
    latency = source.get("latency_ms") or {}
    agreement = source.get("agreement") or {}
    figures = {
        "runtime": source["runtime"], "device": source["device"], "batch_size": source["batch_size"],
        **{f"latency_{k}_ms": latency.get(k) for k in FIGURE_KEYS},
        "throughput_per_s": source.get("throughput_per_s"), "size_mb": source.get("size_mb"),
        "memory_mb": source.get("memory_mb"), "accuracy": source.get("accuracy"),
        **{f"agreement_{k}": agreement.get(k) for k in ("top1", "cosine", "sqnr_db")},
    }
    figures = {k: (None if isinstance(v, float) and v != v or v in (float("inf"), float("-inf")) else v)
               for k, v in figures.items()}
    data = {
        "method": recipe.method, "label": recipe.label, "bits": str(recipe.bits),
        "group_size": str(_group_size(steps) or ""), "calibration": _calibration(steps),
        "recipe": json.dumps(steps, sort_keys=True), "recipe_id": recipe.id,
        "passes": json.dumps(list(exported.passes)), "format": fmt.name,
        "quantization": str((exported.facts or {}).get("quantization") or ""),
        "source_model": model_spec.name, "source_model_path": model_spec.path or "",
        "source_model_hash": model_hash(model), "task": model.task,
        "inputs": json.dumps([{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in model.inputs]),
        "output": model.output_name,
        "source_result_id": str(source["id"]), "source_run_id": str(source["run_id"]),
        "figures": json.dumps(figures), "qbench_version": qbench_version(),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return {PREFIX + k: v for k, v in data.items()}


def write(fmt: str, path: Path, metadata: dict[str, str]) -> None:
    """Put ``metadata`` inside the file ``path`` of format ``fmt`` (in place)."""
    globals()[f"_write_{fmt}"](path, metadata)


def read(fmt: str, path: Path) -> dict[str, str]:
    """The ``qbench.*`` metadata read back from inside the file (not the side-car)."""
    return globals()[f"_read_{fmt}"](path)


# --- ONNX: model properties -------------------------------------------------------------------------


def _write_onnx(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    kept = {p.key: p.value for p in proto.metadata_props if not p.key.startswith(PREFIX)}
    onnx.helper.set_model_props(proto, {**kept, **metadata})
    proto.doc_string = f"{metadata[PREFIX + 'source_model']} {metadata[PREFIX + 'label']}, exported by qbench"
    from engines.export.formats import _save_onnx

    _save_onnx(proto, path)


def _read_onnx(path: Path) -> dict[str, str]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    return {k: v for k, v in props.items() if k.startswith(PREFIX)}


# --- TFLite: a metadata entry "qbench" whose buffer is the JSON of the dict ----------------------------


def _write_tflite(path: Path, metadata: dict[str, str]) -> None:
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    entries = [m for m in (model.metadata or []) if (m.name.decode() if isinstance(m.name, bytes) else m.name)
               != TFLITE_NAME]
    buffer = schema.BufferT()
    buffer.data = list(json.dumps(metadata, sort_keys=True).encode())
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = TFLITE_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*entries, entry]
    path.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))


def _read_tflite(path: Path) -> dict[str, str]:
    from engines.export.sessions.tflite import template_module

    return template_module("run_tflite").read_metadata(path)


# --- MLX: the safetensors header ----------------------------------------------------------------------


def _write_mlx(path: Path, metadata: dict[str, str]) -> None:
    import mlx.core as mx

    arrays, existing = mx.load(str(path), return_metadata=True)
    kept = {k: v for k, v in existing.items() if not k.startswith(PREFIX)}
    mx.save_safetensors(str(path), arrays, metadata={**kept, **metadata})


def _read_mlx(path: Path) -> dict[str, str]:
    import mlx.core as mx

    _, metadata = mx.load(str(path), return_metadata=True)
    return {k: v for k, v in metadata.items() if k.startswith(PREFIX)}


# --- Core ML: user_defined_metadata -------------------------------------------------------------------


def _write_coreml(path: Path, metadata: dict[str, str]) -> None:
    import shutil

    from engines.runtimes.coreml.convert import load

    mlmodel = load(path)
    for key, value in metadata.items():
        mlmodel.user_defined_metadata[key] = value
    mlmodel.short_description = (f"{metadata[PREFIX + 'source_model']} · {metadata[PREFIX + 'label']} "
                                 "(exported by qbench)")
    mlmodel.author = "qbench"
    staging = path.with_name(".staging-" + path.name)  # coremltools wants the .mlpackage suffix
    mlmodel.save(str(staging))
    shutil.rmtree(path)
    staging.rename(path)


def _read_coreml(path: Path) -> dict[str, str]:
    from engines.runtimes.coreml.convert import load

    return {k: v for k, v in load(path).user_defined_metadata.items() if k.startswith(PREFIX)}


# --- GGUF: string keys in the file's key-value section ------------------------------------------------


def _write_gguf(path: Path, metadata: dict[str, str]) -> None:
    from engines.runtimes.llamacpp.gguf_write import set_metadata

    set_metadata(path, metadata)


def _read_gguf(path: Path) -> dict[str, str]:
    from engines.runtimes.llamacpp.gguf_write import read_metadata

    return read_metadata(path, PREFIX)
