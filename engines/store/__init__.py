"""The result store: one SQLite file (through sqlite-utils), WAL mode, versioned schema.

Runs and results are written as each variant finishes, so a crash, Ctrl-C or a lost SSH
session never costs finished work. A file that is not a qbench database, or is corrupt, is
refused with a clear message and never written to.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engines.analysis.rules import pareto
from engines.core.schema import Result, now_iso, public_json, variant_key  # noqa: F401 - re-exported
from engines.store.migrations import MIGRATIONS, SCHEMA_VERSION, legacy_recipe
from engines.store.opening import connect, describe, import_sqlite_utils
from engines.store.outbox import enqueue, queue_summary
from engines.store.planner import refresh_stats
from engines.store.query import DISTINCT_COLUMNS, MEASURED, QUALITY, REFERENCES, ResultQuery
from engines.store.query import frontier_sql, merge_pages, newest_page_sql, reference_sql, select_sql

APP_ID = "qbench"
SQLITE_MAGIC = b"SQLite format 3\x00"

RUN_STATUSES = ("running", "finished", "interrupted", "failed")
BRIEF_RUN_COLUMNS = ("id", "created_at", "finished_at", "status", "model", "pid", "host", "source", "message")


class StoreError(Exception):
    """The database cannot be used; the message says why and what to do."""


class Store:
    """Runs and results. Safe to share between the UI thread and one worker thread."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path).expanduser()
        self._lock = threading.RLock()
        self._check_file()
        self._db: Any = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn, self.read_only = connect(self.path)
            self._open()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StoreError(describe(self.path, exc)) from None

    @property
    def db(self) -> Any:
        """The connection through sqlite-utils, for writes and migrations. Imported on first use:
        sqlite-utils imports numpy (0.8 s, 2 s on a loaded machine), and reading never needs it,
        so the app shows its history without waiting for it."""
        if self._db is None:
            self._db = import_sqlite_utils().Database(self.conn)
        return self._db

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
        check = self.conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {check}")
        if self.read_only:
            self._check_tables(self._tables())
            self._check_version(upgrade=False)
            return
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        # Creation and migrations are one transaction: a second process opening the same new file
        # waits here (busy timeout) and then finds the schema the first one wrote.
        with self._lock, self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            tables = self._tables()
            self._check_tables(tables)
            if not tables:
                self.conn.execute("CREATE TABLE [qbench_meta] ([key] TEXT PRIMARY KEY, [value] TEXT)")
                self._set_meta("app", APP_ID)
                self._set_meta("schema_version", "0")
            version = self._check_version(upgrade=True)
            for index in range(version, SCHEMA_VERSION):
                MIGRATIONS[index](self.db)
                self._set_meta("schema_version", str(index + 1))
        self.refresh_stats()
        self.reap_stale_runs()

    def refresh_stats(self) -> bool:
        """The planner's statistics, gathered if missing or stale (:mod:`engines.store.planner`)."""
        with self._lock:
            return refresh_stats(self.conn)

    def _tables(self) -> set[str]:
        return {name for (name,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _check_tables(self, tables: set[str]) -> None:
        if tables and "qbench_meta" not in tables:
            raise StoreError(
                f"{self.path} is a SQLite database but not a qbench database (tables: "
                f"{', '.join(sorted(tables)[:5])}); qbench left it untouched. Choose another file with --db."
            )

    def _check_version(self, upgrade: bool) -> int:
        version = int(self._get_meta("schema_version") or 0)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer qbench (schema {version}, this one knows "
                f"{SCHEMA_VERSION}); upgrade qbench to read it."
            )
        if version < SCHEMA_VERSION and not upgrade:
            raise StoreError(f"{self.path} needs an upgrade (schema {version} to {SCHEMA_VERSION}) but is read-only "
                             "here: open it once where it can be written")
        return version

    def require_writable(self) -> None:
        """Refuse a write to a store opened read-only, saying why."""
        if self.read_only:
            raise StoreError(describe(self.path, sqlite3.OperationalError("attempt to write a readonly database")))

    def _get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM qbench_meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO qbench_meta (key, value) VALUES (?, ?)", [key, value])

    @property
    def schema_version(self) -> int:
        return int(self._get_meta("schema_version") or 0)

    def reading(self) -> threading.RLock:
        """Held by a thread that reads while another may close the store (the app's start-up and
        background reads): closing waits for it, and a read after the close raises
        ``sqlite3.ProgrammingError`` instead of crashing the process inside SQLite."""
        return self._lock

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # --- runs ---------------------------------------------------------------------------------

    def create_run(self, run_id: str, model: str, request: dict, environment: dict, source: str,
                   outbox: str | None = None) -> None:
        """``outbox``: a tracking URI to queue the run's start for, in the same transaction."""
        self.require_writable()
        with self._lock, self.db.conn:
            self.db["runs"].insert(
                {
                    "id": run_id, "created_at": now_iso(), "finished_at": None, "status": "running",
                    "model": model, "request": json.dumps(request), "environment": json.dumps(environment),
                    "pid": os.getpid(), "host": socket.gethostname(), "source": source, "message": None,
                }
            )
            if outbox:
                enqueue(self.conn, outbox, "run_started", run_id)

    def set_run_status(self, run_id: str, status: str, message: str | None = None,
                       outbox: str | None = None) -> None:
        assert status in RUN_STATUSES, status
        finished = None if status == "running" else now_iso()
        with self._lock, self.db.conn:
            self.db["runs"].update(
                run_id, {"status": status, "finished_at": finished, "message": message, "pid": os.getpid()}
            )
            if outbox:
                enqueue(self.conn, outbox, "run_started" if status == "running" else "run_ended", run_id)

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            rows = self._dicts("SELECT * FROM runs WHERE id = ?", [run_id])
        return _decode_run(rows[0]) if rows else None

    def list_runs(self, limit: int | None = None, since: str | None = None, model: str | None = None,
                  status: str | None = None, with_counts: bool = False, brief: bool = False) -> list[dict[str, Any]]:
        """Runs, newest first; ``since`` (ISO time) keeps those created at or after it.
        ``with_counts`` adds ``results``: how many results each run stored (one grouped query).
        ``brief``: without request and environment (decoding them is most of the time at 1,000 runs)."""
        clauses, args = [], []
        for column, value in (("created_at >= ?", since), ("model = ?", model), ("status = ?", status)):
            if value is not None:
                clauses.append(column)
                args.append(value)
        where = " AND ".join(clauses) or "1"
        columns = ", ".join(BRIEF_RUN_COLUMNS) if brief else "*"
        sql = f"SELECT {columns} FROM runs WHERE {where} ORDER BY created_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            runs = self._dicts(sql, args) if brief else [_decode_run(r) for r in self._dicts(sql, args)]
            if with_counts and runs:
                counts = self._run_counts([r["id"] for r in runs])
                for r in runs:
                    r["results"] = counts.get(r["id"], 0)
        return runs

    def _run_counts(self, run_ids: list[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for chunk in _chunks(run_ids):
            marks = ",".join("?" * len(chunk))
            counts.update(self.conn.execute(
                f"SELECT run_id, count(*) FROM results WHERE run_id IN ({marks}) GROUP BY run_id", chunk).fetchall())
        return counts

    def latest_run_id(self, include_exports: bool = False) -> str | None:
        """The newest sweep's run (``latest`` on the command line). An export's validation is stored
        as a run of its own (source ``export``): it is never the latest unless asked for."""
        sql = "SELECT id FROM runs" + ("" if include_exports else " WHERE source IS NOT 'export'")
        with self._lock:
            row = self.conn.execute(sql + " ORDER BY created_at DESC, id DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def reap_stale_runs(self) -> int:
        """Runs left 'running' by a process that no longer exists become 'interrupted'."""
        import psutil

        host = socket.gethostname()
        stale = [
            r["id"] for r in self._dicts("SELECT id, host, pid FROM runs WHERE status = 'running'", [])
            if r["host"] == host and r["pid"] and not psutil.pid_exists(r["pid"])
        ]
        for run_id in stale:
            self.set_run_status(run_id, "interrupted", "the process running it ended unexpectedly")
            # Its tracking servers hear of the end too (their run would otherwise stay RUNNING).
            uris = self.conn.execute("SELECT DISTINCT uri FROM tracking_outbox WHERE run_id = ?", [run_id]).fetchall()
            with self._lock, self.conn:
                for (uri,) in uris:
                    enqueue(self.conn, uri, "run_ended", run_id)
        return len(stale)

    # --- results ------------------------------------------------------------------------------

    def add_result(self, run_id: str, result: Result | dict[str, Any], outbox: str | None = None) -> int:
        """Insert (or replace, on resume) one result, committed at once; returns its row id.
        ``outbox``: a tracking URI to queue the result for, in the same transaction."""
        if isinstance(result, dict):
            result = Result.from_dict(result)
        if not result.recipe_id:  # a caller that names the method only (the legacy shape)
            result.recipe_id, result.label, steps = legacy_recipe(result.method, json.dumps(result.config))
            result.recipe = json.loads(steps)
        row = {**result.to_row(), "run_id": run_id}
        with self._lock, self.db.conn:
            # A resumed run re-measures only missing rows, but a replaced row must not duplicate.
            self.db.execute(
                "DELETE FROM results WHERE run_id = ? AND recipe_id = ? AND runtime = ? "
                "AND device = ? AND batch_size = ? AND host IS ?",
                [run_id, row["recipe_id"], row["runtime"], row["device"], row["batch_size"], row["host"]],
            )
            row_id = self.db["results"].insert(row).last_pk
            if outbox:
                enqueue(self.conn, outbox, "result", run_id, row_id)
        return row_id

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
            rows = self._dicts(f"SELECT * FROM results WHERE {' AND '.join(clauses) or '1'} ORDER BY id", args)
            return [Result.from_row(r).to_dict() for r in rows]

    # --- queries: SQLite filters, sorts and pages (months of history are never read whole) ----

    def query_results(self, query: ResultQuery | None = None, limit: int | None = None,
                      offset: int = 0) -> list[dict[str, Any]]:
        """The results ``query`` keeps, in its order, ``limit`` of them from ``offset``."""
        # Sorting ids, then reading the page's rows, keeps SQLite's sorter small (whole rows
        # carry JSON columns: 200 ms instead of 35 ms for the newest-first page at 20,000).
        query = query or ResultQuery()  # all, newest first (the app's first view): the runs' time index
        if query.sort == "when" and query.where()[0] == "1" and limit is not None:
            with self._lock:
                parts = [self.conn.execute(sql, args).fetchall() for sql, args in newest_page_sql(query, offset + limit)]
                return self._rows_by_id(merge_pages(parts, query.reverse)[offset:offset + limit])
        sql, args = select_sql(query, columns="r.id", limit=limit, offset=offset)
        with self._lock:
            return self._rows_by_id([row_id for (row_id,) in self.conn.execute(sql, args).fetchall()])

    def _rows_by_id(self, ids: list[int]) -> list[dict[str, Any]]:
        """These results, decoded, in the order of ``ids``."""
        rows: dict[int, dict[str, Any]] = {}
        with self._lock:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                rows.update((row["id"], row) for row in self._dicts(f"SELECT * FROM results WHERE id IN ({marks})",
                                                                    chunk))
        return [Result.from_row(rows[i]).to_dict() for i in ids]

    def count_results(self, query: ResultQuery | None = None) -> dict[str, int]:
        """How many results ``query`` keeps, per status (``ok``, ``failed``, ``unsupported``)."""
        where, args = (query or ResultQuery()).where()
        with self._lock:
            rows = self.conn.execute(f"SELECT r.status, count(*) FROM results r WHERE {where} GROUP BY r.status",
                                   args).fetchall()
        return dict(rows)

    def distinct_values(self, column: str) -> list[str]:
        """Every value of a filterable column, sorted (read from its index)."""
        if column not in DISTINCT_COLUMNS:
            raise ValueError(f"not a filterable column: {column!r}")
        expr = "COALESCE(NULLIF(label, ''), method)" if column == "label" else column
        with self._lock:
            rows = self.conn.execute(f"SELECT DISTINCT {expr} FROM results WHERE {expr} IS NOT NULL").fetchall()
        return sorted(str(v) for (v,) in rows)

    def frontier_ids(self, query: ResultQuery | None = None, x: str = "p50") -> set[int]:
        """Row ids of the Pareto frontier of each model (lower p50 or size, higher quality:
        :func:`engines.analysis.rules.quality`) among the ok, measured results ``query`` keeps."""
        sql, args = frontier_sql(query or ResultQuery(), x)
        with self._lock:
            rows = self.conn.execute(sql, args).fetchall()
        return _frontier(rows)

    def counts_and_frontier(self, query: ResultQuery, x: str = "p50") -> tuple[dict[str, int], set[int]]:
        """``count_results(query)`` and ``frontier_ids(query, x)`` from one pass over the results.
        For a typed filter: its LIKEs are then evaluated once per row, not twice (half the time
        at 20,000 results); without one, the two indexed queries are faster."""
        where, args = query.where()
        xcol = "r.latency_p50_ms" if x == "p50" else "r.size_mb"
        with self._lock:
            rows = self.conn.execute(f"SELECT r.id, r.status, {xcol}, {QUALITY}, r.model, {MEASURED} "
                                     f"FROM results r WHERE {where}", args).fetchall()
        counts: dict[str, int] = {}
        for _, status, *_ in rows:
            counts[status] = counts.get(status, 0) + 1
        # frontier_sql's order: increasing x, best quality first among equals, then the row id
        ok = sorted((value, -quality, row_id, model) for row_id, status, value, quality, model, measured in rows
                    if status == "ok" and value is not None and quality is not None and measured)
        return counts, _frontier((row_id, -negated, model) for _, negated, row_id, model in ok)

    def fp32_references(self, run_ids: Iterable[str]) -> list[dict[str, Any]]:
        """The ok float-reference results of these runs (the methods whose spec ``is_reference``):
        what their variants' speed-ups are measured against."""
        out: list[dict[str, Any]] = []
        with self._lock:
            for chunk in _chunks(sorted({r for r in run_ids if r})):
                marks = ",".join("?" * len(chunk))
                sql = reference_sql(f"SELECT * FROM results WHERE run_id IN ({marks}) AND method IN ({REFERENCES}) "
                                    "AND status = 'ok' ORDER BY id")
                out.extend(Result.from_row(row).to_dict() for row in self._dicts(sql, chunk))
        return out

    def model_summary(self, model: str) -> dict[str, Any]:
        """A model's history in three queries: runs, measurements, the last run's time, and the
        fastest ok result of each variant (recipe × runtime × device × batch size), fastest first."""
        with self._lock:
            measurements, runs = self.conn.execute(
                "SELECT count(*), count(DISTINCT run_id) FROM results WHERE model = ?", [model]).fetchone()
            last_run = self.conn.execute(
                "SELECT max(created_at) FROM runs WHERE id IN (SELECT DISTINCT run_id FROM results WHERE model = ?)",
                [model]).fetchone()[0]
            # Each variant's fastest (one of equal p50s) from results_model_fastest alone, then those
            # rows: 3 ms at 20,000 results (a window over whole rows took 90 ms).
            fastest = self.conn.execute(
                "SELECT id, min(latency_p50_ms) FROM results WHERE model = ? AND status = 'ok' "
                "AND latency_p50_ms IS NOT NULL GROUP BY COALESCE(recipe_id, method), runtime, device, batch_size",
                [model]).fetchall()
            best = self._rows_by_id([row_id for row_id, _ in sorted(fastest, key=lambda pair: (pair[1], pair[0]))])
        return {"runs": runs, "measurements": measurements, "last_run": last_run, "best": best}

    # --- fleet hosts: what each worker is and does (written by the process that owns the store) ----

    def set_host(self, name: str, **fields: Any) -> None:
        """Insert or update one fleet host (``facts`` and ``queue`` as Python values)."""
        row = {"name": name, "seen_at": now_iso(), **fields}
        for key in ("facts", "queue"):
            if key in row:
                row[key] = json.dumps(row[key])
        with self._lock, self.db.conn:
            self.db["hosts"].upsert(row, pk="name")

    def hosts(self) -> list[dict[str, Any]]:
        """Every fleet host known to this store, by name, with its facts and its queue decoded."""
        with self._lock:
            rows = self._dicts("SELECT * FROM hosts ORDER BY name", [])
        for row in rows:
            row["facts"] = json.loads(row["facts"] or "{}")
            row["queue"] = json.loads(row["queue"] or "[]")
        return rows

    def _dicts(self, sql: str, args: Iterable[Any]) -> list[dict[str, Any]]:
        cursor = self.conn.execute(sql, list(args))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def tracking_queue(self) -> list[dict[str, Any]]:
        """What tracking servers still have to receive, per URI (:func:`engines.store.outbox.queue_summary`)."""
        with self._lock:
            return queue_summary(self.conn)

    def completed_keys(self, run_id: str) -> set[tuple[str, str, str, int]]:
        """Variant keys (recipe id, runtime, device, batch size) a run has stored, whatever the outcome."""
        return {variant_key(r) for r in self.results(run_id)}


def _chunks(items: list[Any], size: int = 500) -> Iterable[list[Any]]:
    """SQLite caps the parameters of one statement (999 in older builds)."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _decode_run(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["request"] = json.loads(row["request"] or "{}")
    out["environment"] = json.loads(row["environment"] or "{}")
    return out


def _frontier(rows: Iterable[tuple[int, float, str]]) -> set[int]:
    """The ids of (id, quality, model) rows, in order of increasing cost, on their model's frontier
    (:func:`engines.analysis.rules.pareto`, the position standing for the cost)."""
    by_model: dict[str, list[tuple[int, float]]] = {}
    for row_id, quality, model in rows:
        by_model.setdefault(model, []).append((row_id, quality))
    frontier: set[int] = set()
    for mine in by_model.values():
        frontier.update(mine[i][0] for i in pareto([(position, q) for position, (_, q) in enumerate(mine)]))
    return frontier
