"""Tracking: every run and result logged to MLflow, without MLflow in the measuring or UI process.

How it fits the sweep: the store's sink (:class:`~engines.store.sinks.SqliteSink` with an
``outbox`` URI) queues each run start, result and run end in the store's ``tracking_outbox``, in
the same transaction as the row itself. When the run ends, :class:`DrainOnEndSink` starts the
sender (``python -m engines.tracking.sender``) in a process of its own, which imports MLflow
(1–3 s), logs what is queued and marks it sent. A tracking server that is down leaves the entries
queued with the reason; the next run, the app's start or ``qbench track --flush`` sends them.
Logging after the sweep, not during it, keeps the sender's CPU out of the timed rounds.

This module is light (no MLflow import): the CLI and the app use it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from engines.paths import qbench_home

OFF = "off"
URI_ENV = "MLFLOW_TRACKING_URI"


def default_uri() -> str:
    """The embedded store: a SQLite-backed MLflow store in the state directory."""
    return f"sqlite:///{qbench_home() / 'mlflow.db'}"


def resolve_uri(explicit: str | None = None, setting: str | None = None,
                environ: dict[str, str] | None = None) -> str | None:
    """The tracking URI in force, or None when tracking is off.

    A flag (``--mlflow-uri``) wins, then ``$MLFLOW_TRACKING_URI``, then the app's setting, then
    the embedded default. ``off`` (any case) at the first level that is set turns tracking off."""
    environ = os.environ if environ is None else environ
    for value in (explicit, environ.get(URI_ENV), setting):
        if value is not None and value.strip():
            value = value.strip()
            return None if value.lower() == OFF else value
    return default_uri()


def check_uri(uri: str) -> str:
    """``uri`` if qbench can log to it; ValueError with the reason otherwise (a usage error)."""
    if uri.lower() == OFF:
        return uri
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme in ("http", "https", "databricks", "file"):
        return uri
    if scheme.startswith(("sqlite", "postgresql", "mysql", "mssql")):
        return uri
    if not scheme and (uri.startswith("/") or uri.startswith(".")):
        return uri  # a local folder: MLflow's file store
    raise ValueError(f"not a tracking URI: {uri!r} (expected sqlite:///PATH, http(s)://HOST:PORT, a folder, "
                     "or 'off')")


def artifact_root(uri: str) -> str | None:
    """Where the experiments of a local store keep their artifacts: beside the store file (MLflow's
    own default is ``./mlruns`` in whatever folder the process started in). Servers decide themselves."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return None


def sinks_for(store: Any, uri: str | None, *, drain_on_end: bool = True) -> list[Any]:
    """The sinks of a sweep: the store (queuing for ``uri`` unless None) and, with ``drain_on_end``,
    one that starts the sender in the background when the run ends."""
    from engines.store.sinks import SqliteSink

    if uri is None:
        return [SqliteSink(store)]
    sinks: list[Any] = [SqliteSink(store, outbox=uri)]
    if drain_on_end:
        sinks.append(DrainOnEndSink(store.path))
    return sinks


class DrainOnEndSink:
    """Starts the sender when a run ends (finished, interrupted or failed): the queued logs go out
    then, in a detached process that outlives a CLI that returns at once."""

    name = "mlflow"

    def __init__(self, db_path: str | os.PathLike[str]):
        self.db_path = Path(db_path)
        self.sender: subprocess.Popen | None = None

    def run_started(self, run_id: str, model: str, request: dict[str, Any], environment: dict[str, Any],
                    source: str) -> None:
        pass

    def result_recorded(self, run_id: str, result: Any) -> None:
        pass

    def run_ended(self, run_id: str, status: str, message: str | None) -> None:
        self.sender = start_sender(self.db_path)


def sender_command(db_path: str | os.PathLike[str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "engines.tracking.sender", "--db", str(db_path), *extra]


def sender_log_path() -> Path:
    return qbench_home() / "tracking-sender.log"


def start_sender(db_path: str | os.PathLike[str]) -> subprocess.Popen:
    """The sender in the background, in a session of its own (a closed terminal does not end it);
    its output goes to ``$QBENCH_HOME/tracking-sender.log``."""
    log = open(sender_log_path(), "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(sender_command(db_path, "--background"), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log,
                                start_new_session=True, env=_child_env())
    finally:
        log.close()


def run_sender(db_path: str | os.PathLike[str], *extra: str, timeout: float = 600.0) -> dict[str, Any]:
    """Run the sender and wait: its JSON summary (``sent``, ``failed``, ``queue``, ``errors``)."""
    return run_child("engines.tracking.sender", ["--db", str(db_path), "--json", *extra], timeout)


def run_child(module: str, args: list[str], timeout: float = 600.0) -> dict[str, Any]:
    """``python -m module args`` whose last stdout line is a JSON object; ``{"error": …}`` on failure."""
    import json

    try:
        out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                             timeout=timeout, env=_child_env(), stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"{module} did not answer within {timeout:.0f} s"}
    lines = out.stdout.strip().splitlines()
    try:
        body = json.loads(lines[-1]) if lines else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"{module} ended with code {out.returncode}: {tail}"}
    return body


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # Child processes find this source tree even when it is not installed (a checkout, tests).
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env
