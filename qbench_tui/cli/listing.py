"""The read-only commands: ``results``, ``runs``, ``models``, ``methods``, ``runtimes``, ``devices``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qbench_tui.cli.common import EXIT_OK, UsageError, open_store, since_time

TABLE_LIMIT = 500  # rows a table shows unless --limit says otherwise (JSON and CSV have no default limit)


def add_parsers(sub) -> None:
    results = sub.add_parser("results", help="show stored results (SQLite filters them: fast on a long history)")
    results.add_argument("--run", help="one run (default: all runs)")
    results.add_argument("--latest", action="store_true", help="only the most recent run")
    results.add_argument("--model", help="only this model")
    results.add_argument("--method", help="only this method (every setting of it), e.g. int4")
    results.add_argument("--label", help="only this recipe, by its label, e.g. int4(g128)")
    results.add_argument("--runtime", help="only this runtime")
    results.add_argument("--device", help="only this device")
    results.add_argument("--host", help="only results measured on this host (a fleet worker's name)")
    results.add_argument("--status", choices=("ok", "failed", "unsupported", "interrupted"), help="only results with this status")
    results.add_argument("--since", type=since_time, metavar="WHEN",
                         help="only results finished since WHEN: a date/time (2026-11-01, 2026-11-01T09:00) "
                              "or an age (30m, 12h, 7d, 4w)")
    results.add_argument("--limit", type=int, metavar="N",
                         help="only the N most recent, shown oldest first (a table: 500 unless given; 0: all)")
    results.add_argument("--format", choices=("table", "json", "csv"), default="table")
    results.add_argument("--wide", action="store_true", help="every column, however wide the terminal (default: fit it; piped output is always whole)")
    results.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")

    results.set_defaults(handler=cmd_results)

    runs = sub.add_parser("runs", help="list runs, newest first")
    runs.add_argument("--model", help="only this model's runs")
    runs.add_argument("--status", choices=("running", "finished", "interrupted", "failed"),
                      help="only runs with this status")
    runs.add_argument("--since", type=since_time, metavar="WHEN",
                      help="only runs started since WHEN: a date/time or an age (30m, 12h, 7d, 4w)")
    runs.add_argument("--limit", type=int, metavar="N", help="only the N most recent (a table: 500 unless given; 0: all)")
    runs.add_argument("--json", action="store_true")
    runs.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")

    runs.set_defaults(handler=cmd_runs)

    for name, text in (("models", "list models"), ("methods", "list methods and what they support"),
                       ("runtimes", "list runtimes, what they open and their settings"),
                       ("devices", "list compute devices and why any is missing")):
        p = sub.add_parser(name, help=text)
        p.set_defaults(handler=LISTINGS[name])
        p.add_argument("--json", action="store_true")
        if name == "devices":
            p.add_argument("--wide", action="store_true", help="every column, however wide the terminal (default: fit it; piped output is always whole)")
            p.add_argument("--model", help="also the best device for this model, from its stored results")
            p.add_argument("--objective", choices=("latency", "throughput", "memory"), default="latency")
            p.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")
            p.add_argument("--sample", action="store_true",
                           help="also one live reading: per-core CPU, memory, each accelerator (as the app's meters)")


def cmd_results(args) -> int:
    from engines.api import ApiError, query_results
    from engines.core.schema import public_json, results_csv
    from engines.store.query import ResultQuery
    from qbench_tui.cli.output import make_console, results_table

    if args.limit is not None and args.limit < 0:
        raise UsageError("--limit must be 0 (no limit) or more")
    limit = args.limit
    if limit is None and args.format == "table":
        limit = TABLE_LIMIT  # a table of 20,000 rows takes Rich a minute and no one reads it
    limit = limit or None
    store = open_store(args.db)
    run_id = args.run or (store.latest_run_id() if args.latest else None)
    # SQLite filters and limits (through the Python API's query); with --limit the newest N are
    # read, then shown oldest first.
    filters = {"model": args.model, "method": args.method, "label": args.label, "runtime": args.runtime,
               "device": args.device, "host": getattr(args, "host", None), "status": args.status, "run_id": run_id,
               "since": args.since}
    _check_known(store, args)
    try:
        results = query_results(store, limit=limit, newest_first=limit is not None, **filters)
    except ApiError as exc:
        raise UsageError(str(exc)) from None
    query = ResultQuery(**{k: v for k, v in filters.items() if v is not None})
    if limit is not None:
        results.reverse()
    if args.format == "json":
        sys.stdout.write(json.dumps(public_json(results), indent=2) + "\n")
    elif args.format == "csv":
        sys.stdout.write(results_csv(results))
    else:
        # Ratios against fp32 need each run's fp32 row, which a filter may have left out.
        references = store.fp32_references({r.get("run_id") for r in results})
        total = sum(store.count_results(query.with_(sort=None, reverse=False)).values())
        title = f"{len(results)} results"
        if len(results) < total:
            title = f"the newest {len(results)} of {total} results (--limit N, 0 for all)"
        console = make_console()
        console.print(results_table(results, title=title, references=references, console=console,
                                    wide=getattr(args, "wide", False)))
    return EXIT_OK


def _check_known(store, args) -> None:
    """A filter naming a value no stored result has is a mistake (a typo, another store): say so,
    with the values that have results, rather than print an empty table."""
    for option, column, noun in (("model", "model", "model"), ("method", "method", "method"),
                                 ("runtime", "runtime", "runtime"), ("device", "device", "device"),
                                 ("host", "host", "host")):
        value = getattr(args, option, None)
        if value is None:
            continue
        known = store.distinct_values(column)
        if value not in known:
            raise UsageError(f"no {noun} {value!r} has results in {store.path}; "
                             f"{noun}s with results: {', '.join(known) or 'none yet'}")


def cmd_runs(args) -> int:
    from rich.table import Table

    from qbench_tui.cli.output import make_console

    if args.limit is not None and args.limit < 0:
        raise UsageError("--limit must be 0 (no limit) or more")
    limit = args.limit
    if limit is None and not args.json:
        limit = TABLE_LIMIT
    store = open_store(args.db)
    runs = store.list_runs(limit=limit or None, since=args.since, model=args.model, status=args.status,
                           with_counts=True)
    if args.json:
        sys.stdout.write(json.dumps(runs, indent=2, default=str) + "\n")
        return EXIT_OK
    total = len(store.list_runs(since=args.since, model=args.model, status=args.status)) if limit else len(runs)
    shown = f"the newest {len(runs)} of {total} runs" if len(runs) < total else f"{len(runs)} runs"
    table = Table(title=f"{shown} in {store.path}" + (" (--limit N, 0 for all)" if len(runs) < total else ""))
    for col in ("run", "created", "status", "model", "results", "source"):
        table.add_column(col)
    for r in runs:
        table.add_row(r["id"], r["created_at"], r["status"], r["model"], str(r["results"]), r["source"])
    make_console().print(table)
    return EXIT_OK


def cmd_models(args) -> int:
    from dataclasses import asdict

    from engines.models import list_models
    from qbench_tui.cli.output import make_console

    models = list_models()
    if args.json:
        sys.stdout.write(json.dumps([asdict(m) for m in models], indent=2) + "\n")
        return EXIT_OK
    from rich.table import Table

    table = Table(title="models")
    for col in ("name", "task", "family", "source", "params", "description"):
        table.add_column(col)
    for m in models:
        table.add_row(m.name, m.task, m.family, m.source, f"{m.params:,}" if m.params else "–", m.description)
    make_console().print(table)
    return EXIT_OK


def cmd_methods(args) -> int:
    from engines import catalog
    from engines.core.config import field_specs
    from engines.methods.recipe import Recipe
    from engines.passes import Plan, all_passes
    from qbench_tui.cli.output import make_console

    rows = []
    for spec in catalog.METHODS.values():
        owners = {name: sorted(p.name for p in all_passes().values()
                               if p.config_class is spec.config_class and name in p.owns)
                  for name in (s["name"] for s in field_specs(spec.config_class))}
        support: dict[str, dict[str, str]] = {}
        passes: dict[str, list[str]] = {}
        for rt in catalog.RUNTIMES.values():
            support[rt.name] = {}
            for dev in rt.devices:
                planned = catalog.plan_variant(Recipe.default(spec), rt.name, dev)
                support[rt.name][dev] = "ok" if isinstance(planned, Plan) else planned
                if isinstance(planned, Plan) and rt.name not in passes:
                    passes[rt.name] = planned.names
        rows.append({
            "name": spec.name, "title": spec.title, "bits": spec.bits, "description": spec.description,
            "needs_calibration": spec.needs_calibration, "needs_training_data": spec.needs_training_data,
            "compute": spec.compute.value, "reference": spec.is_reference, "fallbacks": list(spec.fallbacks),
            "settings": {s["name"]: {"default": s["default"], "help": s["help"], "choices": s["choices"],
                                     "option_of": owners[s["name"]]}  # the passes whose own option it is
                         for s in field_specs(spec.config_class)},
            "support": support, "passes": passes,
        })
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return EXIT_OK
    from rich.table import Table

    table = Table(title="methods (on this machine's CPU; support derived from the registered passes)")
    for col in ("name", "bits", "calibration", *catalog.RUNTIMES, "settings"):
        table.add_column(col)
    for row in rows:
        cells = []
        for rt in catalog.RUNTIMES:
            reason = row["support"][rt].get("cpu", "no cpu backend")
            chain = " → ".join(row["passes"].get(rt, [])) or "as loaded"
            cells.append(f"[green]yes[/] ({chain})" if reason == "ok" else f"[yellow]no[/]: {reason}")
        table.add_row(row["name"], str(row["bits"]), "yes" if row["needs_calibration"] else "",
                      *cells, ", ".join(row["settings"]))
    make_console().print(table)
    return EXIT_OK


def cmd_runtimes(args) -> int:
    from engines import catalog
    from engines.core.config import field_specs
    from qbench_tui.cli.output import make_console

    rows = [{
        "name": rt.name, "title": rt.title, "formats": [f.value for f in rt.formats], "devices": list(rt.devices),
        "installed": rt.installed(), "install": None if rt.installed() else rt.install_hint(),
        "accepts": catalog.accepted_methods(rt),
        "settings": {s["name"]: {"default": s["default"], "help": s["help"], "choices": s["choices"]}
                     for s in field_specs(rt.config_class)},
    } for rt in catalog.RUNTIMES.values()]
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return EXIT_OK
    from rich.table import Table

    table = Table(title="runtimes")
    for col in ("name", "runtime", "opens", "devices", "installed", "settings"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["name"], row["title"], ", ".join(row["formats"]), ", ".join(row["devices"]),
                      "[green]yes[/]" if row["installed"] else f"[red]no[/]: {row['install']}",
                      ", ".join(f"{k}={v['default']}" for k, v in row["settings"].items()))
    make_console().print(table)
    return EXIT_OK


def device_rows() -> list[dict]:
    """Each device with its runtimes (ok or the reason) and the recipes that suit it (light: no torch)."""
    from dataclasses import asdict

    from engines import catalog
    from engines.devices import cpu_features, detect_devices
    from engines.devices.strategies import device_strategies

    rows = []
    for d in detect_devices():
        row = asdict(d)
        row["runtimes"] = {rt.name: catalog.runtime_refusal(rt, d.name) or "ok"
                           for rt in catalog.RUNTIMES.values() if d.name in rt.devices}
        if row["runtimes"].get("coreml") == "ok":
            from engines.runtimes.coreml import host_limit

            row["runtimes"]["coreml"] = host_limit() or "ok"
        row["strategies"] = [{"recipe": s.spec, "why": s.why} for s in device_strategies(d)]
        if d.name == "cpu":
            isa = cpu_features()
            row["isa"] = {"arch": isa.arch, "family": isa.family, "vnni": isa.vnni, "int8_dot": isa.int8_dot,
                          "source": isa.source}
        rows.append(row)
    return rows


def cmd_devices(args) -> int:
    from qbench_tui.cli.output import make_console

    rows = device_rows()
    sample = choice = None
    if args.sample:
        import time

        from engines.devices.sampling import DeviceSampler

        # macmon (Apple GPU/ANE activity and power) samples every 250 ms here; it is ended on the way out.
        with DeviceSampler(macmon_interval_ms=250) as sampler:
            sampler.sample()  # psutil's CPU percentages need a first reading to compare with (starts macmon)
            sampler.wait_for_macmon(3.0)  # its first reading; returns at once where it is not running
            time.sleep(0.5)
            sample = sampler.sample().to_dict()
    if getattr(args, "model", None):
        from engines.analysis.device_choice import choose_device

        store = open_store(getattr(args, "db", None))
        choice = choose_device(store.results(None, where="model = ?", params=[args.model]), args.objective)
        choice["model"] = args.model
    if args.json:
        extra = {k: v for k, v in (("sample", sample), ("choice", choice)) if v is not None}
        sys.stdout.write(json.dumps({"devices": rows, **extra} if extra else rows, indent=2) + "\n")
        return EXIT_OK
    from rich.markup import escape

    from qbench_tui.cli.output import Col, fitted_table

    cols = (Col("name", priority=1), Col("device", priority=4, wrap=24), Col("present", priority=1),
            Col("detail", priority=2, wrap=28), Col("runtimes", priority=3, wrap=36),
            Col("auto recipes", priority=3, wrap=24))
    table_rows = []
    for d in rows:
        runtimes = "\n".join(f"{n}: {'[green]ok[/]' if why == 'ok' else escape(why)}" for n, why in d["runtimes"].items())
        table_rows.append([d["name"], escape(d["title"]), "[green]yes[/]" if d["present"] else "[red]no[/]",
                           escape(d["detail"]), runtimes, ", ".join(s["recipe"] for s in d["strategies"])])
    console = make_console()
    console.print(fitted_table(cols, table_rows, console, getattr(args, "wide", False), title="devices"))
    if choice:
        console.print(f"best device for {choice['model']} ({choice['objective']}): "
                      f"{choice['reason']}")
    if sample:
        console.print_json(data=sample)
    return EXIT_OK


LISTINGS = {"models": cmd_models, "methods": cmd_methods, "runtimes": cmd_runtimes, "devices": cmd_devices}
