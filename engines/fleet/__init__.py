"""A fleet of machines: one sweep measured on several hosts through Dask distributed.

The pieces (each in its own module; this one stays light — no Dask import):

- ``scheduler.py``: ``qbench scheduler`` — a Dask scheduler on loopback by default (TLS when it
  listens elsewhere) that also answers which qbench it runs, so a worker of another version is
  refused before it joins.
- ``worker.py``: ``qbench worker`` — a Dask worker with one thread and one resource named after
  its host (``qbench-host-NAME``), so each variant sent to that host runs there, one at a time;
  it announces its facts (chip, memory, OS, versions, devices) and runs only qbench's own tasks.
- ``tasks.py``: what runs on a worker: one variant through the ordinary
  :class:`~engines.bench.runner.SweepRunner` (child process, the machine's measurement lock,
  timing rounds) into a scratch store; the results travel back as small JSON.
- ``runner.py``: :class:`FleetRunner` — the process that owns the store sends each variant to
  each chosen host, writes every result itself (one writer), tags it with its host, records a
  lost host's in-flight variant as ``interrupted`` and resumes only what is missing.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

from engines import __version__

RESOURCE_PREFIX = "qbench-host-"
FACTS_TOPIC = "qbench-hosts"  # each worker's facts, logged once at start (kept by the scheduler)
PROGRESS_TOPIC = "qbench-progress"  # what each worker measures now
FAKE_VERSION_ENV = "QBENCH_FLEET_FAKE_VERSION"  # tests only: the version a worker announces


class FleetError(Exception):
    """The fleet cannot do what was asked (no scheduler, unknown host, version mismatch): one line."""


def announced_version() -> str:
    """The qbench version this process announces to the fleet (a test may fake it)."""
    return os.environ.get(FAKE_VERSION_ENV) or __version__


def host_resource(name: str) -> str:
    """The Dask resource that pins a task to the worker named ``name``."""
    return RESOURCE_PREFIX + name


def default_host_name() -> str:
    return socket.gethostname()


def version_mismatch(worker: str, worker_version: str, other: str, other_version: str) -> str | None:
    """The refusal message when two sides of the fleet run different qbench versions, else None."""
    if worker_version == other_version:
        return None
    return (f"refused: worker {worker} runs qbench {worker_version} but {other} runs qbench "
            f"{other_version}; install the same qbench on every machine of the fleet")


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_facts(name: str, threads: int | None = None) -> dict[str, Any]:
    """What a worker announces: its name, chip, memory, OS, devices and versions."""
    from engines.core.environment import collect_environment
    from engines.devices import physical_cores

    facts = collect_environment(threads or physical_cores())
    facts["qbench"] = announced_version()
    facts["name"] = name
    facts["hostname"] = socket.gethostname()
    facts["pid"] = os.getpid()
    return facts


def security(ca: str | None, cert: str | None, key: str | None) -> Any:
    """Dask's TLS settings from one CA and one certificate/key used by every role (None: plain TCP)."""
    if not (ca or cert or key):
        return None
    if not (ca and cert and key):
        raise FleetError("TLS needs all three of --tls-ca, --tls-cert and --tls-key")
    for path in (ca, cert, key):
        if not os.path.isfile(path):
            raise FleetError(f"TLS file not found: {path}")
    from distributed.security import Security

    return Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, tls_scheduler_cert=cert,
                    tls_scheduler_key=key, tls_worker_cert=cert, tls_worker_key=key, require_encryption=True)


def security_from_env() -> Any:
    """TLS from ``QBENCH_TLS_CA`` / ``QBENCH_TLS_CERT`` / ``QBENCH_TLS_KEY`` (the app's sweeps, scripts)."""
    return security(os.environ.get("QBENCH_TLS_CA"), os.environ.get("QBENCH_TLS_CERT"),
                    os.environ.get("QBENCH_TLS_KEY"))
