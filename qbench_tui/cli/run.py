"""``qbench run``: build a sweep request from the arguments, run it with live progress, report."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from qbench_tui.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError, csv_list, int_list, open_store


def add_parsers(sub) -> None:
    run = sub.add_parser("run", help="run a sweep (each variant in its own process)")
    run.add_argument("--model", help="built-in model name, or a path to a model file/directory")
    run.add_argument("--methods", type=csv_list,
                     help="comma-separated recipes: a method (see `qbench methods`), 'auto' (the recipes that suit "
                          "each chosen device: its instruction set, GPU or Neural Engine), or a method with settings "
                          "after ':' (int4:group_size=128:symmetric=false); the same method may appear with "
                          "several settings")
    run.add_argument("--runtimes", type=csv_list, default=("onnxruntime",), help="default: onnxruntime")
    run.add_argument("--devices", type=csv_list, default=("cpu",),
                     help="default: cpu; 'auto': every present device, and the best one is reported")
    run.add_argument("--objective", choices=("latency", "throughput", "memory"), default="latency",
                     help="what 'best device' means (default latency)")
    run.add_argument("--batch-sizes", type=int_list, default=(1,), help="default: 1")
    run.add_argument("--budget", type=float, metavar="MINUTES",
                     help="with --methods auto: minutes the search may take (screening, then the finalists)")
    run.add_argument("--finalists", type=int, default=3, metavar="N",
                     help="with --methods auto: candidates measured fully after screening (default 3)")
    run.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME.FIELD=VALUE",
                     help="a default setting of a method (static-int8.calibration_method=entropy) or a runtime "
                          "(torch.compile=true, onnxruntime.nbits_compute=fp32); repeatable")
    run.add_argument("--threads", type=int, help="intra-op threads (default: physical cores)")
    run.add_argument("--timeout", type=float, default=900.0, help="seconds per variant (default 900)")
    run.add_argument("--memory-limit-mb", type=float,
                     help="kill a variant whose own memory (the child's RSS above the harness's baseline of "
                          "interpreter and preloaded libraries; reported as memory.variant_peak_mb) exceeds "
                          "this (default 80%% of RAM)")
    run.add_argument("--min-time", type=float, default=1.0,
                     help="minimum measuring seconds per batch size (default 1.0)")
    run.add_argument("--min-reps", type=int, default=30, help="minimum timed repetitions per batch size (default 30)")
    run.add_argument("--repeat", type=int, default=3, metavar="K",
                     help="time each variant in K rounds interleaved across the sweep's variants (shuffled), "
                          "each variant kept loaded between them; reports the median of the rounds' medians and "
                          "their spread, flags 'unstable' ones. The timing budget (--min-time, --min-reps) is "
                          "shared by the rounds. Default 3: the fewest that give a median robust to one "
                          "disturbed round")
    run.add_argument("--json", dest="json_out", metavar="FILE|-", help="write the results as JSON ('-': stdout)")
    run.add_argument("--wide", action="store_true", help="every column, however wide the terminal (default: fit it; piped output is always whole)")
    run.add_argument("--resume", metavar="RUN_ID", help="finish an interrupted run: only what is missing")
    run.add_argument("--seq-len", type=int, metavar="N",
                     help="tokens per input row for text models (default 128)")
    run.add_argument("--prompt-len", type=int, metavar="N",
                     help="causal LMs: prompt tokens before generating (time to first token)")
    run.add_argument("--gen-len", type=int, metavar="N",
                     help="causal LMs: tokens generated, with and without a KV cache (decode tokens/s)")
    run.add_argument("--images", type=int, metavar="N",
                     help="image classifiers: held-out photo views (default and most: 200, 25 photos × 8 views)")
    run.add_argument("--allow-pickle", action="store_true",
                     help="load pickled checkpoints (.pt/.pth/.bin/.ckpt): loading a pickle runs code "
                          "stored in the file, so only for files you trust")
    run.add_argument("--cluster", metavar="tcp://HOST:PORT",
                     help="measure on a fleet: the Dask scheduler of `qbench scheduler` (see docs/fleet.md)")
    run.add_argument("--hosts", metavar="NAME,…|all", help="with --cluster: which workers (default all)")
    run.add_argument("--fetch-artifacts", action="store_true",
                     help="with --cluster: copy each host's quantized artifacts here (default: they stay there)")
    run.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")
    run.add_argument("--mlflow-uri", metavar="URI", help="log the run to this MLflow tracking URI ('off': not at "
                     "all); default $MLFLOW_TRACKING_URI, the app's setting, else sqlite:///$QBENCH_HOME/mlflow.db")

    run.set_defaults(handler=cmd_run)


def parse_settings(items: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``--set NAME.FIELD=VALUE`` for a method or a runtime: (method settings, runtime settings)."""
    from engines import catalog
    from engines.core.config import coerce_field, config_from_dict, field_specs, moved_message

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
        if field_name not in specs and field_name in cls.moved:
            raise UsageError(f"--set {item}: {moved_message(cls, field_name, value)}")
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
    """The sweep request, built by the Python API's own function (one path for scripts and the CLI)."""
    from engines.api import ApiError, prepare

    if not args.model or not args.methods:
        raise UsageError("run needs --model and --methods (or --resume RUN_ID)")
    method_settings, runtime_settings = parse_settings(args.settings)
    try:
        prepared = prepare(args.model, methods=args.methods, runtimes=args.runtimes, devices=args.devices,
                           batch_sizes=args.batch_sizes, min_time=args.min_time, min_reps=args.min_reps,
                           repeat=args.repeat, threads=args.threads, timeout=args.timeout,
                           memory_limit_mb=args.memory_limit_mb, method_settings=method_settings,
                           runtime_settings=runtime_settings, seq_len=args.seq_len,
                           allow_pickle=args.allow_pickle or None, prompt_tokens=args.prompt_len,
                           new_tokens=args.gen_len, images=args.images)
    except ApiError as exc:
        raise UsageError(str(exc)) from None
    args.choose_device, args.strategies = prepared.choose_device, prepared.strategies
    args.prepared = prepared
    return prepared.request


