"""``qbench auto``: a standardized sweep per model within a budget (variants or time), resumable,
ending with the insights table. Split from cli/insights.py, which registers the command."""

from __future__ import annotations

import argparse
import re
import threading
import time
from pathlib import Path
from typing import Any

from qbench_tui.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError, csv_list, int_list, open_store
from qbench_tui.cli.insights import _dump, _profile, print_insights


def budget(text: str) -> dict[str, float]:
    """``--budget``: a time (``90s``, ``20m``, ``1h``, ``1h30m``) or a number of variants (``6``)."""
    text = text.strip().lower()
    if text.isdigit():
        if int(text) < 1:
            raise argparse.ArgumentTypeError("a variant budget must be at least 1")
        return {"variants": int(text)}
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", text)
    if not text or parts is None or not any(parts.groups()):
        raise argparse.ArgumentTypeError(f"expected a time (90s, 20m, 1h) or a number of variants (6), got {text!r}")
    h, m, s = (float(g) if g else 0.0 for g in parts.groups())
    return {"seconds": h * 3600 + m * 60 + s}


# What the markers of a dry run's plan mean (printed above it).
DRY_RUN_LEGEND = ("[dim]• measured within the budget · – a candidate the budget leaves out · "
                  "× refused on this machine (the reason follows)[/]")


def add_parsers(sub: Any) -> None:
    db_help = "SQLite store"
    auto = sub.add_parser("auto", help="standardized sweeps across models: recipes chosen by architecture family and "
                                       "by what each runtime and device supports, within a budget")
    auto.add_argument("--models", type=csv_list,
                      help="comma-separated model names or paths (default: every model qbench finds)")
    auto.add_argument("--budget", type=budget, default={"variants": 12},
                      help="a time (20m, 90s, 1h) or a number of variants (6); default 12 variants")
    auto.add_argument("--runtimes", type=csv_list, help="default: every runtime of the catalog")
    auto.add_argument("--devices", type=csv_list, default=("auto",), help="default: auto (every present device)")
    auto.add_argument("--batch-sizes", type=int_list, default=(1,), help="the same for every model (default 1)")
    auto.add_argument("--seq-len", type=int, default=128, help="tokens per row for text models (default 128)")
    auto.add_argument("--min-time", type=float, default=0.5, help="minimum measuring seconds (default 0.5)")
    auto.add_argument("--min-reps", type=int, default=20, help="minimum timed repetitions (default 20)")
    auto.add_argument("--repeat", type=int, default=3, help="timing rounds (default 3)")
    auto.add_argument("--timeout", type=float, default=600.0, help="seconds per variant (default 600)")
    auto.add_argument("--resume", action="store_true", help="finish the interrupted runs of earlier `qbench auto`s")
    auto.add_argument("--dry-run", action="store_true", help="print the plan (candidates, refused, budget) only")
    auto.add_argument("--json", dest="json_out", metavar="FILE|-", help="the runs and the insights as JSON")
    auto.add_argument("--db", type=Path, default=argparse.SUPPRESS, help=db_help)
    auto.set_defaults(handler=cmd_auto)


SWEEP_OVERHEAD_S = 6.0  # a run's own start: the fork server, the model's first load, the lock


def estimate_variant_s(params: int | None, args) -> float:
    """Seconds one variant takes: start, load, quantize, evaluate (growing with the model) and its
    timing (the rounds share --min-time per batch size). Refined from what earlier models took."""
    return 6.0 + args.min_time * len(args.batch_sizes) * 1.5 + (params or 1e6) / 1e6 * 0.6


