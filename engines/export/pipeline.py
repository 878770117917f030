"""The export itself: stored result → model file in the target format → validation → templates.

Heavy (torch, the format's converter and runtime): called by :func:`engines.export.export_result`
in the CLI's process or a child of the app, never in the UI process.

The variant is rebuilt from its stored recipe: the model is loaded as the sweep loaded it and the
target format's chain of registered passes is applied (``export-onnx → ort-static-int8``,
``tflite-dynamic-int8``, ``export-coreml → coreml-int4``, …). Where the result ran on the target
format's own runtime and its artifact file is still in the state directory, that very file is
exported instead, so the bytes shipped are the bytes measured.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from engines.export import REPORT_NAME, VALIDATION_NAME, ExportError, missing_extra
from engines.export.targets import export_target, implementation
from engines.export.targets.base import Exported, ExportTarget


def target_runtime(fmt: ExportTarget):
    """The runtime whose passes build the target's file: its own planning runtime, else a registered one."""
    from engines.runtimes import runtime_spec

    return fmt.planning_runtime() if fmt.planning_runtime else runtime_spec(fmt.runtime)


def plan_for(recipe, fmt: ExportTarget, source_format):
    """The chain of passes that realises ``recipe`` as a file of ``fmt`` (Plan), or the reason."""
    from engines.passes import plan

    return plan(recipe, source_format, target_runtime(fmt), "cpu")


def nearest_recipe(recipe, fmt: ExportTarget, source_format) -> str | None:
    """The closest method ``fmt`` can express: the method's own ``fallbacks`` (its spec), else by bits."""
    from engines import catalog
    from engines.methods.recipe import parse_recipe
    from engines.passes import Plan

    bits = recipe.bits
    ordered = list(catalog.METHODS[recipe.method].fallbacks) if recipe.method in catalog.METHODS else []
    others = sorted(catalog.METHODS.items(), key=lambda item: (item[1].bits < bits, abs(item[1].bits - bits)))
    ordered += [name for name, _ in others if name not in ordered and name != recipe.method]
    for name in ordered:
        if name not in catalog.METHODS:
            continue
        try:
            candidate = parse_recipe(name)
        except ValueError:
            continue
        if isinstance(plan_for(candidate, fmt, source_format), Plan):
            return name
    return None


