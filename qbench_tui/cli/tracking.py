"""``qbench track | register | registry``: MLflow tracking and the model registry.

``qbench track`` shows the tracking URI in force and what is still queued for it (``--flush``
sends it now); ``qbench register RESULT_ID`` registers the exported variant as a model version
with its quantization metadata as tags; ``qbench registry`` lists the registered versions with
their figures. The top level stays light: MLflow is imported by the handlers only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from qbench_tui.cli.common import EXIT_FAILED, EXIT_OK, UsageError

URI_HELP = ("MLflow tracking URI (default: $MLFLOW_TRACKING_URI, then the app's setting, then "
            "sqlite:///$QBENCH_HOME/mlflow.db; 'off' disables tracking)")


def add_parsers(sub: Any) -> None:
    track = sub.add_parser("track", help="MLflow tracking: the URI in force and what is queued for it")
    track.add_argument("--flush", action="store_true", help="send what is queued now (waits for a running sender)")
    track.add_argument("--retry-failed", action="store_true", help="with --flush: also entries MLflow refused")
    track.add_argument("--mlflow-uri", metavar="URI", help=URI_HELP)
    track.add_argument("--json", action="store_true")
    track.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")
    track.set_defaults(handler=cmd_track)

    register = sub.add_parser("register", help="register a result's exported variant in the MLflow model registry")
    register.add_argument("result_id", type=int, metavar="RESULT_ID", help="the result's id (qbench results --format json)")
    register.add_argument("--name", help="registered model name (default: the model's name)")
    register.add_argument("--alias", help="point this alias at the new version, e.g. best-cpu")
    register.add_argument("--format", dest="fmt", metavar="FORMAT",
                          help="export format (default: the variant's own: onnx, coreml, tflite, torch…)")
    register.add_argument("--mlflow-uri", metavar="URI", help=URI_HELP)
    register.add_argument("--json", action="store_true")
    register.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")
    register.set_defaults(handler=cmd_register)

    registry = sub.add_parser("registry", help="list registered model versions with their figures")
    registry.add_argument("--name", help="only this registered model")
    registry.add_argument("--where", action="append", default=[], metavar="TAG=VALUE",
                          help="only versions with this tag, e.g. quant.method=int4 or bench.device=cpu; repeatable")
    registry.add_argument("--mlflow-uri", metavar="URI", help=URI_HELP)
    registry.add_argument("--json", action="store_true")
    registry.set_defaults(handler=cmd_registry)


def tracking_uri(explicit: str | None) -> str | None:
    """The URI in force for a command (None: off); a malformed ``--mlflow-uri`` is a usage error."""
    from engines.paths import settings_path
    from engines.tracking import check_uri, resolve_uri
    from qbench_tui.settings import AppSettings

    if explicit is not None:
        try:
            check_uri(explicit.strip())
        except ValueError as exc:
            raise UsageError(f"--mlflow-uri: {exc}") from None
    return resolve_uri(explicit, AppSettings.load(settings_path()).tracking_uri)


def _needs_uri(args: Any) -> str:
    uri = tracking_uri(args.mlflow_uri)
    if uri is None:
        raise UsageError("tracking is off ('off' from --mlflow-uri, $MLFLOW_TRACKING_URI or the app's setting); "
                         "name a tracking URI with --mlflow-uri")
    return uri


def cmd_track(args: Any) -> int:
    from qbench_tui.cli.common import open_store
    from qbench_tui.cli.output import make_console

    console = make_console()
    uri = tracking_uri(args.mlflow_uri)
    store = open_store(getattr(args, "db", None))
    summary: dict[str, Any] = {}
    if args.flush:
        from engines.tracking.sender import drain

        store_path = store.path
        store.close()
        summary = drain(store_path, retry_failed=args.retry_failed)
        from engines.store import Store

        store = Store(store_path)
    queue = store.tracking_queue()
    body = {"uri": uri, "queue": queue, **({"flush": summary} if args.flush else {})}
    if args.json:
        print(json.dumps(body, default=str))
    else:
        console.print(f"tracking URI: [bold]{uri or 'off'}[/]")
        if args.flush:
            console.print(f"sent {summary['sent']} result(s) to MLflow" + (
                f"; {summary['failed']} refused" if summary["failed"] else ""))
            for target, error in summary["errors"].items():
                console.print(f"[yellow]{target}[/]: {error}", markup=False, highlight=False)
        if not queue:
            console.print("nothing queued")
        for row in queue:
            line = f"{row['results']} result(s) queued for {row['uri']}"
            if row["failed"]:
                line += f", {row['failed']} refused (--flush --retry-failed sends them again)"
            if row["last_error"]:
                line += f" — {row['last_error']}"
            console.print(line, markup=False, highlight=False)
    return EXIT_FAILED if args.flush and summary.get("errors") else EXIT_OK


def cmd_register(args: Any) -> int:
    from qbench_tui.cli.common import open_store

    uri = _needs_uri(args)
    store = open_store(getattr(args, "db", None))
    store_path = store.path
    store.close()
    from engines.tracking.registry import RegistryError, register

    try:
        out = register(store_path, args.result_id, uri, name=args.name, alias=args.alias, fmt=args.fmt)
    except RegistryError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(out, default=str))
        return EXIT_OK
    from qbench_tui.cli.output import make_console

    console = make_console()
    alias = f" (alias @{out['alias']})" if out["alias"] else ""
    console.print(f"registered [bold]{out['name']}[/] version [bold]{out['version']}[/]{alias} from result "
                  f"{args.result_id} · {out['export']['how']} ({out['export']['format']})")
    tags = out["tags"]
    console.print("  " + " · ".join(f"{k}={tags[k]}" for k in ("quant.method", "quant.bits", "quant.group_size",
                                                                "bench.runtime", "bench.device",
                                                                "bench.speedup_vs_fp32") if k in tags),
                  markup=False, highlight=False)
    console.print(f"  source {out['source']}", markup=False, highlight=False)
    return EXIT_OK


def cmd_registry(args: Any) -> int:
    uri = _needs_uri(args)
    where = {}
    for item in args.where:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--where expects TAG=VALUE, got {item!r}")
        where[key.strip()] = value.strip()
    from engines.tracking.registry import RegistryError, list_versions

    try:
        versions = list_versions(uri, name=args.name, where=where)
    except RegistryError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps({"uri": uri, "versions": versions}, default=str))
        return EXIT_OK
    from qbench_tui.cli.output import make_console

    console = make_console()
    console.print(registry_table(versions, uri))
    return EXIT_OK


def registry_table(versions: list[dict[str, Any]], uri: str) -> Any:
    from rich.table import Table

    table = Table(title=f"MLflow registry · {uri}", title_justify="left")
    for column in ("model", "ver", "aliases", "variant", "bits", "runtime", "device", "p50 ms", "speedup",
                   "accuracy", "size MB"):
        table.add_column(column, justify="right" if column in ("ver", "bits", "p50 ms", "speedup", "accuracy",
                                                                 "size MB") else "left")
    for v in versions:
        t = v["tags"]
        speedup = t.get("bench.speedup_vs_fp32")
        table.add_row(v["name"], v["version"], ",".join(v["aliases"]), t.get("quant.label", "–"),
                      t.get("quant.bits", "–"), t.get("bench.runtime", "–"), t.get("bench.device", "–"),
                      t.get("bench.latency_p50_ms", "–"), f"×{speedup}" if speedup else "–",
                      t.get("bench.accuracy", "–"), t.get("bench.size_mb", "–"))
    if not versions:
        table.caption = "no registered versions (qbench register RESULT_ID)"
    return table