def plan_auto(args) -> list[dict[str, Any]]:
    """Per model: its family, its candidates in order of priority and the refused combinations."""
    from engines import catalog
    from engines.analysis.families import candidates, model_family
    from engines.devices import device_names
    from engines.devices.strategies import expand_devices
    from engines.models import ModelNotFound, list_models, resolve_model

    runtimes = list(args.runtimes or catalog.RUNTIMES)
    unknown = [r for r in runtimes if r not in catalog.RUNTIMES]
    if unknown:
        raise UsageError(f"unknown runtime(s): {', '.join(unknown)}; valid: {', '.join(catalog.RUNTIMES)}")
    backends = {d for r in runtimes for d in catalog.RUNTIMES[r].devices}
    devices = expand_devices(list(args.devices), backends)
    bad = [d for d in devices if d not in device_names()]
    if bad:
        raise UsageError(f"unknown device(s): {', '.join(bad)}; valid: {', '.join(device_names())}")
    names = list(args.models) if args.models else [m.name for m in list_models()]
    plans = []
    for name in names:
        try:
            spec = resolve_model(name, {"seq_len": args.seq_len})
        except ModelNotFound as exc:
            raise UsageError(str(exc)) from None
        except ValueError as exc:
            raise UsageError(f"{name}: {exc}") from None
        family = model_family(spec)
        found, refused = candidates(family, devices, runtimes, spec.source_format)
        plans.append({"model": spec.path or spec.name, "name": spec.name, "family": family, "params": spec.params,
                      "candidates": found, "refused": refused})
    return plans


def _groups(chosen: list[Any]) -> dict[tuple[str, str], list[str]]:
    """Candidates → one sweep per runtime × device (its recipes in order, fp32 first)."""
    out: dict[tuple[str, str], list[str]] = {}
    for c in chosen:
        out.setdefault((c.runtime, c.device), []).append(c.spec)
    return {k: v for k, v in out.items()}


def stop_margin_s(seconds: float) -> float:
    """How long before a time budget's end the sweep in progress is told to stop: 5 % of it,
    between 4 and 15 s (ending the children, storing the partial run and printing take that long)."""
    return min(15.0, max(4.0, 0.05 * seconds))