def _auto_search(args, store, console, plain: bool, sinks) -> tuple[str, str, list[dict[str, Any]], dict]:
    """``--methods auto``: screening, then the finalists, each phase a sweep with live progress."""
    def run_one(request, cancel):
        return execute_sweep(store, request, console, plain=plain, cancel=cancel, sinks=sinks)

    found = args.prepared.search(run_one, budget_min=args.budget, finalists=args.finalists,
                                 say=lambda line: console.print(f"[bold]{line}[/]", highlight=False))
    report = found["report"]
    final = [r for r in report["runs"] if r["phase"] == "finals"] or report["runs"][-1:]
    return final[0]["run_id"], final[0]["status"], found["results"], report


# After Ctrl-C / SIGTERM the sweep ends its children and records the run as interrupted, which takes
# about a second. Should that clean-up ever hang (a child that will not die, a helper process that
# will not stop), the process still leaves: the store marks a run whose process is gone as
# interrupted on its next open, so leaving late loses nothing that was finished.
CLEANUP_GRACE_S = 20.0
_interrupted = False
_progress = None  # the sweep's progress listener: it knows the run id the user resumes
_store_path = None  # the sweep's store, reopened to say how many measurements finished


def _leave_now(message: str) -> None:
    import os

    run_id = getattr(_progress, "run_id", None)
    summary = f"whatever finished before is stored; resume with qbench run --resume {run_id}" if run_id else \
        "whatever finished before is stored"
    if run_id and _store_path is not None:
        try:  # how many finished, read on this thread's own connection (the sweep's is busy or gone)
            from engines.store import Store

            summary = interrupted_summary(Store(_store_path), run_id)
        except Exception:  # noqa: BLE001, S110 - leaving matters more than the count
            pass
    try:
        sys.stderr.write(f"qbench: {message}; {summary}\n")
        sys.stderr.flush()
    finally:
        os._exit(EXIT_INTERRUPTED)


def _watchdog() -> None:
    import time

    time.sleep(CLEANUP_GRACE_S)
    _leave_now(f"clean-up after the interrupt took over {CLEANUP_GRACE_S:.0f} s: leaving anyway")


def _raise_interrupt(signum, frame):
    """The first Ctrl-C / SIGTERM interrupts the sweep (recorded, resumable); a second one leaves at
    once; either way the process is gone within CLEANUP_GRACE_S."""
    global _interrupted
    if _interrupted:
        _leave_now("interrupted again: leaving at once")
    _interrupted = True
    import threading

    threading.Thread(target=_watchdog, name="interrupt-watchdog", daemon=True).start()
    raise KeyboardInterrupt


def execute_sweep(store, request, console, plain: bool = False, resume: str | None = None, cancel=None,
                  source: str = "cli", make_runner=None, sinks=None) -> tuple[str, str, list[dict[str, Any]]]:
    """Run (or resume) one sweep with the live progress display: (run id, status, results).

    Ctrl-C, SIGTERM and ``cancel`` end it as ``interrupted`` (finished results stay stored); a model
    that cannot load or a bad request is a UsageError. ``qbench run`` and ``qbench auto`` share it.
    ``make_runner(progress)`` may supply another runner (the fleet's); None keeps this machine's.
    ``sinks``: where results go besides the progress display (default: the store alone)."""
    from engines.bench.runner import SweepInterrupted, SweepRunner
    from engines.core.errors import ModelLoadError
    from engines.fleet import FleetError

    global _progress, _store_path
    _store_path = getattr(store, "path", None)
    from qbench_tui.cli.progress import make_progress

    progress = _progress = make_progress(console, plain=plain)  # live on a terminal, lines when piped
    runner = (make_runner(progress) if make_runner else None) or SweepRunner(store, progress, cancel=cancel,
                                                                               source=source, sinks=sinks)
    # SIGTERM (a cron timeout, `kill`) ends the sweep like Ctrl-C: recorded as interrupted.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        outcome = runner.resume(resume) if resume else runner.run(request)
        return outcome.run_id, outcome.status, outcome.results
    except SweepInterrupted as exc:
        run_id = str(exc)
        console.print(f"[yellow]interrupted[/]: {interrupted_summary(store, run_id)}")
        return run_id, "interrupted", store.results(run_id)
    except ModelLoadError as exc:  # found by the first variant's child, before any variant is measured
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except FleetError as exc:  # no scheduler, an unknown host, another qbench version
        raise UsageError(str(exc)) from None
    finally:
        progress.close()


