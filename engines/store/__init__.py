"""The result store: one SQLite file (through sqlite-utils), WAL mode, versioned schema.

Runs and results are written as each variant finishes, so a crash, Ctrl-C or a lost SSH
session never costs finished work. A file that is not a qbench database, or is corrupt, is
refused with a clear message and never written to.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported in Store.__init__: sqlite_utils pulls in numpy, slow for a CLI start
    import sqlite_utils

SCHEMA_VERSION = 1
APP_ID = "qbench"
SQLITE_MAGIC = b"SQLite format 3\x00"

RUN_STATUSES = ("running", "finished", "interrupted", "failed")
RESULT_STATUSES = ("ok", "failed", "unsupported")
LATENCY_KEYS = ("p50", "p90", "p99", "mean", "std", "iqr", "min", "max", "samples")
AGREEMENT_KEYS = ("top1", "sqnr_db", "cosine")


class StoreError(Exception):
    """The database cannot be used; the message says why and what to do."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _migration_1(db: sqlite_utils.Database) -> None:
    db["runs"].create(
        {
            "id": str, "created_at": str, "finished_at": str, "status": str, "model": str,
            "request": str, "environment": str, "pid": int, "host": str, "source": str, "message": str,
        },
        pk="id",
    )
    columns: dict[str, Any] = {
        "id": int, "run_id": str, "model": str, "method": str, "runtime": str, "device": str,
        "batch_size": int, "status": str, "error": str, "config": str,
    }
    columns.update({f"latency_{k}_ms" if k != "samples" else "latency_samples": float for k in LATENCY_KEYS})
    columns.update(
        {
            "throughput_per_s": float, "load_s": float, "quantize_s": float, "peak_rss_mb": float,
            "size_mb": float, "accuracy": float, "agreement_top1": float, "agreement_sqnr_db": float,
            "agreement_cosine": float, "metrics": str, "notes": str, "artifact": str,
            "runtime_info": str, "started_at": str, "finished_at": str,
        }
    )
    db["results"].create(columns, pk="id", foreign_keys=[("run_id", "runs", "id")])
    db["results"].create_index(["run_id", "method", "runtime", "device", "batch_size"], unique=True)
    db["results"].create_index(["model"])


# Each entry upgrades the schema by one version; never edit a released one, append a new one.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_migration_1]


