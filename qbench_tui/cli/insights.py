"""``qbench auto | recommend | insights | report``: standardized sweeps across architectures, what to
ship and why, which technique wins per family, and a dashboard to share.

The top level stays light (argparse only); each handler imports what it needs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

from qbench_tui.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError, csv_list, int_list, open_store

OBJECTIVES = ("latency", "throughput", "size", "memory")


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

    rec = sub.add_parser("recommend", help="the best recipe × runtime × device for an objective within a quality "
                                           "budget, the runners-up on the Pareto frontier and why")
    rec.add_argument("--model", required=True, help="the model (its stored results, every run)")
    rec.add_argument("--run", help="only this run's results")
    rec.add_argument("--device", help="only this device")
    rec.add_argument("--objective", choices=OBJECTIVES, default="latency", help="default latency")
    quality = rec.add_mutually_exclusive_group()
    quality.add_argument("--max-accuracy-drop", type=float, metavar="POINTS",
                         help="accuracy points below fp32 allowed (default 1; agreement stands in where the "
                              "model has no task accuracy)")
    quality.add_argument("--min-agreement", type=float, metavar="FRACTION",
                         help="minimum agreement with fp32 (top-1 or cosine), e.g. 0.99")
    rec.add_argument("--json", action="store_true", help="the recommendation as data")
    rec.add_argument("--db", type=Path, default=argparse.SUPPRESS, help=db_help)
    rec.set_defaults(handler=cmd_recommend)

    ins = sub.add_parser("insights", help="which technique wins for each architecture family and device, with the "
                                          "evidence, and a diagnosis of surprises against this machine's roofline")
    ins.add_argument("--models", type=csv_list, help="only these models (default: every model measured)")
    ins.add_argument("--remeasure-roofline", action="store_true",
                     help="measure this machine's peak compute and bandwidth again")
    ins.add_argument("--json", action="store_true")
    ins.add_argument("--db", type=Path, default=argparse.SUPPRESS, help=db_help)
    ins.set_defaults(handler=cmd_insights)

    rep = sub.add_parser("report", help="a self-contained HTML dashboard of a run or a model (opens offline)")
    which = rep.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", help="one run")
    which.add_argument("--model", help="every stored result of a model")
    rep.add_argument("--html", required=True, type=Path, metavar="FILE", help="where to write the page")
    rep.add_argument("--objective", choices=OBJECTIVES, default="latency", help="of the recommendation")
    rep.add_argument("--db", type=Path, default=argparse.SUPPRESS, help=db_help)
    rep.set_defaults(handler=cmd_report)


# --- shared -------------------------------------------------------------------------------------


def _profile(store: Any, console: Any, remeasure: bool = False) -> dict[str, Any] | None:
    """This machine's roofline, measured once (a second or two) and stored."""
    from engines.analysis import roofline

    try:
        fresh = remeasure or roofline.stored(store) is None
        profile = roofline.ensure(store, remeasure=remeasure)
        if fresh:
            console.print(f"[dim]roofline measured: {profile['peak_gflops']:.0f} GFLOP/s fp32, "
                          f"{profile['bandwidth_gbs']:.1f} GB/s ({profile.get('method')})[/]")
        return profile
    except Exception as exc:  # no numpy, a killed child: the analysis goes on without it
        console.print(f"[yellow]roofline not measured[/]: {exc}")
        return None


def insights_table(data: dict[str, Any], title: str = "Insights per architecture"):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for name, justify in (("", "left"), ("family", "left"), ("device", "left"), ("runtime", "left"),
                          ("technique", "left"), ("models", "right"), ("speed-up", "right"), ("range", "right"),
                          ("size ×", "right"), ("quality kept", "right"), ("regime", "left")):
        table.add_column(name, justify=justify)
    for r in data["rows"]:
        table.add_row("★" if r["winner"] else "", r["family"], r["device"], r["runtime"], r["technique"],
                      str(r["n"]), f"{r['speedup']:.2f}×", f"{r['speedup_low']:.2f}–{r['speedup_high']:.2f}",
                      "–" if r["size_ratio"] is None else f"{r['size_ratio']:.2f}", f"{r['kept']}/{r['n']}",
                      ", ".join(r["regimes"]) or "–")
    return table


def print_insights(console: Any, data: dict[str, Any]) -> None:
    if not data["rows"]:
        console.print("no quantized result with an fp32 reference to compare yet")
        return
    console.print(insights_table(data))
    for line in data["winners"]:
        console.print(f"  {line}")
    for s in data["surprises"]:
        console.print(f"  [yellow]surprise[/]: {s['text']}")


def _dump(payload: Any, target: str | None) -> None:
    from engines.core.schema import public_json

    text = json.dumps(public_json([payload])[0], indent=2, default=str) + "\n"
    if target in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(target).write_text(text)


# --- recommend ----------------------------------------------------------------------------------


