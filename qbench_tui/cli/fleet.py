"""``qbench scheduler | worker | hosts``: a fleet of machines measuring one sweep (Dask distributed).

``qbench run --cluster ADDRESS [--hosts a,b|all]`` sends a sweep to the fleet (qbench_tui/cli/run.py
hands it to :class:`engines.fleet.runner.FleetRunner`). The top level stays light: argparse only.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from qbench_tui.cli.common import EXIT_OK, UsageError, open_store


def _tls_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-ca", default=os.environ.get("QBENCH_TLS_CA"), metavar="FILE",
                   help="CA certificate (TLS; default $QBENCH_TLS_CA)")
    p.add_argument("--tls-cert", default=os.environ.get("QBENCH_TLS_CERT"), metavar="FILE",
                   help="this machine's certificate (default $QBENCH_TLS_CERT)")
    p.add_argument("--tls-key", default=os.environ.get("QBENCH_TLS_KEY"), metavar="FILE",
                   help="its private key (default $QBENCH_TLS_KEY)")


def add_parsers(sub) -> None:
    p = sub.add_parser("scheduler", help="start a fleet scheduler (Dask) that workers and `run --cluster` join")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: loopback; anything else needs TLS)")
    p.add_argument("--port", type=int, default=8786, help="default 8786 (0: any free port)")
    p.add_argument("--insecure", action="store_true",
                   help="listen beyond loopback without TLS (only on a network you trust)")
    _tls_options(p)
    p.set_defaults(handler=cmd_scheduler)

    p = sub.add_parser("worker", help="join a fleet: measure the variants sent to this machine, one at a time")
    p.add_argument("--scheduler", required=True, metavar="tcp://HOST:PORT", help="the scheduler's address")
    p.add_argument("--name", help="this host's name in the fleet (default: the machine's hostname)")
    p.add_argument("--launch-agent", action="store_true",
                   help="print a launchd agent (plist) that runs this worker at login and keeps it up, and exit "
                        "(docs/fleet.md)")
    _tls_options(p)
    p.set_defaults(handler=cmd_worker)

    p = sub.add_parser("hosts", help="the fleet's hosts: facts, what each measures now, its queue")
    p.add_argument("--cluster", metavar="tcp://HOST:PORT",
                   help="ask the scheduler for the workers connected now (default: the store's record)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")
    _tls_options(p)
    p.set_defaults(handler=cmd_hosts)


def _security(args):
    from engines.fleet import FleetError, security

    try:
        return security(args.tls_ca, args.tls_cert, args.tls_key)
    except FleetError as exc:
        raise UsageError(str(exc)) from None


def check_address(address: str) -> str:
    if "://" not in address or address.rsplit(":", 1)[-1].isdigit() is False:
        raise UsageError(f"expected a scheduler address like tcp://127.0.0.1:8786, got {address!r}")
    return address


def cmd_scheduler(args) -> int:
    from engines.fleet import FleetError
    from engines.fleet.scheduler import run_scheduler

    if not 0 <= args.port < 65536:
        raise UsageError(f"--port must be 0..65535, got {args.port}")
    try:
        return run_scheduler(args.host, args.port, _security(args), args.insecure)
    except FleetError as exc:
        raise UsageError(str(exc)) from None


def cmd_worker(args) -> int:
    from engines.fleet import default_host_name
    from engines.fleet.worker import run_worker

    name = args.name or default_host_name()
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UsageError(f"--name may hold letters, digits, '-', '_' and '.', got {name!r}")
    if args.launch_agent:
        return _print_launch_agent(args, name)
    return run_worker(check_address(args.scheduler), name, _security(args))


def _print_launch_agent(args, name: str) -> int:
    """This worker's command line as a launchd agent: absolute paths (launchd has no shell)."""
    import sys

    from engines.fleet.launchd import launch_agent

    exe = Path(sys.executable).with_name("qbench")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "qbench_tui"]
    argv += ["worker", "--scheduler", args.scheduler, "--name", name]
    for flag, value in (("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if value:
            argv += [flag, str(Path(value).expanduser().resolve())]
    sys.stdout.write(launch_agent(argv).decode())
    return EXIT_OK


def cmd_hosts(args) -> int:
    from rich.console import Console
    from rich.table import Table

    if args.cluster:
        from engines.fleet import FleetError
        from engines.fleet.runner import FleetRunner

        try:
            runner = FleetRunner(open_store(getattr(args, "db", None)), check_address(args.cluster),
                                 security=_security(args))
            client = runner._connect()
        except FleetError as exc:
            raise UsageError(str(exc)) from None
        try:
            live = FleetRunner.live_hosts(client)
        finally:
            client.close()
        hosts = [{"name": n, "address": h["address"], "facts": h["facts"], "state": "connected", "activity": "",
                  "queue": [], "run_id": None, "seen_at": None} for n, h in sorted(live.items())]
    else:
        hosts = open_store(getattr(args, "db", None)).hosts()
    if args.json:
        print(json.dumps(hosts, indent=2, default=str))
        return 0
    table = Table(title="fleet hosts")
    for column in ("host", "state", "chip", "memory", "os", "qbench", "now", "queue", "seen"):
        table.add_column(column)
    from qbench_tui.fleet_view import host_row

    for h in hosts:
        table.add_row(*host_row(h))
    Console().print(table)
    return 0


def fleet_runner(args, store, progress):
    """``run --cluster``'s runner (a resumed fleet run's too), or None for the single-machine one."""
    from engines.fleet.runner import FleetRunner, fleet_of_run, parse_hosts

    fleet = fleet_of_run(store.get_run(args.resume)) if args.resume else None
    if (args.hosts or args.fetch_artifacts) and not args.cluster and not fleet:
        raise UsageError("--hosts and --fetch-artifacts need --cluster tcp://HOST:PORT (the fleet's scheduler)")
    if not args.cluster and not fleet:
        return None
    cluster = args.cluster or fleet["scheduler"]
    return FleetRunner(store, check_address(cluster), parse_hosts(args.hosts), progress, source="cli",
                       security=_security_env(), fetch_artifacts=args.fetch_artifacts)


def _security_env():
    from engines.fleet import FleetError, security_from_env

    try:
        return security_from_env()
    except FleetError as exc:
        raise UsageError(str(exc)) from None
