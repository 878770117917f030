"""Filtering, sorting and paging the results in SQL, so months of history never need to be
read whole: the app asks for one page and the counts, the CLI for what its flags name.

The sort keys are the app's column keys (``qbench_tui.analysis.COLUMNS``); each maps to one SQL
expression over ``r`` (a result row) and ``ru`` (its run). Missing values sort last in either
direction and ties keep the store's order (the row id), as Python's stable sort did.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

# Stands in SQL for the float reference's method names, which the method specs hold
# (``register_method(..., is_reference=True)``): :func:`reference_sql` fills it in.
REFERENCES = "/*reference methods*/"
# The reference's p50 (or size) in the same run, host, runtime, device and batch size: what a
# variant's speed-up and size ratio are taken against (index results_fp32_reference).
_REFERENCE = ("(SELECT f.{col} FROM results f WHERE f.run_id = r.run_id AND f.method IN (" + REFERENCES + ") "
              "AND f.runtime = r.runtime AND f.device = r.device AND f.batch_size = r.batch_size "
              "AND f.host IS r.host AND f.status = 'ok' AND f.{col} IS NOT NULL ORDER BY f.id DESC LIMIT 1)")
REFERENCE_P50 = _REFERENCE.format(col="latency_p50_ms")
LABEL = "COALESCE(NULLIF(r.label, ''), r.method)"
# engines.analysis.rules.quality in SQL: accuracy, else top-1 agreement, else cosine.
QUALITY = "COALESCE(r.accuracy, r.agreement_top1, r.agreement_cosine)"
# engines.analysis.rules.is_validation in SQL: an export's validation is not on a model's frontier.
# Not an export's validation. CASE keeps json_type off text that is not JSON (it would raise "malformed JSON").
MEASURED = "(CASE WHEN json_valid(r.metrics) THEN json_type(r.metrics, '$.export') END) IS NULL"

SORTS: dict[str, str] = {
    "id": "r.id",  # the order results were stored in
    "when": "COALESCE(ru.created_at, r.started_at)",
    "model": "r.model",
    "method": LABEL,
    "runtime": "r.runtime",
    "device": "r.device",
    "host": "r.host",
    "batch_size": "r.batch_size",
    "status": "r.status",
    "p50": "r.latency_p50_ms",
    "p99": "r.latency_p99_ms",
    "iqr": "r.latency_iqr_ms / NULLIF(r.latency_p50_ms, 0)",
    "speedup": f"CASE WHEN r.status = 'ok' THEN {REFERENCE_P50} / NULLIF(r.latency_p50_ms, 0) END",
    "throughput": "r.throughput_per_s",
    "size": "r.size_mb",
    "accuracy": "r.accuracy",
    "top1": "r.agreement_top1",
    "sqnr": "r.agreement_sqnr_db",
    "load": "r.load_s",
    "rss": "r.peak_rss_mb",
    # The error, else the notes joined by "; " (their JSON list text without brackets and quotes).
    "note": "COALESCE(r.error, CASE WHEN r.notes IS NULL OR r.notes = '[]' THEN '' "
            "ELSE replace(substr(r.notes, 3, length(r.notes) - 4), '\", \"', '; ') END)",
}

# What a typed filter matches: the fields a row shows in words (run, model, recipe, runtime, device,
# status, error, notes, host, ``bs<N>``), kept joined in ``search_text`` (migration 8). Each word
# must be in one of them: one LIKE over the joined text, 2.5x faster than one LIKE per field.
_TEXT_MATCH = "r.search_text LIKE ? ESCAPE '\\'"

DISTINCT_COLUMNS = ("model", "method", "label", "runtime", "device", "status", "run_id", "host")


@dataclass(frozen=True)
class ResultQuery:
    """Which results, in which order. ``None`` (or an empty ``text``) means any.

    ``text`` keeps the results whose words (run, model, recipe, runtime, device, status, error,
    notes, ``bs<N>``) contain every word of it; ``since`` (ISO time) keeps those finished at or
    after it; ``sort`` is a key of :data:`SORTS`.
    """

    text: str = ""
    model: str | None = None
    method: str | None = None
    label: str | None = None
    runtime: str | None = None
    device: str | None = None
    status: str | None = None
    run_id: str | None = None
    host: str | None = None
    since: str | None = None
    sort: str | None = None
    reverse: bool = False

    def __post_init__(self) -> None:
        if self.sort is not None and self.sort not in SORTS:
            raise ValueError(f"unknown sort {self.sort!r}; valid: {', '.join(SORTS)}")

    def with_(self, **changes: Any) -> ResultQuery:
        return replace(self, **changes)

    def where(self) -> tuple[str, list[Any]]:
        """The WHERE clause (over ``r``) and its parameters."""
        clauses: list[str] = []
        args: list[Any] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("text", "since", "sort", "reverse") or value is None:
                continue
            if f.name == "label":
                clauses.append(f"{LABEL} = ?")
            else:
                clauses.append(f"r.{f.name} = ?")
            args.append(value)
        if self.since:
            clauses.append("r.finished_at >= ?")
            args.append(self.since)
        for word in self.text.split():
            pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append(_TEXT_MATCH)
            args.append(pattern)
        return " AND ".join(clauses) or "1", args

    def order_by(self) -> str:
        if self.sort is None:
            return "r.id"
        expr = reference_sql(SORTS[self.sort])
        return f"({expr}) IS NULL, ({expr}) {'DESC' if self.reverse else 'ASC'}, r.id"

    def needs_runs(self) -> bool:
        return self.sort == "when"


def reference_sql(sql: str) -> str:
    """``sql`` with :data:`REFERENCES` replaced by the registered references' names, quoted."""
    if REFERENCES not in sql:
        return sql
    from engines.methods.registry import reference_methods

    return sql.replace(REFERENCES, ", ".join("'" + name.replace("'", "''") + "'" for name in reference_methods()))


