"""A cache of fp32 ONNX exports, so that ONNX Runtime variants of a torch model skip torch.

Loading a transformers model costs a child process 15–25 s of imports on a small machine,
and exporting it to ONNX several seconds more, for every variant of a sweep. The first
ONNX Runtime variant of a model exports it once to ``$QBENCH_HOME/models/onnx/``, with its
held-out and calibration data; the following ones load that graph and data with numpy and
ONNX Runtime only. They all then share one fp32 reference: ONNX Runtime's own fp32 outputs.

The key covers everything the export depends on (the loader's recipe, the weights' sizes and
modification times, the options, the library versions), so an edited model is re-exported.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engines.models.base import InputSpec, LoadedModel
from engines.paths import models_cache_dir

CACHE_VERSION = 2  # 2: causal LMs keep their KV-cache decode-step graph beside the main one


SOURCE_FORMAT = "source_format"  # set by the worker when the variant's passes start from ONNX


def wants_onnx(spec_extra: dict[str, Any]) -> bool:
    """Jobs whose pass chain starts with an ONNX export may skip the torch module."""
    return spec_extra.get(SOURCE_FORMAT) == "onnx"


def file_stamp(paths: list[Path]) -> list[list[Any]]:
    return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(paths)]


def cache_key(parts: dict[str, Any]) -> str:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("torch", "onnx", "transformers"):
        try:
            versions[package] = version(package)  # read from metadata: no import
        except PackageNotFoundError:
            versions[package] = None
    payload = {"cache": CACHE_VERSION, **versions, **parts}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _folder(name: str, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return models_cache_dir() / "onnx" / f"{safe}-{key}"


def onnx_model(name: str, key_parts: dict[str, Any], build: Callable[[], LoadedModel]) -> LoadedModel:
    """The model as an ONNX graph plus its data: from the cache, or built, exported and cached."""
    folder = _folder(name, cache_key(key_parts))
    cached = _read(folder)
    if cached is not None:
        return cached
    model = build()
    _write(model, folder)
    cached = _read(folder)
    if cached is None:
        raise OSError(f"could not write the ONNX export cache in {folder}")
    return cached


def _write(model: LoadedModel, folder: Path) -> None:
    from engines.models.onnx_export import export_fp32

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        export_fp32(model, tmp)
        if model.task == "causal-lm" and model.details.get("kv_cache"):
            from engines.models.kv_cache import KV_GRAPH, export_kv_onnx

            try:
                export_kv_onnx(model.module, model.details["kv_cache"], tmp / KV_GRAPH)
            except Exception as exc:  # noqa: BLE001 - the model still measures, without a cached decode
                model.details["kv_cache_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        arrays = {f"eval__{k}": v for k, v in model.eval_inputs.items()}
        arrays.update({f"calibration__{k}": v for k, v in (model.calibration_inputs or {}).items()})
        if model.eval_labels is not None:
            arrays["labels"] = np.asarray(model.eval_labels)
        if model.calibration_labels is not None:  # the mixed method's accuracy budget reads them
            arrays["calibration_labels"] = np.asarray(model.calibration_labels)
        np.savez(tmp / "data.npz", **arrays)
        meta = {
            "name": model.name, "task": model.task, "output_name": model.output_name,
            "inputs": [[s.name, list(s.shape), s.dtype] for s in model.inputs],
            "output_axes": {str(k): v for k, v in model.output_axes.items()},
            "params": model.params, "details": model.details, "fixed_batch": model.fixed_batch,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, default=str))
        try:
            os.rename(tmp, folder)  # atomic; another process may have won the race
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read(folder: Path) -> LoadedModel | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        with np.load(folder / "data.npz") as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, KeyError):
        return None
    if not (folder / "model.onnx").exists():
        return None
    details = dict(meta["details"])
    details["reference"] = "ONNX Runtime fp32 on the cached export"
    kv_graph = folder / "decoder_with_past.onnx"  # engines.models.kv_cache.KV_GRAPH
    return LoadedModel(
        name=meta["name"], task=meta["task"], module=None,
        inputs=[InputSpec(n, tuple(shape), dtype) for n, shape, dtype in meta["inputs"]],
        output_name=meta["output_name"],
        eval_inputs={k.split("__", 1)[1]: v for k, v in arrays.items() if k.startswith("eval__")},
        eval_labels=arrays.get("labels"),
        calibration_inputs={k.split("__", 1)[1]: v for k, v in arrays.items() if k.startswith("calibration__")}
        or None,
        calibration_labels=arrays.get("calibration_labels"),
        onnx_source=folder / "model.onnx", params=meta["params"], details=details,
        output_axes={int(k): v for k, v in meta["output_axes"].items()}, fixed_batch=meta["fixed_batch"],
        kv_onnx=kv_graph if kv_graph.exists() else None,
    )
