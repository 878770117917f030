"""The MLflow model registry: register a measured variant, list the registered versions.

``register`` makes sure the result is logged (its nested run; sending what is queued first),
exports the variant (``engines.export.export_result``: the model file with its metadata,
``qbench.json``, ``validation.json``, ``deploy/``; without that package, the variant's stored
artifact with a ``qbench.json`` beside it), logs the exported
folder under ``export/<format>/`` of the result's run and creates a model version from it whose tags carry
the quantization metadata and the measured figures (``quant.*``, ``bench.*``), so that
``search_model_versions("tags.`quant.method` = 'int4'")`` finds it.

Imports MLflow: run it in the CLI's process or a child, never in the app's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from engines.core.schema import display_label, public_json
from engines.paths import qbench_home
from engines.store import Store
from engines.store import outbox as ob
from engines.tracking import fields
from engines.tracking.sender import client_for, drain, reachable, with_speedup

# The variant's own format when it has one; otherwise ONNX (the portable one).
ARTIFACT_FORMATS = {".onnx": "onnx", ".mlpackage": "coreml", ".mlmodel": "coreml", ".tflite": "tflite",
                    ".safetensors": "mlx"}
RUNTIME_FORMATS = {"onnxruntime": "onnx", "coreml": "coreml", "litert": "tflite", "mlx": "mlx"}


class RegistryError(Exception):
    """The request cannot be carried out (unknown result, not measured, server unreachable…)."""


def logged_run(db_path: str | Path, result_id: int, uri: str) -> tuple[dict[str, Any], str]:
    """The stored result and its nested MLflow run id, logging it first if it is not yet."""
    store = Store(db_path)
    try:
        rows = store.results(where="id = ?", params=[result_id])
        if not rows:
            raise RegistryError(f"no result {result_id} in {store.path}; see `qbench results --format json`")
        result = with_speedup(store, rows[0])
        if result["status"] != "ok":
            raise RegistryError(f"result {result_id} is {result['status']} ({result.get('error')}); "
                                "only measured variants are registered")
        entry = _entry(store, uri, result_id)
        if entry is None:  # measured with tracking off or to another URI: queue it for this one
            with store.conn:
                ob.enqueue(store.conn, uri, "result", result["run_id"], result_id)
    finally:
        store.close()
    if entry is None or entry["state"] != "sent":
        summary = drain(db_path, uri=uri)
        store = Store(db_path)
        try:
            entry = _entry(store, uri, result_id)
        finally:
            store.close()
        if entry is None or entry["state"] != "sent" or not entry["mlflow_run_id"]:
            why = summary["errors"].get(uri) or (entry or {}).get("last_error") or "not sent"
            raise RegistryError(f"result {result_id} could not be logged to {uri}: {why}")
    return result, entry["mlflow_run_id"]


def _entry(store: Store, uri: str, result_id: int) -> dict[str, Any] | None:
    return ob.result_entry(store.conn, uri, result_id)


def export_variant(db_path: str | Path, result: dict[str, Any], fmt: str | None, out_dir: Path) -> dict[str, Any]:
    """Write the exported variant into ``out_dir``; what was written and how."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    try:
        from engines.export import ExportError, export_result
    except ImportError:  # a qbench without the export package
        export_result = None
    if export_result is not None:
        try:
            report = export_result(Path(db_path), result["id"], fmt or default_format(result), out_dir,
                                   validate=True)
        except ExportError as exc:
            raise RegistryError(f"export: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a variant the exporter cannot rebuild: one line, not a trace
            raise RegistryError(f"export to {fmt or default_format(result)} failed: {type(exc).__name__}: {exc}") from None
        validation = report.get("validation") or {}
        return {"how": "export", "format": report.get("format") or fmt or default_format(result),
                "file": report.get("file"), "validated": bool(validation.get("validated")),
                "validation": validation.get("status"), "notes": report.get("notes") or []}
    # Seam: without the export package, the variant's stored artifact as the benchmark opened it.
    artifact = Path(result["artifact"]) if result.get("artifact") else None
    if artifact is None or not artifact.exists():
        raise RegistryError(f"result {result['id']} has no stored artifact to register "
                            f"({result.get('artifact') or 'none recorded'})")
    if artifact.is_dir():
        shutil.copytree(artifact, out_dir / artifact.name)
    else:
        shutil.copy2(artifact, out_dir / artifact.name)
    (out_dir / "qbench.json").write_text(json.dumps(public_json([result])[0], indent=2, default=str) + "\n")
    return {"how": "stored-artifact", "format": default_format(result), "files": [artifact.name, "qbench.json"]}


def default_format(result: dict[str, Any]) -> str:
    suffix = Path(result.get("artifact") or "").suffix.lower()
    return RUNTIME_FORMATS.get(result.get("runtime") or "") or ARTIFACT_FORMATS.get(suffix, "onnx")


def version_tags(result: dict[str, Any], export: dict[str, Any]) -> dict[str, str]:
    tags = {**fields.quant_tags(result), **fields.bench_tags(result), **fields.figure_tags(result),
            "export.format": str(export.get("format")), "export.how": str(export.get("how"))}
    if "validated" in export:  # the exported file, re-opened in its format's runtime on held-out data
        tags["export.validated"] = str(export["validated"]).lower()
        tags["export.validation"] = str(export.get("validation") or "")[:500]
    tags.pop("bench.status", None)
    tags.pop("bench.error", None)
    return tags


def register(db_path: str | Path, result_id: int, uri: str, *, name: str | None = None, alias: str | None = None,
             fmt: str | None = None) -> dict[str, Any]:
    """Register the exported variant of a stored result as a new model version."""
    problem = reachable(uri)
    if problem:
        raise RegistryError(problem)
    result, run_id = logged_run(db_path, result_id, uri)
    name = name or fields.model_name(result["model"])
    out_dir = qbench_home() / "exports" / f"{result_id}-{fmt or default_format(result)}"
    export = export_variant(db_path, result, fmt, out_dir)
    client = client_for(uri)
    from mlflow.exceptions import MlflowException

    try:
        # One folder per format: registering the variant again in another format keeps the first.
        folder = f"export/{export['format']}"
        client.log_artifacts(run_id, str(out_dir), folder)
        artifact_uri = client.get_run(run_id).info.artifact_uri
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name, tags={"qbench.model": result["model"]},
                                           description=f"qbench variants of {result['model']}")
        tags = version_tags(result, export)
        version = client.create_model_version(name, source=f"{artifact_uri}/{folder}", run_id=run_id, tags=tags,
                                              description=describe(result))
        if alias:
            client.set_registered_model_alias(name, alias, version.version)
    except MlflowException as exc:
        raise RegistryError(f"MLflow refused: {exc.message}") from None
    return {"name": name, "version": str(version.version), "alias": alias, "run_id": run_id,
            "source": version.source, "tags": tags, "export": export, "result_id": result_id}


