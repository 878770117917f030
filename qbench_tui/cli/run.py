"""``qbench run``: build a sweep request from the arguments, run it with live progress, report."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

from qbench_tui.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError, open_store
from qbench_tui.cli.output import make_console, results_table
from qbench_tui.cli.progress import make_progress


def parse_settings(items: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``--set NAME.FIELD=VALUE`` for a method or a runtime: (method settings, runtime settings)."""
    from engines import catalog
    from engines.core.config import coerce_field, config_from_dict, field_specs

    methods: dict[str, dict[str, Any]] = {}
    runtimes: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        name, dot, field_name = key.partition(".")
        if not sep or not dot:
            raise UsageError(f"--set expects METHOD.FIELD=VALUE or RUNTIME.FIELD=VALUE, got {item!r}")
        if name in catalog.METHODS:
            cls, target = catalog.METHODS[name].config_class, methods
        elif name in catalog.RUNTIMES:
            cls, target = catalog.RUNTIMES[name].config_class, runtimes
        else:
            valid = ", ".join([*catalog.METHODS, *catalog.RUNTIMES])
            raise UsageError(f"--set: unknown method or runtime {name!r}; valid: {valid}")
        specs = {s["name"]: s for s in field_specs(cls)}
        if field_name not in specs:
            valid = ", ".join(specs) or "(none)"
            raise UsageError(f"--set: {name} has no setting {field_name!r}; valid: {valid}")
        try:
            target.setdefault(name, {})[field_name] = coerce_field(specs[field_name]["type"], value)
            config_from_dict(cls, target[name])
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--set {item}: {exc}") from None
    return methods, runtimes


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
    unknown = [n for n in args.runtimes if n not in catalog.RUNTIMES]
    if unknown:
        raise UsageError(f"unknown runtime(s): {', '.join(unknown)}; valid: {', '.join(catalog.RUNTIMES)}")
    from engines.devices import device_names
    from engines.devices.strategies import expand_devices, expand_methods

    # "auto": every present device a chosen runtime serves; each device's strategies as methods
    args.choose_device = "auto" in args.devices or len(args.devices) > 1
    backends = {d for r in args.runtimes for d in catalog.RUNTIMES[r].devices}
    args.devices = tuple(expand_devices(args.devices, backends))
    methods, strategies = expand_methods(args.methods, list(args.devices))
    args.methods = tuple(methods)
    args.strategies = strategies
    unknown = [d for d in args.devices if d not in device_names()]
    if unknown:
        raise UsageError(f"unknown device(s): {', '.join(unknown)}; valid: {', '.join(device_names())}")
    method_settings, runtime_settings = parse_settings(args.settings)
    try:
        measure = MeasureSettings(min_time_s=args.min_time, min_reps=args.min_reps,
                                  max_time_s=max(20.0, args.min_time * 4), repeat=args.repeat)
        return SweepRequest(
            model=spec.path or spec.name, methods=args.methods, runtimes=args.runtimes, devices=args.devices,
            batch_sizes=args.batch_sizes, configs=method_settings, runtime_configs=runtime_settings,
            threads=args.threads, timeout_s=args.timeout, memory_limit_mb=args.memory_limit_mb,
            measure=measure, model_options=model_options,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def cmd_run(args) -> int:

    from engines.bench.runner import SweepInterrupted, SweepRunner
    from engines.core.errors import ModelLoadError
    from engines.core.schema import public_json

    json_to_stdout = args.json_out == "-"
    console = make_console(stderr=json_to_stdout)
    store = open_store(args.db)
    request = None if args.resume else _build_request(args)
    if args.resume and store.get_run(args.resume) is None:
        raise UsageError(f"no run {args.resume!r} in {store.path}; see `qbench runs`")
    for strategy in getattr(args, "strategies", []):
        console.print(f"  [dim]auto · {strategy.device}: {strategy.spec} — {strategy.why}[/]")
    progress = make_progress(console, plain=json_to_stdout)  # live on a terminal, lines when piped
    from engines.tracking import sinks_for
    from qbench_tui.cli.tracking import tracking_uri

    uri = tracking_uri(getattr(args, "mlflow_uri", None))  # logged after the sweep, by a background process
    runner = SweepRunner(store, progress, source="cli", sinks=sinks_for(store, uri))
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
    except ModelLoadError as exc:  # found by the first variant's child, before any variant is measured
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    finally:
        progress.close()
    choice = None
    if request is not None and getattr(args, "choose_device", False):  # --devices auto (or several)
        from engines.analysis.device_choice import choose_device

        choice = choose_device(results, args.objective)
        console.print(f"[bold]best device[/] ({args.objective}): {choice['reason']}")
    if args.json_out:
        body = {"run_id": run_id, "status": status, "results": public_json(results)}
        if choice is not None:
            body["device_choice"] = choice
        payload = json.dumps(body, indent=2)
        if json_to_stdout:
            sys.stdout.write(payload + "\n")
        else:
            Path(args.json_out).write_text(payload + "\n")
    console.print(results_table(results, title=f"run {run_id} · {status}"))
    if uri is not None:
        console.print(f"[dim]MLflow: run {run_id} is being logged to {uri} in the background "
                      "(`qbench track` shows what is queued)[/]", highlight=False)
    if status == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_FAILED if any(r["status"] == "failed" for r in results) else EXIT_OK

