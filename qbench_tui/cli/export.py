"""``qbench export``: a stored variant as a file for its target, re-validated, with deployment templates.

The top level stays light (argparse only); the engine is imported when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qbench_tui.cli.common import EXIT_FAILED, EXIT_OK, UsageError

# The built-in targets, for --help (spelled here to keep parsing light); the command itself accepts
# every registered target (engines.export.EXPORT_FORMATS: plugins too).
FORMATS = ("onnx", "tflite", "coreml", "mlx", "gguf")
OBJECTIVES = ("latency", "size", "accuracy")


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "export", help="export a stored variant to ONNX / TFLite / Core ML / MLX / GGUF, validate it, write deploy templates",
        description="Write the chosen variant as a file for the target (its quantization kept), with qbench's "
                    "metadata inside it and in qbench.json; load it in its own runtime and re-measure it on the "
                    "held-out data (validation.json, also stored as a result); write deployment templates in "
                    "OUT/deploy/.")
    p.add_argument("result_id", nargs="?", type=int, metavar="RESULT_ID",
                   help="the result to export: its \"id\" in `qbench results --format json` (or use --run with --best)")
    p.add_argument("--run", help="pick the result from this run (with --best); 'latest' for the newest run")
    p.add_argument("--best", choices=OBJECTIVES, help="with --run: the ok result with the lowest latency, the "
                   "smallest size or the best accuracy among those that keep fp32's answers")
    p.add_argument("--runtime", help="with --best: only results of this runtime")
    p.add_argument("--label", help="with --best: only this recipe, by its label (e.g. int4(g128))")
    p.add_argument("--format", dest="fmt", required=True, metavar="FORMAT",
                   help=f"target format: {', '.join(FORMATS)}")
    p.add_argument("--out", type=Path, help="output directory (default: ./qbench-export-<id>-<format>); a "
                                            "non-empty folder qbench did not write is refused")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out anyway (only the export's "
                                                        "own files are written; nothing else is deleted)")
    p.add_argument("--recipe", metavar="SPEC",
                   help="export this recipe instead of the variant's own (e.g. int4 when the format cannot "
                        "express nf4; the error says which is nearest)")
    p.add_argument("--no-validate", dest="validate", action="store_false",
                   help="skip loading and re-measuring the file")
    p.add_argument("--json", dest="json_out", action="store_true", help="print the report as JSON")
    p.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")
    p.set_defaults(handler=cmd_export)


def choose_result(store, args) -> int:
    """The result id the arguments name (RESULT_ID, or --run with --best)."""
    if args.result_id is not None:
        if args.run or args.best:
            raise UsageError("give either RESULT_ID or --run with --best, not both")
        return args.result_id
    if not args.run or not args.best:
        raise UsageError("name a result: RESULT_ID, or --run RUN --best latency|size|accuracy")
    from engines.export import pick_best

    run_id = store.latest_run_id() if args.run == "latest" else args.run
    if run_id is None or store.get_run(run_id) is None:
        raise UsageError(f"no run {args.run!r} in {store.path} (`qbench runs` lists them)")
    results = store.results(run_id)
    if args.runtime:
        results = [r for r in results if r["runtime"] == args.runtime]
    if args.label:
        results = [r for r in results if (r.get("label") or r["method"]) == args.label]
    best = pick_best(results, args.best)
    if best is None:
        raise UsageError(f"run {run_id} has no ok result to export"
                         + (" with those filters" if args.runtime or args.label else ""))
    return int(best["id"])


def cmd_export(args) -> int:
    from engines.export import ExportError, export_format, export_result, missing_extra
    from qbench_tui.cli.common import open_store

    try:
        export_format(args.fmt)
    except ExportError as exc:
        raise UsageError(str(exc)) from None

    store = open_store(getattr(args, "db", None))
    try:
        result_id = choose_result(store, args)
    finally:
        store.close()
    line = missing_extra(args.fmt)
    if line:
        raise UsageError(line)
    out = args.out or Path(f"qbench-export-{result_id}-{args.fmt}")
    quiet = args.json_out

    def progress(text: str) -> None:
        if not quiet:
            print(f"  {text}", file=sys.stderr, flush=True)

    try:
        report = export_result(store.path, result_id, args.fmt, out, validate=args.validate, recipe=args.recipe,
                               progress=progress, force=args.force)
    except ExportError as exc:
        raise UsageError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a converter's or runtime's own failure: one readable line
        print(f"qbench: error: export failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        return EXIT_FAILED
    if args.json_out:
        print(json.dumps(report, indent=2))
    else:
        print(summary(report))
    validation = report.get("validation") or {}
    return EXIT_FAILED if validation.get("validated") and validation.get("agrees") is False else EXIT_OK


def summary(report: dict) -> str:
    v = report.get("validation") or {}
    lines = [f"exported result {report['source_result_id']} ({report['model']} · {report['label']}) as "
             f"{report['title']}: {Path(report['out_dir']) / report['file']} ({report['size_mb']:.3f} MB)",
             f"  passes: {' → '.join(report['passes']) or '(none)'}"]
    lines += [f"  note: {n}" for n in report.get("notes") or []]
    lines.append(f"  {v.get('status', 'not validated')}")
    if v.get("agreement_fp32"):
        a = v["agreement_fp32"]
        lines.append(f"  vs fp32: top-1 {_f(a.get('top1'))} · cosine {_f(a.get('cosine'))} · "
                     f"accuracy {_f(v.get('accuracy'))} · p50 {_f((v.get('latency_ms') or {}).get('p50'))} ms (bs 1)")
    if v.get("validation_result_id") or report.get("validation_result_id"):
        lines.append(f"  stored as result {report.get('validation_result_id')}")
    for name, entry in (report.get("deploy") or {}).items():
        lines.append(f"  deploy/{name}: {entry['path']}")
    return "\n".join(lines)


def _f(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"
