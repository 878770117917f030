"""Result sinks: where the runner hands runs and finished results.

The runner knows nothing of SQLite or MLflow: it calls each sink in turn. The SQLite store is
the first sink (and the one a run is resumed from); a sink that fails must not lose the result
for the others, so the runner reports a sink's error as a note and carries on.
"""

from __future__ import annotations

from typing import Any, Protocol

from engines.core.schema import Result


class ResultSink(Protocol):
    name: str

    def run_started(self, run_id: str, model: str, request: dict[str, Any], environment: dict[str, Any],
                    source: str) -> None: ...

    def result_recorded(self, run_id: str, result: Result) -> None: ...

    def run_ended(self, run_id: str, status: str, message: str | None) -> None: ...


class SqliteSink:
    """Writes to the qbench store, committing each result as it arrives.

    ``outbox``: a tracking URI (MLflow). Each run start, result and run end is then also queued
    for it in the same transaction, and sent later by another process (``engines.tracking``)."""

    name = "sqlite"

    def __init__(self, store: Any, outbox: str | None = None):  # engines.store.Store
        self.store = store
        self.outbox = outbox

    def run_started(self, run_id: str, model: str, request: dict[str, Any], environment: dict[str, Any],
                    source: str) -> None:
        if self.store.get_run(run_id) is None:
            self.store.create_run(run_id, model, request, environment, source, outbox=self.outbox)
        else:  # a resumed run
            self.store.set_run_status(run_id, "running", outbox=self.outbox)

    def result_recorded(self, run_id: str, result: Result) -> None:
        result.id = self.store.add_result(run_id, result, outbox=self.outbox)

    def run_ended(self, run_id: str, status: str, message: str | None) -> None:
        self.store.set_run_status(run_id, status, message, outbox=self.outbox)
