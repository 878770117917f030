"""``qbench version | versions | restore | serve | monitor``: version exported variants with DVC,
serve one behind HTTP, watch a served one and suggest a re-optimization.

The top level stays light (argparse only); each handler imports what it needs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from qbench_tui.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError, open_store

FORMATS = ("onnx",)  # what the exporter's service can serve


def add_parsers(sub) -> None:
    def common(p, dvc: bool = False) -> None:
        p.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if dvc:
            p.add_argument("--dvc-repo", metavar="DIR",
                           help="a DVC repository of yours (initialised without git if new); default "
                                "$QBENCH_HOME/dvc/repo (setting dvc_repo)")
            p.add_argument("--dvc-remote", metavar="URL",
                           help="remote to push to (a directory, s3://…); default $QBENCH_HOME/dvc/remote for "
                                "qbench's own repository, your repository's default remote otherwise")

    p = sub.add_parser("version", help="export a result and version the artifact directory with DVC (push + hash)")
    p.add_argument("result_id", metavar="RESULT_ID", help="a stored result (see `qbench results`)")
    p.add_argument("--format", default="onnx", help="export format: onnx, tflite, coreml, mlx (default onnx)")
    p.add_argument("--dir", type=Path, metavar="DIR",
                   help="version this already exported directory instead of exporting the result")
    common(p, dvc=True)
    p.set_defaults(handler=cmd_version)

    p = sub.add_parser("versions", help="list the DVC versions stored with results")
    p.add_argument("result_id", metavar="RESULT_ID", nargs="?", help="only this result's versions")
    common(p)
    p.set_defaults(handler=cmd_versions)

    p = sub.add_parser("restore", help="restore a versioned export byte for byte (hash checked)")
    p.add_argument("ref", metavar="REF",
                   help="vN (a version, see `qbench versions`), an md5 prefix, or a result id (its newest version)")
    p.add_argument("--out", type=Path, metavar="DIR", help="also copy it here (a new or empty directory)")
    common(p, dvc=True)
    p.set_defaults(handler=cmd_restore)

    p = sub.add_parser("serve", help="serve an exported variant: /predict, /healthz, Prometheus /metrics")
    p.add_argument("target", metavar="RESULT_ID|MODEL@ALIAS",
                   help="a stored result, or a registered model's alias (MLflow registry, tag qbench.result_id)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1; setting serve_host)")
    p.add_argument("--port", type=int, help="port (default 8000; setting serve_port)")
    p.add_argument("--format", default="onnx", choices=FORMATS, help="exported format served (default onnx)")
    p.add_argument("--version", dest="version_ref", metavar="REF",
                   help="serve a DVC version (vN or md5 prefix) restored from its remote instead of a fresh export")
    p.add_argument("--refresh", action="store_true", help="export again even if an export exists")
    p.add_argument("--registry-uri", help="MLflow registry for MODEL@ALIAS (setting registry_uri)")
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on /predict, /info, /metrics "
                                   "(default: $QBENCH_SERVE_TOKEN; needed to bind beyond loopback)")
    p.add_argument("--no-auth", action="store_true", help="bind beyond loopback without a token (anyone who "
                                                          "reaches the port can run the model)")
    p.add_argument("--max-body-mb", type=float, metavar="MB", help="largest request body (default 8; larger: 413)")
    p.add_argument("--allow-nonfinite", action="store_true", help="accept NaN / Infinity inputs (default: 422)")
    p.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("monitor", help="watch a served model's /metrics: baseline, drift alerts, canary, "
                                       "re-optimization")
    p.add_argument("url", metavar="URL", help="the service (http://127.0.0.1:8000)")
    p.add_argument("--interval", type=float, metavar="S", help="seconds between scrapes (default 5)")
    p.add_argument("--min-requests", type=int, metavar="N", help="requests per judged window (default 50)")
    p.add_argument("--latency-ratio", type=float, metavar="X", help="alert past X × baseline latency (default 1.5)")
    p.add_argument("--error-rate", type=float, metavar="F", help="alert past baseline error rate + F (default 0.05)")
    p.add_argument("--polls", type=int, metavar="N", help="stop after N scrapes (default: until Ctrl-C)")
    p.add_argument("--until-alert", action="store_true", help="stop at the first alert")
    p.add_argument("--rebaseline", action="store_true", help="ignore a stored baseline: take a new one")
    p.add_argument("--canary", action="store_true",
                   help="also post the stored evaluation set and compare its agreement with the stored result")
    p.add_argument("--result", type=int, metavar="ID",
                   help="the served result (default: read from the service's model info)")
    p.add_argument("--start-sweep", action="store_true",
                   help="on an alert with no faster recipe measured, start the suggested sweep")
    common(p)
    p.set_defaults(handler=cmd_monitor)


# --- helpers ------------------------------------------------------------------------------------


def _config(args, **overrides: Any):
    from engines.ops.config import load_ops_config

    try:
        return load_ops_config(overrides)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _emit(args, data: Any, text: str) -> None:
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        print(text)


def _result_id(text: str, store) -> int:
    if not str(text).isdigit():
        raise UsageError(f"{text!r} is not a result id (a number; see `qbench results`)")
    from engines.store.ops_tables import get_result

    if get_result(store, int(text)) is None:
        raise UsageError(f"no result {text} in {store.path}; see `qbench results`")
    return int(text)


# --- version / versions / restore ---------------------------------------------------------------


def cmd_version(args) -> int:
    from engines.ops.serving import ServeError, ensure_export
    from engines.ops.versioning import VersionError, version_directory
    from engines.store.ops_tables import add_version, get_result, list_versions

    config = _config(args, dvc_repo=args.dvc_repo, dvc_remote=args.dvc_remote)
    store = open_store(args.db)
    result_id = _result_id(args.result_id, store)
    from engines.export import EXPORT_FORMATS

    if args.format not in EXPORT_FORMATS:
        raise UsageError(f"unknown format {args.format!r}; valid: {', '.join(EXPORT_FORMATS)}")
    if args.dir is not None and not args.dir.is_dir():
        raise UsageError(f"--dir {args.dir} is not a directory")
    try:
        source = args.dir or ensure_export(store.path, result_id, args.format, config.exports_path())
        version = version_directory(source, f"result-{result_id}/{args.format}", config.dvc_repo_path(),
                                    config.dvc_remote_url())
    except (VersionError, ServeError) as exc:
        print(f"qbench: version failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    version["format"] = args.format
    same = [v for v in list_versions(store, result_id)
            if v["md5"] == version["md5"] and v["format"] == args.format and v["repo"] == version["repo"]]
    if same:  # the same bytes in the same repository: that version already restores them
        _emit(args, same[0], f"unchanged: result {result_id}'s export is v{same[0]['id']} ({same[0]['md5']}), "
                             f"pushed again to {version['remote'] or 'its remote'}")
        return EXIT_OK
    row = add_version(store, result_id, version)
    result = get_result(store, result_id) or {}
    _emit(args, row, f"v{row['id']}  result {result_id} ({result.get('label')} · {result.get('runtime')}) "
                     f"{row['md5']}  {row['nfiles']} files, {row['size']} bytes  pushed to {row['remote'] or 'remote'}"
                     f"\nrestore with: qbench restore v{row['id']}")
    return EXIT_OK


def cmd_versions(args) -> int:
    from engines.store.ops_tables import list_versions

    store = open_store(args.db)
    result_id = _result_id(args.result_id, store) if args.result_id else None
    rows = list_versions(store, result_id)
    if args.json:
        _emit(args, rows, "")
        return EXIT_OK
    if not rows:
        print("no versions stored; `qbench version RESULT_ID` makes one")
    for r in rows:
        print(f"v{r['id']:<4} result {r['result_id']:<6} {r['format']:<6} {r['md5']}  {r['nfiles']} files  "
              f"{r['created_at']}  {r['repo']}")
    return EXIT_OK


def _find_version(store, ref: str) -> dict[str, Any]:
    from engines.store.ops_tables import find_version, list_versions

    if ref.isdigit():  # a result id: its newest version
        rows = list_versions(store, int(ref))
        if not rows:
            raise UsageError(f"result {ref} has no stored version; `qbench version {ref}` makes one")
        return rows[0]
    version = find_version(store, ref)
    if version is None:
        raise UsageError(f"no version {ref!r} (vN, an md5 prefix of 6+ characters, or a result id); "
                         "see `qbench versions`")
    return version


def cmd_restore(args) -> int:
    from engines.ops.versioning import VersionError, restore_version

    store = open_store(args.db)
    version = _find_version(store, args.ref)
    # The stored version names its repository and remote; the options point elsewhere (a moved repo).
    repo = Path(args.dvc_repo) if args.dvc_repo else None
    try:
        restored = restore_version(version, out=args.out, repo_root=repo, remote=args.dvc_remote)
    except VersionError as exc:
        print(f"qbench: restore failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    restored.update({"version": version["id"], "result_id": version["result_id"]})
    _emit(args, restored, f"restored v{version['id']} (result {version['result_id']}) to {restored['path']}: "
                          f"hash {restored['md5']} checked")
    return EXIT_OK


# --- serve --------------------------------------------------------------------------------------


def cmd_serve(args) -> int:
    import signal

    from engines.ops.serving import (
        ServeError,
        ensure_export,
        port_free,
        resolve_target,
        safety_env,
        start_service,
        stop_service,
        wait_ready,
    )
    from engines.ops.versioning import VersionError, restore_version

    config = _config(args, serve_host=args.host, serve_port=args.port, registry_uri=args.registry_uri)
    token = args.token or os.environ.get("QBENCH_SERVE_TOKEN") or None
    try:
        safety = safety_env(config.serve_host, token, args.no_auth, args.max_body_mb, args.allow_nonfinite)
    except ServeError as exc:
        raise UsageError(str(exc)) from None
    store = open_store(args.db)
    try:
        from engines.paths import settings_path
        from qbench_tui.settings import AppSettings

        app_uri = AppSettings.load(settings_path()).tracking_uri
        result_id = resolve_target(store, args.target, config.registry_tracking_uri(app_uri))
    except ServeError as exc:
        raise UsageError(str(exc)) from None
    if not port_free(config.serve_host, config.serve_port):
        raise UsageError(f"{config.serve_host}:{config.serve_port} is in use (or cannot be bound); choose --port")
    try:
        if args.version_ref:
            version = _find_version(store, args.version_ref)
            if version["result_id"] != result_id:
                raise UsageError(f"version v{version['id']} belongs to result {version['result_id']}, "
                                 f"not {result_id}")
            export_dir = Path(restore_version(version)["path"])
        else:
            export_dir = ensure_export(store.path, result_id, args.format, config.exports_path(),
                                       refresh=args.refresh)
        proc = start_service(export_dir, config.serve_host, config.serve_port, extra_env=safety)
    except (ServeError, VersionError) as exc:
        print(f"qbench: serve failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    url = f"http://{config.serve_host}:{config.serve_port}"
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop ends the service too
    try:
        wait_ready(url, proc)
        print(f"serving result {result_id} from {export_dir} at {url}  (/predict, /info, /healthz, /metrics)"
              + ("; requests need the bearer token" if token else ""), flush=True)
        print(f"watch it with: qbench monitor {url}   ·  Ctrl-C stops", flush=True)
        return EXIT_FAILED if proc.wait() else EXIT_OK
    except ServeError as exc:
        print(f"qbench: serve failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        stop_service(proc)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


# --- monitor ------------------------------------------------------------------------------------


def cmd_monitor(args) -> int:
    import time

    from engines.ops.monitor import MonitorError, Thresholds
    from engines.ops.session import MonitorSession

    config = _config(args, monitor_interval_s=args.interval, monitor_min_requests=args.min_requests,
                     monitor_latency_ratio=args.latency_ratio, monitor_error_rate=args.error_rate)
    if not args.url.startswith(("http://", "https://")):
        raise UsageError(f"{args.url!r} is not an http(s) URL (e.g. http://127.0.0.1:8000)")
    if args.polls is not None and args.polls < 1:
        raise UsageError("--polls must be at least 1")
    store = open_store(args.db)
    session = MonitorSession(args.url, store, Thresholds.from_config(config), result_id=args.result,
                             rebaseline=args.rebaseline)
    alerted = False
    try:
        start = session.start()
        served = start["result"]
        what = (f"result {session.result_id} ({served['model']} · {served.get('label')} · {served['runtime']} · "
                f"{served['device']})" if served else "an unknown result (no result_id in its model info)")
        _line(args, {"event": "start", **start},
              f"watching {session.url}: {what}; "
              + (f"stored baseline {_fmt_window(start['baseline'])}" if start["baseline"] else
                 f"baseline from the first {config.monitor_min_requests} requests"))
        if args.canary:
            alerted |= _canary(args, session, config)
            session.monitor.start()  # the canary's own requests are no client's: the window starts after them
        polls = 0
        while args.polls is None or polls < args.polls:
            time.sleep(config.monitor_interval_s)
            report = session.poll()
            polls += 1
            _line(args, {"event": "poll", **report}, _fmt_report(report, config))
            if report["alerts"]:
                alerted = True
                suggestion = report.get("suggestion")
                if suggestion:
                    _line(args, {"event": "suggestion", **suggestion}, suggestion["text"])
                    if args.start_sweep and not suggestion["better"]:
                        _start_sweep(args, suggestion)
                if args.until_alert:
                    break
    except MonitorError as exc:
        print(f"qbench: monitor: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if alerted else EXIT_OK


def _line(args, data: dict[str, Any], text: str) -> None:
    """One event: a JSON line with --json (a stream a script can follow), else text."""
    if args.json:
        sys.stdout.write(json.dumps(data, default=str) + "\n")
    else:
        print(text)
    sys.stdout.flush()


def _fmt_window(w: dict[str, Any] | None) -> str:
    if not w:
        return "–"
    mean, p95 = w.get("latency_mean_ms"), w.get("latency_p95_ms")
    return (f"{w.get('requests', 0)} req, mean {mean:.2f} ms" if mean is not None else f"{w.get('requests', 0)} req") + \
        (f", p95 {p95:.2f} ms" if p95 is not None else "") + f", errors {w.get('error_rate', 0.0):.1%}"


def _fmt_report(report: dict[str, Any], config) -> str:
    state = report["state"]
    text = f"[{state}] window {_fmt_window(report['window'])}"
    if state == "collecting":
        held = (report.get("window") or {}).get("requests") or 0
        text += f" (not judged yet: {held} of the {config.monitor_min_requests} requests a window needs)"
    elif state == "baseline":
        text = f"[baseline] recorded {_fmt_window(report['baseline'])}"
    for alert in report["alerts"]:
        text += f"\n  ALERT {alert['kind']}: {alert['message']}"
    return text


def _canary(args, session, config) -> bool:
    from engines.ops.canary import CanaryError, run_canary

    if session.result is None:
        _line(args, {"event": "canary", "skipped": "unknown result"},
              "canary skipped: the served result is unknown (give --result)")
        return False
    try:
        report = run_canary(session.url, session.result, rows=config.canary_rows, tolerance=config.canary_tolerance)
    except CanaryError as exc:
        _line(args, {"event": "canary", "error": str(exc)}, f"canary failed: {exc}")
        return True
    _line(args, {"event": "canary", **report}, report["text"])
    return bool(report["alert"])


def _start_sweep(args, suggestion: dict[str, Any]) -> None:
    import subprocess

    argv = [sys.executable, "-m", "qbench_tui", *suggestion["sweep"]["argv"]]
    if getattr(args, "db", None):
        argv += ["--db", str(args.db)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _line(args, {"event": "sweep-started", "pid": proc.pid, "argv": argv},
          f"started the sweep (pid {proc.pid}): {suggestion['sweep']['command']}")