def cmd_recommend(args) -> int:
    from engines.analysis.insights import from_store
    from engines.analysis.recommend import RecommendationError, recommend
    from qbench_tui.cli.output import make_console

    console = make_console(stderr=args.json)
    store = open_store(args.db)
    if args.run and store.get_run(args.run) is None:
        raise UsageError(f"no run {args.run!r} in {store.path}; see `qbench runs`")
    results, facts = from_store(store, models=[args.model], run_id=args.run)
    results = [r for r in results if r["model"] == args.model]
    if not results:
        known = ", ".join(store.distinct_values("model")) or "none yet"
        raise UsageError(f"no stored results for model {args.model!r} (models with results: {known})")
    if args.device and args.device not in {r["device"] for r in results}:
        raise UsageError(f"{args.model} has no results on device {args.device!r}; measured on: "
                         f"{', '.join(sorted({r['device'] for r in results}))}")
    profile = _profile(store, console)
    try:
        rec = recommend(results, args.objective, device=args.device, max_accuracy_drop=args.max_accuracy_drop,
                        min_agreement=args.min_agreement, facts=facts.get(args.model), profile=profile)
    except RecommendationError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        _dump(rec, "-")
    else:
        print_recommendation(console, rec)
    return EXIT_OK if rec["best"] else EXIT_FAILED


def print_recommendation(console: Any, rec: dict[str, Any]) -> None:
    from rich.table import Table

    best = rec["best"]
    head = f"[bold]{rec['model']}[/] · {rec['objective']} · {rec['budget']}"
    if best is None:
        console.print(f"{head}: {rec['reasons'][0]}")
        return
    console.print(f"{head}\n[bold green]ship {best['label']} on {best['runtime']} · {best['device']}[/]"
                  f" ({best['value']})")
    for reason in rec["reasons"]:
        console.print(f"  • {reason}")
    table = Table(title="Pareto frontier (quality vs the objective)", title_justify="left")
    for name in ("", "recipe", "runtime", "device", "bs", "value", "speed-up", "size ×", "quality"):
        table.add_column(name)
    from engines.analysis.recommend import fmt_speedup

    for p in rec["frontier"]:
        quality = ", ".join(f"{k} {v:.3f}" for k, v in (p["agreement"] or {}).items())
        if p["accuracy"] is not None:
            quality = (quality + ", " if quality else "") + f"acc {p['accuracy']:.4f}"
        mark = "★" if (p["result_id"], p["label"], p["runtime"]) == (best["result_id"], best["label"],
                                                                    best["runtime"]) else ""
        table.add_row(mark, p["label"], p["runtime"], p["device"], str(p["batch_size"]), p["value"],
                      fmt_speedup(p["speedup"]), "–" if p["size_ratio"] is None else f"{p['size_ratio']:.2f}",
                      quality or "reference")
    console.print(table)


# --- insights -----------------------------------------------------------------------------------


def cmd_insights(args) -> int:
    from engines.analysis.insights import from_store, insights
    from qbench_tui.cli.output import make_console

    console = make_console(stderr=args.json)
    store = open_store(args.db)
    results, facts = from_store(store, models=list(args.models) if args.models else None)
    if args.models:
        missing = [m for m in args.models if m not in facts]
        if missing:
            raise UsageError(f"no stored results for {', '.join(missing)}; models with results: "
                             f"{', '.join(store.distinct_values('model')) or 'none yet'}")
    profile = _profile(store, console, remeasure=args.remeasure_roofline)
    data = insights(results, facts, profile)
    if args.json:
        _dump(data, "-")
    else:
        if profile:
            console.print(f"[dim]roofline ({profile['host']}, {profile['measured_at']}): "
                          f"{profile['peak_gflops']:.0f} GFLOP/s, {profile['bandwidth_gbs']:.1f} GB/s[/]")
        print_insights(console, data)
    return EXIT_OK


# --- report -------------------------------------------------------------------------------------


def cmd_report(args) -> int:
    from engines.analysis.insights import from_store, insights
    from engines.analysis.recommend import recommend
    from engines.analysis.report import build_html
    from qbench_tui.cli.output import make_console

    console = make_console()
    store = open_store(args.db)
    if args.run and store.get_run(args.run) is None:
        raise UsageError(f"no run {args.run!r} in {store.path}; see `qbench runs`")
    results, facts = from_store(store, models=[args.model] if args.model else None, run_id=args.run)
    if not results:
        raise UsageError(f"no stored results for {'run ' + args.run if args.run else 'model ' + args.model}")
    if args.html.is_dir() or not args.html.parent.exists():
        raise UsageError(f"--html {args.html}: not a file in an existing folder")
    profile = _profile(store, console)
    models = sorted(facts)
    rec = recommend([r for r in results if r["model"] == models[0]], args.objective, facts=facts[models[0]],
                    profile=profile) if len(models) == 1 else None
    runs = [store.get_run(rid) for rid in sorted({r["run_id"] for r in results if r.get("run_id")})]
    title = f"qbench · run {args.run}" if args.run else f"qbench · {args.model}"
    page = build_html(title, results, rec, insights(results, facts, profile), [r for r in runs if r])
    args.html.write_text(page, encoding="utf-8")
    console.print(f"wrote {args.html} ({len(page) / 1e6:.1f} MB, {len(results)} results; opens offline)")
    return EXIT_OK


# --- auto ---------------------------------------------------------------------------------------

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
                        request = SweepRequest(model=plan["model"], methods=tuple(specs), runtimes=(runtime,),
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
