"""Cross-format validation: the exported file, loaded by its own runtime, on the held-out data.

Measured: agreement with fp32 (the model's reference outputs) and with the source variant (the
result as it ran in the sweep, rebuilt here on its runtime), the task metric, size, load time and
a short latency at batch 1 (one thread). A format that cannot run here says why and is marked
not validated, with what could be read from the file (size, op counts).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

LATENCY_SETTINGS = {"warmup_reps": 5, "warmup_s": 0.05, "min_reps": 30, "min_time_s": 0.3, "max_time_s": 5.0,
                    "repeat": 1}


def open_exported(fmt: str, path: Path, model) -> Any:
    """A Session on the exported file, opened by the target (raises UnsupportedVariant where its
    runtime cannot run here)."""
    from engines.export.targets import implementation

    return implementation(fmt).open_file(path, model)


def agrees(task: str, agreement: dict[str, Any] | None) -> bool | None:
    """Whether the exported file keeps the answers: the shared quality bars
    (:data:`engines.analysis.rules.QUALITY_BARS`), top-1 for classifiers, cosine for embeddings."""
    from engines.analysis.rules import agrees as verdict

    return verdict(agreement, task)


def source_outputs(model, source: dict[str, Any], work: Path) -> tuple[np.ndarray | None, str | None]:
    """The source variant's held-out outputs on its own runtime (its measured file where it is an
    ONNX file still on disk), or None and the reason it cannot run here."""
    from engines.bench.worker import EVAL_BATCH, open_recipe, run_outputs
    from engines.core.config import config_from_dict
    from engines.methods.recipe import Recipe
    from engines.runtimes import runtime_spec
    from engines.runtimes.base import Artifact, UnsupportedVariant

    batch = model.fixed_batch or EVAL_BATCH
    runtime, device = source["runtime"], source["device"]
    (work / "source").mkdir(parents=True, exist_ok=True)
    try:
        artifact_path = Path(source["artifact"]) if source.get("artifact") else None
        if runtime == "onnxruntime" and artifact_path is not None and artifact_path.is_file():
            from engines.passes.onnx_passes import count_ops
            from engines.runtimes.ort.session import open_session

            spec = runtime_spec(runtime)
            config = config_from_dict(spec.config_class, source.get("runtime_config"))
            session = open_session(Artifact(artifact_path, facts={"ops": count_ops(artifact_path)}), model, "cpu", 1,
                                   config)
        else:
            recipe = Recipe.from_list(source.get("recipe") or [{"method": source["method"], "config": {}}],
                                      lenient=True)
            try:
                _, session = open_recipe(model, recipe.spec_text, runtime, device, 1, work / "source",
                                         source.get("runtime_config"))
            except UnsupportedVariant:
                if device == "cpu":
                    raise
                _, session = open_recipe(model, recipe.spec_text, runtime, "cpu", 1, work / "source",
                                         source.get("runtime_config"))
        return run_outputs(session, model.eval_inputs, batch), None
    except UnsupportedVariant as exc:
        return None, f"the source variant cannot run here: {exc}"
    except Exception as exc:  # noqa: BLE001 - the comparison is lost, not the export
        return None, f"the source variant could not be rebuilt: {type(exc).__name__}: {exc}"


def validate_export(fmt, exported, model, reference: np.ndarray, source: dict[str, Any], run: dict[str, Any],
                    work: Path) -> dict[str, Any]:
    """The validation report (see the module's docstring)."""
    from engines.bench.evaluate import cosine_rows, evaluate
    from engines.bench.measure import MeasureSettings, agreement, measure_latency
    from engines.bench.worker import EVAL_BATCH, run_outputs
    from engines.runtimes.base import UnsupportedVariant

    report: dict[str, Any] = {"format": fmt.name, "runtime": fmt.validates_with, "file": exported.path.name,
                              "rows": len(reference), "task": model.task}
    figures = {k: v for k, v in (exported.facts or {}).items() if k in ("ops", "coreml_ops", "coreml_op_total",
                                                                        "coreml_compressed_ops", "quantized_ops")}
    report["metrics"] = figures
    t0 = time.perf_counter()
    try:
        session = open_exported(fmt.name, exported.path, model)
        first = session.run(model.example_inputs(1))
    except UnsupportedVariant as exc:
        reason = str(exc)
        report.update(validated=False, ran=False, agrees=None, status=f"not validated: {reason}", reason=reason)
        return report
    report["load_s"] = time.perf_counter() - t0
    del first
    outputs = run_outputs(session, model.eval_inputs, model.fixed_batch or EVAL_BATCH)
    quality = evaluate(model, outputs, reference)
    report["accuracy"] = quality["accuracy"]
    report["agreement_fp32"] = quality["agreement"]
    report["metrics"].update(quality["metrics"])
    src, why = source_outputs(model, source, work)
    if src is not None:
        agr = agreement(src, outputs)
        if model.task == "embedding":
            cos = cosine_rows(src, outputs)
            agr["cosine_min"] = float(cos.min())
        report["agreement_source"] = agr
        report["source_accuracy"] = source.get("accuracy")
    else:
        report["agreement_source"] = None
        report["source_note"] = why
    # Against the source where it runs here, else against fp32 (and the report says which).
    basis = report["agreement_source"] or report["agreement_fp32"]
    report["agrees_with"] = "source variant" if report["agreement_source"] else "fp32 (source variant not runnable)"
    report["agrees"] = agrees(model.task, basis)
    stats = measure_latency(session.bind(model.example_inputs(1)), MeasureSettings(**LATENCY_SETTINGS))
    report["latency_ms"] = stats.to_dict()
    report["throughput_per_s"] = 1000.0 / stats.p50 if stats.p50 else None
    report["latency_note"] = "batch 1, one thread, a short loop (0.3 s): a sanity figure, not a benchmark"
    report["runtime_info"] = getattr(session, "info", {}) or {}
    report["validated"] = True
    report["ran"] = True
    from engines.analysis.rules import agreement as judged_by
    from engines.analysis.rules import bar_text

    found = judged_by({"agreement": basis or {}}, model.task)
    kind = found[0] if found else ("cosine" if model.task in ("embedding", "generic") else "top-1")
    bar = bar_text(kind)
    shown = f"{kind} {found[1]:.4f}" if found and isinstance(found[1], float) else f"{kind} n/a"
    report["status"] = (f"validated: agrees with the {report['agrees_with']} ({shown}, {bar})" if report["agrees"]
                        else f"validated: DISAGREES with the {report['agrees_with']} ({shown}, needs {bar})")
    return report
