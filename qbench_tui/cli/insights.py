"""``qbench auto | recommend | insights | report``: standardized sweeps across architectures, what to
ship and why, which technique wins per family, and a dashboard to share.

The top level stays light (argparse only); each handler imports what it needs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from qbench_tui.cli.common import EXIT_FAILED, EXIT_OK, UsageError, csv_list, open_store

OBJECTIVES = ("latency", "throughput", "size", "memory", "energy")  # engines.analysis.recommend.OBJECTIVES


def add_parsers(sub: Any) -> None:
    db_help = "SQLite store"
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
    ins.add_argument("--across-runs", action="store_true",
                     help="compare a variant with another run's fp32 when its own run measured none "
                          "(default: pairs within one run only)")
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
    if data.get("pool"):
        console.print(f"  [dim]compared: {data['pool']}[/]")
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
    from engines.api import ApiError, recommend
    from qbench_tui.cli.output import make_console

    console = make_console(stderr=args.json)
    store = open_store(args.db)
    # This machine's roofline diagnoses the losers; not measured when the API will refuse the model.
    profile = _profile(store, console) if args.model in store.distinct_values("model") else None
    try:
        rec = recommend(args.model, objective=args.objective, device=args.device, run_id=args.run,
                        max_accuracy_drop=args.max_accuracy_drop, min_agreement=args.min_agreement, store=store,
                        profile=profile)
    except ApiError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        _dump(rec, "-")
    else:
        print_recommendation(console, rec)
    return EXIT_OK if rec["best"] else EXIT_FAILED


def print_recommendation(console: Any, rec: dict[str, Any]) -> None:
    from rich.table import Table

    best = rec["best"]
    head = f"[bold]{rec['model']}[/] · {rec['objective']} · {rec['budget']}" + (
        f" · [dim]pooled: {rec['pool']}[/]" if rec.get("pool") else "")
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
    data = insights(results, facts, profile, across_runs=getattr(args, "across_runs", False))
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