def select_sql(query: ResultQuery, columns: str = "r.*", limit: int | None = None, offset: int = 0,
               extra_where: str = "") -> tuple[str, list[Any]]:
    """``SELECT columns FROM results r [JOIN runs] WHERE … ORDER BY … LIMIT …``."""
    where, args = query.where()
    if extra_where:
        where = f"({where}) AND ({extra_where})"
    join = " LEFT JOIN runs ru ON ru.id = r.run_id" if query.needs_runs() else ""
    sql = f"SELECT {columns} FROM results r{join} WHERE {where} ORDER BY {query.order_by()}"
    if limit is not None:
        sql += " LIMIT ? OFFSET ?"
        args = [*args, limit, offset]
    return sql, args


def newest_page_sql(query: ResultQuery, limit: int) -> list[tuple[str, list[Any]]]:
    """The ``sort="when"`` page of an unfiltered query, as two queries whose rows (id, time)
    are merged (:func:`merge_pages`): the results of runs with a time, run by run from the runs'
    time index (SQLite stops after ``limit`` rows: 0.1 ms for the first page at 20,000 results
    instead of 30 ms sorting them all), and the results whose time is their own (no run, or a run
    without one: found through the run id's index). The store's foreign key (every result's
    run_id is NULL or a stored run) makes the two the whole view."""
    where, args = query.where()
    direction = "DESC" if query.reverse else "ASC"
    runs = (f"SELECT r.id, ru.created_at FROM runs ru CROSS JOIN results r ON r.run_id = ru.id "
            f"WHERE ru.created_at IS NOT NULL AND ({where}) ORDER BY ru.created_at {direction}, r.id LIMIT ?")
    own = (f"SELECT r.id, r.started_at FROM results r WHERE (r.run_id IS NULL OR r.run_id IN "
           f"(SELECT id FROM runs WHERE created_at IS NULL)) AND ({where}) "
           f"ORDER BY r.started_at IS NULL, r.started_at {direction}, r.id LIMIT ?")
    return [(runs, [*args, limit]), (own, [*args, limit])]


def merge_pages(parts: list[list[tuple[int, Any]]], reverse: bool) -> list[int]:
    """The ids of :func:`newest_page_sql`'s rows in the view's order: missing times last, then by
    time (newest first when ``reverse``), then by id."""
    rows = [row for part in parts for row in part]
    timed = sorted((row for row in rows if row[1] is not None), key=lambda row: row[0])
    timed.sort(key=lambda row: row[1], reverse=reverse)  # stable: ties keep the id order
    return [row_id for row_id, _ in timed] + sorted(row_id for row_id, when in rows if when is None)


def frontier_sql(query: ResultQuery, x: str = "p50") -> tuple[str, list[Any]]:
    """(id, quality, model) of the ok, measured results the query keeps that have both ``x`` and a
    quality, in order of increasing ``x`` (best quality first among equals): each model's frontier
    is each of its rows whose quality beats every row of that model before it. (A window function does this in SQL, but at 2.5x the time
    of sorting these pairs and walking them once.)"""
    xcol = "r.latency_p50_ms" if x == "p50" else "r.size_mb"
    where, args = query.where()
    sql = (f"SELECT r.id, {QUALITY} AS q, r.model FROM results r WHERE ({where}) AND r.status = 'ok' "
           f"AND {xcol} IS NOT NULL AND {QUALITY} IS NOT NULL AND {MEASURED} ORDER BY {xcol}, q DESC, r.id")
    return sql, args