def cmd_auto(args) -> int:
    from engines.analysis.insights import from_store, insights
    from engines.bench.measure import MeasureSettings
    from engines.bench.runner import SweepRequest
    from engines.methods.recipe import parse_recipes
    from qbench_tui.cli.output import make_console
    from qbench_tui.cli.run import execute_sweep

    json_to_stdout = args.json_out == "-"
    console = make_console(stderr=json_to_stdout)
    store = open_store(args.db)
    start = time.monotonic()
    # The roofline first (once per machine, a few seconds): the budget's end then only prints.
    profile = None if args.dry_run else _profile(store, console)
    seconds = args.budget.get("seconds")
    deadline = start + seconds if seconds else None
    cancel = threading.Event()
    timer = None
    if deadline is not None:
        # The stop: the cancel flag ends the sweep in progress as interrupted (resumable) wherever
        # it waits on a child. A fork server that is starting cannot be cut short (it imports torch
        # and ONNX Runtime: 2-3 s, more on a loaded machine), hence the margin before the budget.
        timer = threading.Timer(max(0.0, seconds - stop_margin_s(seconds)), cancel.set)
        timer.daemon = True
        timer.start()
    runs: list[dict[str, Any]] = []
    interrupted_by_user = False
    try:
        if args.resume:
            pending = [r for r in store.list_runs(status="interrupted") if r.get("source") == "auto"]
            if not pending:
                console.print("no interrupted `qbench auto` run to resume")
            for run in pending:
                if cancel.is_set():
                    break
                run_id, status, results = execute_sweep(store, None, console, plain=json_to_stdout,
                                                        resume=run["id"], cancel=cancel, source="auto")
                runs.append({"run_id": run_id, "model": run["model"], "status": status, "results": len(results)})
                if status == "interrupted" and not cancel.is_set():
                    interrupted_by_user = True
                    break
            models = sorted({r["model"] for r in runs})
        else:
            plans = plan_auto(args)
            models = [p["name"] for p in plans]
            measure = MeasureSettings(min_time_s=args.min_time, min_reps=args.min_reps,
                                      max_time_s=max(20.0, args.min_time * 4), repeat=args.repeat)
            variants_left = args.budget.get("variants")
            factor = 1.0  # observed / estimated seconds per variant, learned as models finish
            if args.dry_run:
                console.print(DRY_RUN_LEGEND, highlight=False)
            for i, plan in enumerate(plans):
                models_left = len(plans) - i
                remaining = 0.0
                if variants_left is not None:
                    share = variants_left // models_left + (1 if variants_left % models_left else 0)
                else:
                    remaining = deadline - time.monotonic() - stop_margin_s(seconds)
                    per = estimate_variant_s(plan["params"], args) * factor
                    share = int((remaining / models_left - SWEEP_OVERHEAD_S) // per)
                chosen = plan["candidates"][:max(0, share)]
                if variants_left is None and remaining / models_left > SWEEP_OVERHEAD_S:
                    # A time budget measures at least fp32 and one more; the hard stop keeps the
                    # budget, and what it cuts off is resumable.
                    chosen = plan["candidates"][:max(share, 2)]
                console.print(f"[bold]{plan['name']}[/] ({plan['family']}): "
                              f"{len(chosen)} of {len(plan['candidates'])} candidates"
                              + (f", {len(plan['refused'])} refused here" if plan["refused"] else ""))
                for c in plan["candidates"] if args.dry_run else chosen:
                    mark = "•" if c in chosen else "[dim]–[/]"
                    console.print(f"  {mark} {c.spec} · {c.runtime} · {c.device} [dim]— {c.why}[/]")
                if args.dry_run:
                    for refused in plan["refused"]:
                        console.print(f"  [dim]× {refused['spec']} · {refused['runtime']} · {refused['device']}: "
                                      f"{refused['reason']}[/]")
                    if variants_left is not None:
                        variants_left -= len(chosen)
                    continue
                if not chosen or cancel.is_set():
                    console.print("  [yellow]budget spent[/]: not measured")
                    continue
                t0 = time.monotonic()
                # A time budget gives each model its share: a timer cancels the model's sweep at the
                # share's end (interrupted, resumable), so one slow model cannot starve the others.
                model_cancel = threading.Event() if variants_left is None else cancel
                model_timer = None
                if variants_left is None:
                    model_timer = threading.Timer(max(1.0, remaining / models_left), model_cancel.set)
                    model_timer.daemon = True
                    model_timer.start()
                measured = 0
                try:
                    for (runtime, device), specs in _groups(chosen).items():
                        if model_cancel.is_set():
                            break
                        request = SweepRequest(model=plan["model"], methods=parse_recipes(specs), runtimes=(runtime,),
                                               devices=(device,), batch_sizes=tuple(args.batch_sizes),
                                               timeout_s=args.timeout, measure=measure,
                                               model_options={"seq_len": args.seq_len})
                        run_id, status, results = execute_sweep(store, request, console, plain=json_to_stdout,
                                                                cancel=model_cancel, source="auto")
                        measured += len(results)
                        runs.append({"run_id": run_id, "model": plan["name"], "runtime": runtime, "device": device,
                                     "status": status, "results": len(results)})
                        if status == "interrupted" and not model_cancel.is_set():
                            interrupted_by_user = True
                            break
                finally:
                    if model_timer is not None:
                        model_timer.cancel()
                if interrupted_by_user:
                    break
                if variants_left is not None:
                    variants_left -= len(chosen)
                elif measured:
                    observed = (time.monotonic() - t0 - SWEEP_OVERHEAD_S * len(_groups(chosen))) / measured
                    factor = max(0.3, observed / estimate_variant_s(plan["params"], args))
            if args.dry_run:
                return EXIT_OK
    finally:
        if timer is not None:
            timer.cancel()
    elapsed = time.monotonic() - start
    budget_text = (f"{args.budget['variants']} variants" if "variants" in args.budget
                   else f"{args.budget['seconds']:.0f} s")
    stopped = [r for r in runs if r["status"] == "interrupted"]
    console.print(f"[bold]auto[/]: {len(runs)} run(s) in {elapsed:.0f} s (budget {budget_text})"
                  + (f"; {len(stopped)} stopped by the budget: finish them with [bold]qbench auto --resume[/]"
                     if stopped and not interrupted_by_user else ""))
    results, facts = from_store(store, models=models or None) if models else ([], {})
    data = insights(results, facts, profile)
    print_insights(console, data)
    if args.json_out:
        _dump({"runs": runs, "elapsed_s": elapsed, "budget": args.budget, "insights": data}, args.json_out)
    if interrupted_by_user:
        return EXIT_INTERRUPTED
    failed = any(r["status"] == "failed" for run in runs for r in store.results(run["run_id"]))
    return EXIT_FAILED if failed else EXIT_OK
