"""The app's side of MLflow tracking, without MLflow in the app's process.

The sweep's sinks queue every run and result in the store's outbox (same transaction as the
row); this controller sends the queue by running the sender as a child process
(``python -m engines.tracking.sender``) after each sweep and at start-up, and runs the registry's
commands as children too (``python -m engines.tracking register|registry``). Each call blocks:
the screen runs them in thread workers and turns their answers into messages.
"""

from __future__ import annotations

from typing import Any

from qbench_tui.settings import AppSettings


class TrackingController:
    def __init__(self, settings: AppSettings):
        self.settings = settings

    @property
    def uri(self) -> str | None:
        """The tracking URI in force (None: off): $MLFLOW_TRACKING_URI, the setting, the embedded store."""
        from engines.tracking import resolve_uri

        return resolve_uri(None, self.settings.tracking_uri)

    def set_uri(self, value: str) -> str | None:
        """Remember a new URI ('' for the default, 'off'); ValueError when it is not one."""
        from engines.tracking import check_uri

        value = value.strip()
        if value:
            check_uri(value)
        self.settings.tracking_uri = value
        self.settings.save()
        return self.uri

    def sinks(self, store: Any) -> list[Any]:
        """The sweep's sinks (called in the sweep's worker): the store, queuing for the URI in force.
        The app drains the queue itself after the sweep, so none starts a sender."""
        from engines.tracking import sinks_for

        return sinks_for(store, self.uri, drain_on_end=False)

    @staticmethod
    def queue(store: Any) -> list[dict[str, Any]]:
        return store.tracking_queue() if store is not None else []

    def drain(self, store: Any) -> dict[str, Any]:
        """Send what is queued (blocking: a thread worker). The sender's summary, or ``{"error": …}``."""
        from engines.tracking import run_sender

        if store is None or not self.queue(store):
            return {"sent": 0, "errors": {}, "queue": []}
        return run_sender(store.path)

    def register(self, store: Any, result_id: int, name: str | None, alias: str | None) -> dict[str, Any]:
        from engines.tracking import run_child

        uri = self.uri
        if uri is None:
            return {"error": "tracking is off: set an MLflow URI first (ctrl+p → MLflow tracking URI)"}
        args = ["register", str(result_id), "--db", str(store.path), "--uri", uri]
        args += ["--name", name] if name else []
        args += ["--alias", alias] if alias else []
        return run_child("engines.tracking", args)

    def registry(self) -> dict[str, Any]:
        from engines.tracking import run_child

        uri = self.uri
        if uri is None:
            return {"error": "tracking is off: set an MLflow URI first (ctrl+p → MLflow tracking URI)"}
        return {**run_child("engines.tracking", ["registry", "--uri", uri]), "uri": uri}


def queue_text(queue: list[dict[str, Any]]) -> str | None:
    """The status bar's line: ``3 results queued for MLflow (http://… unreachable)``; None when empty."""
    results = sum(q["results"] for q in queue)
    failed = sum(q["failed"] for q in queue)
    if not results and not failed:
        return None
    parts = []
    if results:
        reason = next((q["last_error"] for q in queue if q["results"] and q["last_error"]), None)
        why = " (URI unreachable)" if reason and "unreachable" in reason else (" (sending…)" if not reason else
                                                                             " (retrying)")
        parts.append(f"{results} result{'s' if results != 1 else ''} queued for MLflow{why}")
    if failed:
        parts.append(f"{failed} refused by MLflow")
    return " · ".join(parts)
