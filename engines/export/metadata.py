"""The metadata that travels with an exported model: :func:`build` makes it.

One flat dict of strings (``qbench.*`` keys; JSON text for the nested parts) goes inside the file
where the format has a place — each target's ``write_metadata`` / ``read_metadata`` (ONNX model
properties, Core ML ``user_defined_metadata``, a TFLite ``metadata`` entry named ``qbench``, MLX
safetensors' header metadata, GGUF key-value strings) — and into the side-car ``qbench.json`` for
every format. :func:`engines.export.targets.read_metadata` reads it back from the file alone.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from engines.export.targets.base import PREFIX

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
