"""The tracking outbox: what a tracking server (MLflow) still has to receive.

The store queues an entry in the same transaction that writes a run or a result (``enqueue``), so
whatever the store keeps, the outbox knows about: a crash, a lost SSH session or a tracking
server that is down never loses a log, it only delays it. The sender process
(:mod:`engines.tracking.sender`) reads the queue in order, marks each entry ``sent`` (or
``failed`` after repeated errors that are not about reaching the server) and leaves the rest
``queued`` for the next try. Plain SQL on the store's connection: nothing heavy is imported.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from engines.core.schema import now_iso

OUTBOX_KINDS = ("run_started", "result", "run_ended")
OUTBOX_STATES = ("queued", "sent", "failed")
MAX_ATTEMPTS = 3  # errors other than an unreachable server (a refused value): then 'failed', shown


def enqueue(conn: sqlite3.Connection, uri: str, kind: str, run_id: str, result_id: int | None = None) -> None:
    """Queue one entry; the caller's transaction commits it with the row it describes."""
    assert kind in OUTBOX_KINDS, kind
    conn.execute("INSERT INTO tracking_outbox (uri, kind, run_id, result_id, created_at, state, attempts) "
                 "VALUES (?, ?, ?, ?, ?, 'queued', 0)", [uri, kind, run_id, result_id, now_iso()])


def queued(conn: sqlite3.Connection, uri: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Queued entries in the order they were written (per URI when ``uri`` is given)."""
    sql = "SELECT * FROM tracking_outbox WHERE state = 'queued'"
    args: list[Any] = []
    if uri is not None:
        sql += " AND uri = ?"
        args.append(uri)
    sql += " ORDER BY id"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    cursor = conn.execute(sql, args)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def queue_summary(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Per tracking URI: results queued and failed, entries queued, and the last error seen."""
    try:
        rows = conn.execute(
            "SELECT uri, sum(state = 'queued' AND kind = 'result'), sum(state = 'queued'), "
            "sum(state = 'failed' AND kind = 'result'), "
            "(SELECT last_error FROM tracking_outbox o2 WHERE o2.uri = o.uri AND o2.last_error IS NOT NULL "
            " AND o2.state IN ('queued', 'failed') ORDER BY id DESC LIMIT 1) "
            "FROM tracking_outbox o WHERE state IN ('queued', 'failed') GROUP BY uri ORDER BY uri").fetchall()
    except sqlite3.OperationalError:  # a store opened read-only before its migration
        return []
    return [{"uri": uri, "results": int(results or 0), "entries": int(entries or 0), "failed": int(failed or 0),
             "last_error": error} for uri, results, entries, failed, error in rows]


def mark(conn: sqlite3.Connection, entry_id: int, state: str, *, error: str | None = None,
         mlflow_run_id: str | None = None, attempt: bool = False) -> None:
    assert state in OUTBOX_STATES, state
    with conn:
        conn.execute(
            "UPDATE tracking_outbox SET state = ?, last_error = ?, attempts = attempts + ?, "
            "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END, "
            "mlflow_run_id = COALESCE(?, mlflow_run_id) WHERE id = ?",
            [state, error, 1 if attempt else 0, state, now_iso(), mlflow_run_id, entry_id])


def note_unreachable(conn: sqlite3.Connection, uri: str, error: str) -> None:
    """Every queued entry of ``uri`` remembers why it is still queued (the app and CLI show it)."""
    with conn:
        conn.execute("UPDATE tracking_outbox SET last_error = ? WHERE uri = ? AND state = 'queued'", [error, uri])


def requeue_failed(conn: sqlite3.Connection, uri: str | None = None) -> int:
    """Failed entries go back in the queue (``qbench track --flush --retry-failed``)."""
    with conn:
        cursor = conn.execute(
            "UPDATE tracking_outbox SET state = 'queued', attempts = 0 WHERE state = 'failed'"
            + (" AND uri = ?" if uri else ""), [uri] if uri else [])
    return cursor.rowcount


def result_entry(conn: sqlite3.Connection, uri: str, result_id: int) -> dict[str, Any] | None:
    """The outbox entry of one result for ``uri``: the sent one first, else the newest."""
    cursor = conn.execute(
        "SELECT id, state, mlflow_run_id, last_error FROM tracking_outbox WHERE uri = ? AND kind = 'result' "
        "AND result_id = ? ORDER BY (state = 'sent') DESC, id DESC LIMIT 1", [uri, result_id])
    row = cursor.fetchone()
    return dict(zip([d[0] for d in cursor.description], row, strict=True)) if row else None


def mlflow_run_of(conn: sqlite3.Connection, uri: str, run_id: str) -> str | None:
    """The MLflow run a qbench run was logged as on ``uri``, or None."""
    row = conn.execute("SELECT mlflow_run_id FROM tracking_runs WHERE uri = ? AND run_id = ?",
                       [uri, run_id]).fetchone()
    return row[0] if row else None


def remember_mlflow_run(conn: sqlite3.Connection, uri: str, run_id: str, experiment_id: str,
                        mlflow_run_id: str) -> None:
    """Map a qbench run to its MLflow run on ``uri`` (committed now: a drain cut short reuses it)."""
    with conn:
        conn.execute("INSERT OR REPLACE INTO tracking_runs VALUES (?, ?, ?, ?, ?)",
                     [uri, run_id, experiment_id, mlflow_run_id, now_iso()])