class Store:
    """Runs and results. Safe to share between the UI thread and one worker thread."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path).expanduser()
        self._lock = threading.RLock()
        self._check_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            import sqlite_utils

            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self.db = sqlite_utils.Database(conn)
            self._open()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path} is corrupt or not a database ({exc}); qbench left it untouched. "
                "Move it away or choose another file with --db."
            ) from None

    # --- opening, checks and migrations ---------------------------------------------------

    def _check_file(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory, not a database file")
        with open(self.path, "rb") as fh:
            header = fh.read(16)
        if header != SQLITE_MAGIC:
            raise StoreError(
                f"{self.path} is not a SQLite database (corrupt, or some other file); qbench will not "
                "overwrite it. Move it away or choose another file with --db."
            )

    def _open(self) -> None:
        check = self.db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {check}")
        tables = set(self.db.table_names())
        if tables and "qbench_meta" not in tables:
            raise StoreError(
                f"{self.path} is a SQLite database but not a qbench database (tables: "
                f"{', '.join(sorted(tables)[:5])}); qbench left it untouched. Choose another file with --db."
            )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        with self._lock, self.db.conn:
            if not tables:
                self.db["qbench_meta"].create({"key": str, "value": str}, pk="key")
                self._set_meta("app", APP_ID)
                self._set_meta("schema_version", "0")
            version = int(self._get_meta("schema_version") or 0)
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} was written by a newer qbench (schema {version}, this one knows "
                    f"{SCHEMA_VERSION}); upgrade qbench to read it."
                )
            for index in range(version, SCHEMA_VERSION):
                MIGRATIONS[index](self.db)
                self._set_meta("schema_version", str(index + 1))
        self.reap_stale_runs()

    def _get_meta(self, key: str) -> str | None:
        rows = list(self.db["qbench_meta"].rows_where("key = ?", [key]))
        return rows[0]["value"] if rows else None

    def _set_meta(self, key: str, value: str) -> None:
        self.db["qbench_meta"].upsert({"key": key, "value": value}, pk="key")

    @property
    def schema_version(self) -> int:
        return int(self._get_meta("schema_version") or 0)

    def close(self) -> None:
        self.db.conn.close()

    # --- runs ---------------------------------------------------------------------------------

    def create_run(self, run_id: str, model: str, request: dict, environment: dict, source: str) -> None:
        with self._lock, self.db.conn:
            self.db["runs"].insert(
                {
                    "id": run_id, "created_at": now_iso(), "finished_at": None, "status": "running",
                    "model": model, "request": json.dumps(request), "environment": json.dumps(environment),
                    "pid": os.getpid(), "host": socket.gethostname(), "source": source, "message": None,
                }
            )

    def set_run_status(self, run_id: str, status: str, message: str | None = None) -> None:
        assert status in RUN_STATUSES, status
        finished = None if status == "running" else now_iso()
        with self._lock, self.db.conn:
            self.db["runs"].update(
                run_id, {"status": status, "finished_at": finished, "message": message, "pid": os.getpid()}
            )

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            rows = list(self.db["runs"].rows_where("id = ?", [run_id]))
        return _decode_run(rows[0]) if rows else None

    def list_runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.db["runs"].rows_where(order_by="created_at desc, id desc", limit=limit)
            return [_decode_run(r) for r in rows]

    def latest_run_id(self) -> str | None:
        runs = self.list_runs(limit=1)
        return runs[0]["id"] if runs else None

    def reap_stale_runs(self) -> int:
        """Runs left 'running' by a process that no longer exists become 'interrupted'."""
        import psutil

        host = socket.gethostname()
        stale = [
            r["id"] for r in self.db["runs"].rows_where("status = 'running'")
            if r["host"] == host and r["pid"] and not psutil.pid_exists(r["pid"])
        ]
        for run_id in stale:
            self.set_run_status(run_id, "interrupted", "the process running it ended unexpectedly")
        return len(stale)

    # --- results ------------------------------------------------------------------------------

    def add_result(self, run_id: str, result: dict[str, Any]) -> None:
        """Insert (or replace, on resume) one result, committed at once."""
        row = _flatten_result(run_id, result)
        with self._lock, self.db.conn:
            # A resumed run re-measures only missing rows, but a replaced row must not duplicate.
            self.db.execute(
                "DELETE FROM results WHERE run_id = ? AND method = ? AND runtime = ? "
                "AND device = ? AND batch_size = ?",
                [row["run_id"], row["method"], row["runtime"], row["device"], row["batch_size"]],
            )
            self.db["results"].insert(row)

    def results(
        self, run_id: str | None = None, where: str | None = None, params: Iterable[Any] = ()
    ) -> list[dict[str, Any]]:
        clauses, args = [], []
        if run_id is not None:
            clauses.append("run_id = ?")
            args.append(run_id)
        if where:
            clauses.append(f"({where})")
            args.extend(params)
        with self._lock:
            rows = self.db["results"].rows_where(" AND ".join(clauses) or None, args, order_by="id")
            return [_decode_result(r) for r in rows]

    def completed_keys(self, run_id: str) -> set[tuple[str, str, str, int]]:
        """(method, runtime, device, batch_size) already measured in a run, whatever the outcome."""
        return {(r["method"], r["runtime"], r["device"], r["batch_size"]) for r in self.results(run_id)}

    def history(self, model: str, method: str, runtime: str, device: str, batch_size: int) -> list[dict]:
        return self.results(
            where="model = ? AND method = ? AND runtime = ? AND device = ? AND batch_size = ? AND status = 'ok'",
            params=[model, method, runtime, device, batch_size],
        )


def _num(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _flatten_result(run_id: str, result: dict[str, Any]) -> dict[str, Any]:
    latency = result.get("latency_ms") or {}
    agreement = result.get("agreement") or {}
    row = {
        "run_id": run_id,
        **{k: result.get(k) for k in ("model", "method", "runtime", "device", "batch_size", "status", "error")},
        "config": json.dumps(result.get("config") or {}),
        "throughput_per_s": result.get("throughput_per_s"),
        "load_s": result.get("load_s"),
        "quantize_s": result.get("quantize_s"),
        "peak_rss_mb": result.get("peak_rss_mb"),
        "size_mb": result.get("size_mb"),
        "accuracy": result.get("accuracy"),
        "metrics": json.dumps(result.get("metrics") or {}, default=str),
        "notes": json.dumps(result.get("notes") or []),
        "artifact": result.get("artifact"),
        "runtime_info": json.dumps(result.get("runtime_info") or {}),
        "started_at": result.get("started_at"),
        "finished_at": result.get("finished_at") or now_iso(),
    }
    for key in LATENCY_KEYS:
        row["latency_samples" if key == "samples" else f"latency_{key}_ms"] = _num(latency.get(key))
    for key in AGREEMENT_KEYS:
        row[f"agreement_{key}"] = _num(agreement.get(key))
    return row


def _decode_run(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["request"] = json.loads(row["request"] or "{}")
    out["environment"] = json.loads(row["environment"] or "{}")
    return out


def _json_float(value: Any) -> Any:
    """Infinity is not JSON: an exact match (SQNR = inf) is reported as null."""
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return None
    return value


def _decode_result(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row in the public result shape (the CLI's --json, the TUI's detail view)."""
    latency = {k: row["latency_samples" if k == "samples" else f"latency_{k}_ms"] for k in LATENCY_KEYS}
    if latency["samples"] is not None:
        latency["samples"] = int(latency["samples"])
    return {
        "id": row["id"],
        "run_id": row["run_id"],
        "model": row["model"],
        "method": row["method"],
        "runtime": row["runtime"],
        "device": row["device"],
        "batch_size": row["batch_size"],
        "status": row["status"],
        "error": row["error"],
        "config": json.loads(row["config"] or "{}"),
        "latency_ms": latency if latency["p50"] is not None else None,
        "throughput_per_s": row["throughput_per_s"],
        "load_s": row["load_s"],
        "quantize_s": row["quantize_s"],
        "peak_rss_mb": row["peak_rss_mb"],
        "size_mb": row["size_mb"],
        "accuracy": row["accuracy"],
        "agreement": {k: row[f"agreement_{k}"] for k in AGREEMENT_KEYS}
        if row["agreement_top1"] is not None or row["agreement_cosine"] is not None else None,
        "metrics": json.loads(row["metrics"] or "{}"),
        "notes": json.loads(row["notes"] or "[]"),
        "artifact": row["artifact"],
        "runtime_info": json.loads(row["runtime_info"] or "{}"),
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
    }


def public_json(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results with non-finite floats turned into null, ready for ``json.dumps``."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return _json_float(value)

    return [clean(r) for r in results]
