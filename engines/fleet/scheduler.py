"""``qbench scheduler``: a Dask scheduler for the fleet, on loopback unless told otherwise.

It is an ordinary ``distributed.Scheduler`` (no dashboard: it would pull in bokeh) with one extra
handler, ``qbench_version``, that a starting worker asks before it joins, so a machine with
another qbench is refused with both versions named. Listening on anything but loopback needs TLS
(Dask's ``Security``): a scheduler on the network runs the tasks of whoever can reach it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

from engines.fleet import FleetError, announced_version, default_host_name, is_loopback


def qbench_identity(**_: Any) -> dict[str, Any]:
    """What the scheduler says about itself to a joining worker."""
    return {"qbench": announced_version(), "host": default_host_name()}


async def serve_scheduler(host: str = "127.0.0.1", port: int = 8786, security: Any = None,
                          insecure: bool = False, on_ready: Callable[[str], None] | None = None) -> None:
    """Run a scheduler until it is closed (Ctrl-C, SIGTERM)."""
    if not is_loopback(host) and security is None and not insecure:
        raise FleetError(f"the scheduler would listen on {host} without TLS: give --tls-ca, --tls-cert and "
                         "--tls-key (or --insecure on a network you trust); loopback needs neither")
    from distributed import Scheduler

    scheduler = Scheduler(host=host, port=port, security=security, protocol="tls" if security else "tcp",
                          dashboard=False, dashboard_address=None)
    scheduler.handlers["qbench_version"] = qbench_identity
    async with scheduler:
        if on_ready is not None:
            on_ready(scheduler.address)
        await scheduler.finished()


def run_scheduler(host: str, port: int, security: Any = None, insecure: bool = False) -> int:
    def ready(address: str) -> None:
        print(f"qbench scheduler listening at {address} (qbench {announced_version()})", flush=True)

    try:
        asyncio.run(serve_scheduler(host, port, security, insecure, ready))
    except KeyboardInterrupt:
        print("qbench scheduler stopped", file=sys.stderr)
    return 0