def _source(store, result_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    rows = store.results(where="id = ?", params=[result_id])
    if not rows:
        raise ExportError(f"no result with id {result_id} in {store.path} (`qbench results` lists them)")
    source = rows[0]
    if source["status"] != "ok":
        why = f": {source['error']}" if source.get("error") else ""
        raise ExportError(f"result {result_id} is {source['status']}{why}; only an ok result can be exported")
    run = store.get_run(source["run_id"]) or {}
    return source, run


def run_export(store_path: Path, result_id: int, fmt_name: str, out_dir: Path, *, validate: bool = True,
               recipe: str | None = None, progress: Callable[[str], None] | None = None,
               force: bool = False) -> dict[str, Any]:
    """See :func:`engines.export.export_result`."""
    from engines.methods.recipe import Recipe, parse_recipe
    from engines.models import ModelNotFound, resolve_model
    from engines.passes import Plan
    from engines.runtimes.base import UnsupportedVariant
    from engines.store import Store, StoreError

    say = progress or (lambda line: None)
    fmt = export_target(fmt_name)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a directory")
    check_out_dir(out_dir, force)
    try:
        store = Store(store_path)
    except StoreError as exc:
        raise ExportError(str(exc)) from None
    try:
        source, run = _source(store, result_id)
        request = run.get("request") or {}
        try:
            model_spec = resolve_model(request.get("model") or source["model"], request.get("model_options") or {})
        except (ModelNotFound, ValueError) as exc:
            raise ExportError(f"the model of result {result_id} cannot be found any more: {exc}") from None
        if recipe:
            try:
                chosen = parse_recipe(recipe)
            except ValueError as exc:
                raise ExportError(f"bad --recipe {recipe!r}: {exc}") from None
        else:
            chosen = Recipe.from_list(source.get("recipe") or [{"method": source["method"],
                                                                 "config": source.get("config") or {}}],
                                      lenient=True)
        planned = plan_for(chosen, fmt, model_spec.source_format)
        if not isinstance(planned, Plan):
            nearest = nearest_recipe(chosen, fmt, model_spec.source_format)
            offer = (f"; the nearest it can express is {nearest}: add --recipe {nearest}" if nearest
                     else "; no method it can express comes close")
            raise ExportError(f"{fmt.title} cannot express {chosen.label} as this model's variant ({planned}){offer}")
        line = missing_extra(fmt_name)
        if line:
            raise ExportError(line)
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            return _export(store, source, run, model_spec, chosen, planned, fmt, out_dir, validate, say)
        except UnsupportedVariant as exc:  # a converter refused this model (an op it cannot lower, …)
            raise ExportError(f"{fmt.title} export of result {result_id} failed: {exc}") from None
    finally:
        store.close()


def check_out_dir(out_dir: Path, force: bool) -> None:
    """A folder with files qbench did not write (no export report of its own) is refused unless
    ``force``; even then only the export's own files are written over, nothing else is deleted."""
    if force or not out_dir.is_dir() or (out_dir / REPORT_NAME).is_file():
        return
    theirs = sorted(p.name for p in out_dir.iterdir())
    if theirs:
        shown = ", ".join(theirs[:3]) + (f" and {len(theirs) - 3} more" if len(theirs) > 3 else "")
        raise ExportError(f"{out_dir} is not empty and was not written by qbench export ({shown}): choose a new "
                          "or empty folder with --out, or give --force to write the export's own files there "
                          "(nothing else in it is deleted)")


def _export(store, source: dict[str, Any], run: dict[str, Any], model_spec, recipe, planned, fmt: ExportTarget,
            out_dir: Path, validate: bool, say: Callable[[str], None]) -> dict[str, Any]:
    from engines.bench.build import reference_outputs
    from engines.export import metadata as meta
    from engines.export.templates import write_templates
    from engines.export.validate import validate_export
    from engines.models import load_model

    t0 = time.perf_counter()
    say(f"loading {model_spec.name}")
    model = load_model(model_spec)
    work = Path(tempfile.mkdtemp(prefix=".qbench-export-", dir=out_dir))
    try:
        reference = reference_outputs(model, work)
        say(f"building {fmt.title}: {' → '.join(planned.names) or 'the model as it is'}")
        impl = implementation(fmt)
        exported = impl.write(model, source, recipe, planned, out_dir / fmt.filename, work)
        metadata = meta.build(source, run, recipe, model, model_spec, fmt, exported)
        impl.write_metadata(exported.path, metadata)
        say(f"wrote {exported.path} with its metadata")
        report: dict[str, Any] = {
            "format": fmt.name, "title": fmt.title, "file": exported.path.name, "out_dir": str(out_dir),
            "source_result_id": source["id"], "source_run_id": source["run_id"], "model": model_spec.name,
            "recipe": recipe.to_list(), "label": recipe.label, "recipe_id": recipe.id, "passes": exported.passes,
            "notes": exported.notes, "size_mb": _size_bytes(exported.path) / 2**20, "metadata": metadata,
            "facts": _jsonable(exported.facts),
        }
        if recipe.id != (source.get("recipe_id") or recipe.id):
            report["notes"].append(f"exported as {recipe.label} instead of the measured {source.get('label')}")
        if validate:
            say(f"validating in {fmt.validates_with} on {len(reference)} held-out rows")
            validation = validate_export(fmt, exported, model, reference, source, run, work)
        else:
            validation = {"validated": False, "status": "not validated: skipped (--no-validate)"}
        validation["size_mb"] = report["size_mb"]
        validation["size_bytes"] = _size_bytes(exported.path)
        report["validation"] = validation
        report["validation_result_id"] = _store_validation(store, source, run, model_spec, recipe, fmt, exported,
                                                           validation) if validate else None
        if fmt.recommends_device:
            report["recommended_device"] = recommended_device(store, source, fmt.runtime)
        deploy = write_templates(fmt, impl.templates, out_dir, report, model)
        report["deploy"] = deploy
        report["seconds"] = round(time.perf_counter() - t0, 2)
        (out_dir / VALIDATION_NAME).write_text(json.dumps(_jsonable(validation), indent=2, allow_nan=False) + "\n")
        (out_dir / REPORT_NAME).write_text(json.dumps(_jsonable(report), indent=2, allow_nan=False) + "\n")
        say(f"{validation['status']} · report {out_dir / REPORT_NAME}")
        return _jsonable(report)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def recommended_device(store, source: dict[str, Any], runtime: str = "coreml") -> dict[str, Any]:
    """The device qbench measured best on ``runtime`` (lowest latency, answers kept) for this model."""
    from engines.analysis.device_choice import choose_device

    results = store.results(where="model = ? AND runtime = ?", params=[source["model"], runtime])
    choice = choose_device(results, "latency")
    if choice["device"] is None:
        return {"device": None, "reason": f"no Core ML result of {source['model']} keeps its answers on a "
                                          "measured device yet: .all lets Core ML choose"}
    return {"device": choice["device"], "reason": choice["reason"]}


def _size_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    total = path.stat().st_size
    for side in (path.with_name(path.name + ".data"), path.with_suffix(".json")):
        if side.exists() and side.name != REPORT_NAME:
            total += side.stat().st_size
    return total


def _store_validation(store, source: dict[str, Any], run: dict[str, Any], model_spec, recipe, fmt: ExportTarget,
                      exported: Exported, validation: dict[str, Any]) -> int | None:
    """The validation as a result of its own, in a run of its own (source ``export``)."""
    from engines.bench.runner import new_run_id
    from engines.core.environment import collect_environment
    from engines.core.schema import Result

    run_id = new_run_id()
    request = {"model": model_spec.name, "model_options": (run.get("request") or {}).get("model_options") or {},
               "export": {"format": fmt.name, "source_result_id": source["id"], "source_run_id": source["run_id"],
                          "file": str(exported.path)}}
    store.create_run(run_id, model_spec.name, request, collect_environment(1), source="export")
    ran = validation.get("validated") or validation.get("ran")
    result = Result(
        model=source["model"], method=recipe.method, runtime=fmt.runtime, device="cpu", batch_size=1,
        recipe_id=recipe.id, label=recipe.label, recipe=recipe.to_list(),
        config=recipe.to_list()[0]["config"], passes=list(exported.passes),
        status="ok" if ran else "unsupported", error=None if ran else validation.get("status"),
        latency_ms=validation.get("latency_ms"), throughput_per_s=validation.get("throughput_per_s"),
        load_s=validation.get("load_s"), size_mb=_size_bytes(exported.path) / 2**20,
        accuracy=validation.get("accuracy"), agreement=validation.get("agreement_fp32"),
        metrics={"export": {"format": fmt.name, "source_result_id": source["id"],
                            "agreement_source": validation.get("agreement_source"),
                            "agrees": validation.get("agrees"), **(validation.get("metrics") or {})}},
        notes=list(exported.notes) + [f"export validation of result {source['id']} ({source.get('label')} on "
                                      f"{source['runtime']}/{source['device']})"],
        artifact=str(exported.path), runtime_info=validation.get("runtime_info") or {},
    )
    store.add_result(run_id, result)
    store.set_run_status(run_id, "finished", f"export of result {source['id']} to {fmt.name}")
    rows = store.results(run_id)
    return rows[-1]["id"] if rows else None


def _jsonable(value: Any) -> Any:
    """Plain JSON: numpy scalars as numbers, non-finite floats as null, paths as text."""
    import math

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