def interrupted_summary(store, run_id: str) -> str:
    """How many measurements an interrupted run finished (none, some, partial) and what resuming does."""
    results = store.results(run_id)
    partial = sum("partial" in (r.get("flags") or []) for r in results)
    finished = len(results) - partial
    total = None
    try:
        from engines.bench.request import SweepRequest, plan_variants

        request = SweepRequest.from_dict(store.get_run(run_id)["request"])
        total = len(plan_variants(request)) * len(request.batch_sizes)
    except Exception:  # noqa: BLE001, S110 - the count is a nicety; the resume command is what matters
        pass
    of = f" of {total}" if total else ""
    resume = f"qbench run --resume {run_id}"
    if not results:
        return f"none{of} measurements finished, so nothing was stored; {resume} starts them all again"
    kept = f" and {partial} stored as partial (fewer rounds than asked, flagged partial)" if partial else ""
    left = f"the {total - finished} left" if total else "the rest"
    return (f"{finished}{of} measurements finished and are stored{kept}; {resume} measures {left}"
            + (" (the partial ones again)" if partial else ""))


def cmd_run(args) -> int:
    from engines.core.schema import public_json
    from qbench_tui.cli.output import make_console, results_table

    json_to_stdout = args.json_out == "-"
    console = make_console(stderr=json_to_stdout)
    store = open_store(args.db)
    request = None if args.resume else _build_request(args)
    if args.resume and store.get_run(args.resume) is None:
        raise UsageError(f"no run {args.resume!r} in {store.path}; see `qbench runs`")
    for strategy in getattr(args, "strategies", []):
        console.print(f"  [dim]auto · {strategy.device}: {strategy.spec} — {strategy.why}[/]")
    from engines.tracking import sinks_for
    from qbench_tui.cli.tracking import tracking_uri

    uri = tracking_uri(getattr(args, "mlflow_uri", None))  # logged after the sweep, by a background process
    make_runner = None
    if args.cluster or args.hosts or args.fetch_artifacts or (args.resume and store.get_run(args.resume)):
        from qbench_tui.cli.fleet import fleet_runner

        def make_runner(progress):
            return fleet_runner(args, store, progress)
    auto = None
    if getattr(args, "budget", None) is not None and not getattr(args, "strategies", None):
        raise UsageError("--budget bounds the search of --methods auto; this run has no auto")
    if request is not None and getattr(args, "strategies", None) and make_runner is None:
        from engines.bench.runner import SweepInterrupted

        try:
            run_id, status, results, auto = _auto_search(args, store, console, json_to_stdout,
                                                         sinks_for(store, uri))
        except SweepInterrupted:  # the user's stop: execute_sweep said what finished and how to resume
            return EXIT_INTERRUPTED
    else:
        run_id, status, results = execute_sweep(store, request, console, plain=json_to_stdout,
                                                resume=args.resume, make_runner=make_runner,
                                                sinks=sinks_for(store, uri))
    choice = None
    if request is not None and getattr(args, "choose_device", False):  # --devices auto (or several)
        from engines.analysis.device_choice import choose_device

        choice = choose_device(results, args.objective)
        console.print(f"[bold]best device[/] ({args.objective}): {choice['reason']}")
    if args.json_out:
        from engines import __version__

        # The run's environment (qbench's version among it): what a bug report needs.
        environment = (store.get_run(run_id) or {}).get("environment") or {}
        body = {"run_id": run_id, "status": status, "qbench": __version__, "environment": environment,
                "results": public_json(results)}
        if choice is not None:
            body["device_choice"] = choice
        if auto is not None:
            body["auto"] = auto
        payload = json.dumps(body, indent=2)
        if json_to_stdout:
            sys.stdout.write(payload + "\n")
        else:
            Path(args.json_out).write_text(payload + "\n")
    console.print(results_table(results, title=f"run {run_id} · {status}", console=console,
                                wide=getattr(args, "wide", False)))
    if auto is not None:
        from engines.bench.autosearch import summary_lines

        for line in summary_lines(auto):
            console.print(line, highlight=False, markup=False)
    if uri is not None:
        console.print(f"[dim]MLflow: run {run_id} is being logged to {uri} in the background "
                      "(`qbench track` shows what is queued)[/]", highlight=False)
    if status == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_FAILED if any(r["status"] == "failed" for r in results) else EXIT_OK