def describe(result: dict[str, Any]) -> str:
    figures = fields.figure_tags(result)
    parts = [f"{display_label(result)} · {result['runtime']} · {result['device']} · batch {result['batch_size']}"]
    if "bench.latency_p50_ms" in figures:
        parts.append(f"p50 {figures['bench.latency_p50_ms']} ms")
    if "bench.speedup_vs_fp32" in figures:
        parts.append(f"×{figures['bench.speedup_vs_fp32']} vs fp32")
    if "bench.accuracy" in figures:
        parts.append(f"accuracy {figures['bench.accuracy']}")
    return "; ".join(parts)


def tag_filter(name: str | None = None, where: dict[str, str] | None = None) -> str | None:
    """An MLflow filter string: ``name = '…'`` and ``tags.`quant.method` = '…'`` for each pair."""
    clauses = []
    if name:
        clauses.append(f"name = '{_quote(name)}'")
    for key, value in (where or {}).items():
        clauses.append(f"tags.`{key}` = '{_quote(value)}'")
    return " and ".join(clauses) or None


def _quote(text: str) -> str:
    return text.replace("'", "\\'")


def list_versions(uri: str, *, name: str | None = None, where: dict[str, str] | None = None,
                  limit: int = 1000) -> list[dict[str, Any]]:
    """Registered versions (newest first per model), each with its tags and aliases."""
    problem = reachable(uri)
    if problem:
        raise RegistryError(problem)
    client = client_for(uri)
    from mlflow.exceptions import MlflowException

    try:
        versions = list(client.search_model_versions(tag_filter(name, where), max_results=limit))
        aliases: dict[tuple[str, str], list[str]] = {}
        for model in {v.name for v in versions}:  # search results may leave aliases out
            for alias, version in (client.get_registered_model(model).aliases or {}).items():
                aliases.setdefault((model, str(version)), []).append(alias)
    except MlflowException as exc:
        raise RegistryError(f"MLflow refused: {exc.message}") from None
    out = [{"name": v.name, "version": str(v.version), "aliases": sorted(aliases.get((v.name, str(v.version)), [])),
            "tags": dict(v.tags or {}), "run_id": v.run_id, "source": v.source, "created": v.creation_timestamp,
            "description": v.description} for v in versions]
    return sorted(out, key=lambda v: (v["name"], -int(v["version"])))
