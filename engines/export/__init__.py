"""Export a stored variant as a file for its target, re-validated in that format's own runtime.

``export_result(store_path, result_id, fmt, out_dir)`` is the one entry point (the CLI's
``qbench export``, the app's export action through the CLI, and other tools call it). It writes::

    out_dir/
      model.onnx | model.tflite | model.mlpackage/ | model.safetensors (+ model.json) | model.gguf
      qbench.json       the report: what was exported, its metadata, the validation
      validation.json   the validation alone (loaded by the format's runtime, on held-out data)
      deploy/           runnable templates per format, with a README

and stores the validation as a result of its own (runtime = the format's runtime) in a run whose
source is ``export``. This module is light (no numpy, no torch): the app lists the formats from
:data:`EXPORT_FORMATS` (the registered targets, :mod:`engines.export.targets`); the work happens in
:mod:`engines.export.pipeline`, which calls the target's own functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engines.export.targets import all_targets, export_target
from engines.export.targets.base import Exported, ExportError, ExportTarget  # noqa: F401 (re-exported)

ExportFormat = ExportTarget  # the name callers used before targets were a registry


def __getattr__(name: str) -> Any:
    if name == "EXPORT_FORMATS":  # every registered target, built-ins and plugins, in listing order
        return all_targets()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


REPORT_NAME = "qbench.json"
VALIDATION_NAME = "validation.json"
BEST_OBJECTIVES = ("latency", "size", "accuracy")


def export_format(name: str) -> ExportTarget:
    """The registered target ``name`` (:func:`engines.export.targets.export_target`)."""
    return export_target(name)


def missing_extra(fmt: str) -> str | None:
    """One line naming the extra to install when the format's packages are absent, else None."""
    from engines.devices import package_installed

    spec = export_format(fmt)
    missing = [p for p in spec.packages if not package_installed(p)]
    if not missing:
        return None
    command = f"uv sync --extra {spec.extra}" if spec.extra else "uv sync"
    return f"exporting to {spec.title} needs {', '.join(missing)}: install it with `{command}`"


def export_result(store_path: str | Path, result_id: int, fmt: str, out_dir: str | Path, *,
                  validate: bool = True, recipe: str | None = None,
                  progress: Any = None, force: bool = False) -> dict[str, Any]:
    """Export stored result ``result_id`` to ``fmt`` under ``out_dir``; returns the report (also
    written as ``out_dir/qbench.json``). ``recipe`` replaces the variant's recipe (the nearest
    one a format can express, when it cannot express the variant's own); ``progress`` is called
    with one line per step. A non-empty ``out_dir`` qbench did not write is refused unless ``force``
    (then only the export's own files are written; nothing else is deleted). Raises
    :class:`ExportError` for anything the caller must change."""
    export_format(fmt)
    from engines.export.pipeline import run_export

    return run_export(Path(store_path), int(result_id), fmt, Path(out_dir), validate=validate, recipe=recipe,
                      progress=progress, force=force)


def pick_best(results: list[dict[str, Any]], objective: str = "latency") -> dict[str, Any] | None:
    """The ok result that best meets ``objective`` among those that keep fp32's answers (the quality
    bars every view shares, :func:`engines.analysis.rules.keeps_quality`): lowest p50, smallest size,
    or highest accuracy (then agreement). Export validations are never picked (they are not variants)."""
    from engines.analysis.rules import keeps_quality, measured

    if objective not in BEST_OBJECTIVES:
        raise ExportError(f"unknown objective {objective!r}; valid: {', '.join(BEST_OBJECTIVES)}")
    ok = [r for r in measured(results) if r.get("status") == "ok"]
    kept = [r for r in ok if keeps_quality(r)] or ok

    def key(r: dict[str, Any]) -> tuple:
        p50 = (r.get("latency_ms") or {}).get("p50")
        size = r.get("size_mb")
        agreement = r.get("agreement") or {}
        quality = agreement.get("top1") if agreement.get("top1") is not None else agreement.get("cosine")
        inf = float("inf")
        if objective == "latency":
            return (p50 if p50 is not None else inf, r.get("id") or 0)
        if objective == "size":
            return (size if size is not None else inf, p50 if p50 is not None else inf)
        return (-(r.get("accuracy") or 0.0), -(quality or 0.0), p50 if p50 is not None else inf)

    return min(kept, key=key) if kept else None
