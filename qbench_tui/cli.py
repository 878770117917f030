"""The headless command line: ``qbench run | results | runs | models | methods | devices``.

Shares the engine and the store with the terminal app; with no sub-command it opens the app.
Exit codes: 0 every variant ok or unsupported, 1 any failed, 2 bad arguments, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad arguments: printed as one line, exit code 2."""


def _csv_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in _csv_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qbench",
        description="Quantize models, benchmark every variant, browse and compare the results. "
        "With no command, opens the terminal app.",
    )
    parser.add_argument("--db", type=Path, help="SQLite store (default: $QBENCH_HOME/qbench.db)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a sweep (each variant in its own process)")
    run.add_argument("--model", help="built-in model name, or a path to a model file/directory")
    run.add_argument("--methods", type=_csv_list, help="comma-separated methods (see `qbench methods`)")
    run.add_argument("--runtimes", type=_csv_list, default=("onnxruntime",), help="default: onnxruntime")
    run.add_argument("--devices", type=_csv_list, default=("cpu",), help="default: cpu")
    run.add_argument("--batch-sizes", type=_int_list, default=(1,), help="default: 1")
    run.add_argument("--set", dest="settings", action="append", default=[], metavar="METHOD.FIELD=VALUE",
                     help="a method setting, e.g. static-int8.calibration_method=entropy (repeatable)")
    run.add_argument("--threads", type=int, help="intra-op threads (default: physical cores)")
    run.add_argument("--timeout", type=float, default=900.0, help="seconds per variant (default 900)")
    run.add_argument("--memory-limit-mb", type=float, help="kill a variant above this RSS (default 80%% of RAM)")
    run.add_argument("--min-time", type=float, default=1.0, help="minimum measuring seconds per batch size")
    run.add_argument("--min-reps", type=int, default=30, help="minimum timed repetitions per batch size")
    run.add_argument("--json", dest="json_out", metavar="FILE|-", help="write the results as JSON ('-': stdout)")
    run.add_argument("--resume", metavar="RUN_ID", help="finish an interrupted run: only what is missing")
    run.add_argument("--seq-len", type=int, metavar="N",
                     help="tokens per input row for text models (default 128)")
    run.add_argument("--allow-pickle", action="store_true",
                     help="load pickled checkpoints (.pt/.pth/.bin/.ckpt): loading a pickle runs code "
                          "stored in the file, so only for files you trust")
    run.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")

    results = sub.add_parser("results", help="show stored results")
    results.add_argument("--run", help="one run (default: all runs)")
    results.add_argument("--latest", action="store_true", help="only the most recent run")
    results.add_argument("--model", help="only this model")
    results.add_argument("--format", choices=("table", "json", "csv"), default="table")
    results.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")

    runs = sub.add_parser("runs", help="list runs")
    runs.add_argument("--json", action="store_true")
    runs.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")

    for name, text in (("models", "list models"), ("methods", "list methods and what they support"),
                       ("devices", "list compute devices and why any is missing")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--json", action="store_true")

    tui = sub.add_parser("tui", help="open the terminal app (the default)")
    tui.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")
    return parser


def open_store(db: Path | None):
    from engines.paths import default_db_path
    from engines.store import Store

    return Store(db or default_db_path())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from engines.store import StoreError

    try:
        if args.command in (None, "tui"):
            return _cmd_tui(args)
        handler = {"run": _cmd_run, "results": _cmd_results, "runs": _cmd_runs, "models": _cmd_models,
                   "methods": _cmd_methods, "devices": _cmd_devices}[args.command]
        return handler(args)
    except UsageError as exc:
        print(f"qbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"qbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


# --- run ----------------------------------------------------------------------------------------


def parse_settings(items: list[str], methods: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    from engines import catalog
    from engines.methods import configs

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, field_name = key.partition(".")
        if not sep or not dot:
            raise UsageError(f"--set expects METHOD.FIELD=VALUE, got {item!r}")
        if method not in catalog.METHODS:
            raise UsageError(f"--set: unknown method {method!r}; valid: {', '.join(catalog.METHODS)}")
        cls = catalog.METHODS[method].config_class
        specs = {s["name"]: s for s in configs.field_specs(cls)}
        if field_name not in specs:
            valid = ", ".join(specs) or "(none)"
            raise UsageError(f"--set: {method} has no setting {field_name!r}; valid: {valid}")
        try:
            out.setdefault(method, {})[field_name] = configs.coerce_field(specs[field_name]["type"], value)
            configs.config_from_dict(cls, out[method])
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--set {item}: {exc}") from None
    return out


def _build_request(args):
    from engines import catalog
    from engines.bench.measure import MeasureSettings
    from engines.bench.runner import SweepRequest
    from engines.models import ModelNotFound, resolve_model

    if not args.model or not args.methods:
        raise UsageError("run needs --model and --methods (or --resume RUN_ID)")
    try:
        model_options = {"seq_len": args.seq_len, "allow_pickle": args.allow_pickle or None}
        model_options = {k: v for k, v in model_options.items() if v is not None}
        spec = resolve_model(args.model, model_options)
    except ModelNotFound as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:  # a file that exists but cannot be a model
        raise UsageError(str(exc)) from None
    for kind, names, valid in (("method", args.methods, catalog.METHODS), ("runtime", args.runtimes, catalog.RUNTIMES)):
        unknown = [n for n in names if n not in valid]
        if unknown:
            raise UsageError(f"unknown {kind}(s): {', '.join(unknown)}; valid: {', '.join(valid)}")
    from engines.devices import device_names

    unknown = [d for d in args.devices if d not in device_names()]
    if unknown:
        raise UsageError(f"unknown device(s): {', '.join(unknown)}; valid: {', '.join(device_names())}")
    try:
        measure = MeasureSettings(min_time_s=args.min_time, min_reps=args.min_reps,
                                  max_time_s=max(20.0, args.min_time * 4))
        return SweepRequest(
            model=spec.path or spec.name, methods=args.methods, runtimes=args.runtimes, devices=args.devices,
            batch_sizes=args.batch_sizes, configs=parse_settings(args.settings, args.methods),
            threads=args.threads, timeout_s=args.timeout, memory_limit_mb=args.memory_limit_mb,
            measure=measure, model_options=model_options,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def make_console(stderr: bool = False):
    """Rich console; when piped, wide enough that tables are not squeezed to 80 columns."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 200)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _cmd_run(args) -> int:

    from engines.bench.runner import SweepInterrupted, SweepRunner
    from engines.core.schema import public_json

    json_to_stdout = args.json_out == "-"
    console = make_console(stderr=json_to_stdout)
    store = open_store(args.db)
    request = None if args.resume else _build_request(args)
    if args.resume and store.get_run(args.resume) is None:
        raise UsageError(f"no run {args.resume!r} in {store.path}; see `qbench runs`")
    progress = _Progress(console)
    runner = SweepRunner(store, progress, source="cli")
    # SIGTERM (a cron timeout, `kill`) ends the sweep like Ctrl-C: recorded as interrupted.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        outcome = runner.resume(args.resume) if args.resume else runner.run(request)
        run_id, status, results = outcome.run_id, outcome.status, outcome.results
    except SweepInterrupted as exc:
        run_id = str(exc)
        status, results = "interrupted", store.results(run_id)
        console.print(f"[yellow]interrupted[/]: finished results are stored; resume with "
                      f"[bold]qbench run --resume {run_id}[/]")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.json_out:
        payload = json.dumps({"run_id": run_id, "status": status, "results": public_json(results)}, indent=2)
        if json_to_stdout:
            sys.stdout.write(payload + "\n")
        else:
            Path(args.json_out).write_text(payload + "\n")
    console.print(results_table(results, title=f"run {run_id} · {status}"))
    if status == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_FAILED if any(r["status"] == "failed" for r in results) else EXIT_OK


class _Progress:
    """Prints one line per finished result (the run's table comes at the end)."""

    def __init__(self, console):
        self.console = console

    def __call__(self, event: Any) -> None:
        from engines.core import events

        if isinstance(event, events.RunStarted):
            verb = "resuming" if event.resumed else "run"
            self.console.print(f"[bold]{verb} {event.run_id}[/]: {event.model}, "
                               f"{event.total} measurements ({event.done} already done)")
        elif isinstance(event, events.ResultRecorded):
            r = event.result
            colour = {"ok": "green", "failed": "red", "unsupported": "yellow"}.get(r["status"], "white")
            detail = (f"p50 {r['latency_ms']['p50']:.3f} ms" if r.get("latency_ms") else (r.get("error") or ""))
            self.console.print(f"  [{colour}]{r['status']:<11}[/] {r['method']:<13} {r['runtime']:<12} "
                               f"{r['device']:<5} bs={r['batch_size']:<4} {detail}")


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and value == float("inf"):
        return "∞"
    return format(value, spec)


def results_table(results: list[dict[str, Any]], title: str = ""):
    from rich.table import Table

    table = Table(title=title, header_style="bold", show_lines=False)
    for col, justify in (("model", "left"), ("method", "left"), ("runtime", "left"), ("dev", "left"),
                         ("bs", "right"), ("status", "left"), ("p50 ms", "right"), ("p99 ms", "right"),
                         ("items/s", "right"), ("size MB", "right"), ("acc", "right"), ("top1", "right"),
                         ("SQNR dB", "right"), ("note", "left")):
        table.add_column(col, justify=justify, no_wrap=col != "note")  # type: ignore[arg-type]
    for r in results:
        lat = r.get("latency_ms") or {}
        agr = r.get("agreement") or {}
        status_style = {"ok": "green", "failed": "red", "unsupported": "yellow"}.get(r["status"], "")
        table.add_row(
            r["model"], r["method"], r["runtime"], r["device"], str(r["batch_size"]),
            f"[{status_style}]{r['status']}[/]", _fmt(lat.get("p50"), ".3f"), _fmt(lat.get("p99"), ".3f"),
            _fmt(r.get("throughput_per_s"), ",.0f"), _fmt(r.get("size_mb"), ".2f"),
            _fmt(r.get("accuracy"), ".3f"), _fmt(agr.get("top1"), ".3f"), _fmt(agr.get("sqnr_db"), ".1f"),
            (r.get("error") or "")[:60],
        )
    return table


# --- results, runs, catalogs ------------------------------------------------------------------


def _cmd_results(args) -> int:

    from engines.core.schema import public_json, results_csv

    store = open_store(args.db)
    run_id = args.run or (store.latest_run_id() if args.latest else None)
    if args.run and store.get_run(args.run) is None:
        raise UsageError(f"no run {args.run!r} in {store.path}; see `qbench runs`")
    results = store.results(run_id, where="model = ?" if args.model else None,
                            params=[args.model] if args.model else [])
    if args.format == "json":
        sys.stdout.write(json.dumps(public_json(results), indent=2) + "\n")
    elif args.format == "csv":
        sys.stdout.write(results_csv(results))
    else:
        make_console().print(results_table(results, title=f"{len(results)} results"))
    return EXIT_OK


def _cmd_runs(args) -> int:
    from rich.table import Table

    store = open_store(args.db)
    runs = store.list_runs()
    if args.json:
        for r in runs:
            r["results"] = len(store.results(r["id"]))
        sys.stdout.write(json.dumps(runs, indent=2, default=str) + "\n")
        return EXIT_OK
    table = Table(title=f"{len(runs)} runs in {store.path}")
    for col in ("run", "created", "status", "model", "results", "source"):
        table.add_column(col)
    for r in runs:
        table.add_row(r["id"], r["created_at"], r["status"], r["model"], str(len(store.results(r["id"]))), r["source"])
    make_console().print(table)
    return EXIT_OK


def _cmd_models(args) -> int:
    from dataclasses import asdict

    from engines.models import list_models

    models = list_models()
    if args.json:
        sys.stdout.write(json.dumps([asdict(m) for m in models], indent=2) + "\n")
        return EXIT_OK
    from rich.table import Table

    table = Table(title="models")
    for col in ("name", "task", "source", "params", "description"):
        table.add_column(col)
    for m in models:
        table.add_row(m.name, m.task, m.source, f"{m.params:,}" if m.params else "–", m.description)
    make_console().print(table)
    return EXIT_OK


def _cmd_methods(args) -> int:
    from engines import catalog
    from engines.methods import configs

    rows = []
    for spec in catalog.METHODS.values():
        rows.append({
            "name": spec.name, "title": spec.title, "bits": spec.bits, "description": spec.description,
            "needs_calibration": spec.needs_calibration,
            "settings": {s["name"]: {"default": s["default"], "help": s["help"], "choices": s["choices"]}
                         for s in configs.field_specs(spec.config_class)},
            "support": {rt: {dev: catalog.unsupported_reason(spec.name, rt, dev) or "ok"
                             for dev in catalog.RUNTIMES[rt].devices} for rt in catalog.RUNTIMES},
        })
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return EXIT_OK
    from rich.table import Table

    table = Table(title="methods (on this machine's CPU)")
    for col in ("name", "bits", "calibration", *catalog.RUNTIMES, "settings"):
        table.add_column(col)
    for row in rows:
        cells = []
        for rt in catalog.RUNTIMES:
            reason = row["support"][rt].get("cpu", "no cpu backend")
            cells.append("[green]yes[/]" if reason == "ok" else f"[yellow]no[/]: {reason}")
        table.add_row(row["name"], str(row["bits"]), "yes" if row["needs_calibration"] else "",
                      *cells, ", ".join(row["settings"]))
    make_console().print(table)
    return EXIT_OK


def _cmd_devices(args) -> int:
    from dataclasses import asdict

    from engines.devices import detect_devices

    devices = detect_devices()
    if args.json:
        sys.stdout.write(json.dumps([asdict(d) for d in devices], indent=2) + "\n")
        return EXIT_OK
    from rich.table import Table

    table = Table(title="devices")
    for col in ("name", "device", "present", "detail"):
        table.add_column(col)
    for d in devices:
        table.add_row(d.name, d.title, "[green]yes[/]" if d.present else "[red]no[/]", d.detail)
    make_console().print(table)
    return EXIT_OK


def _cmd_tui(args) -> int:
    from qbench_tui.app import run_app

    return run_app(db=getattr(args, "db", None))
