"""The store's ops tables (migration 4): DVC versions of exported variants and monitor baselines.

Functions over an open :class:`engines.store.Store`, so the store class stays the results' own; the
store package is the only writer of its tables (``engines.ops`` calls these).
"""

from __future__ import annotations

import json
from typing import Any

from engines.core.schema import now_iso


def add_version(store, result_id: int, version: dict[str, Any]) -> dict[str, Any]:
    """Record one DVC version of ``result_id``'s export; returns it with its ``id``."""
    row = {
        "result_id": int(result_id), "created_at": now_iso(), "format": version.get("format") or "",
        "md5": version["md5"], "size": version.get("size"), "nfiles": version.get("nfiles"),
        "path": version["path"], "repo": version["repo"], "remote": version.get("remote") or "",
        "dvcfile": version["dvcfile"], "source": version.get("source") or "",
    }
    with store._lock, store.db.conn:
        table = store.db["versions"]
        table.insert(row)
        row["id"] = table.last_pk
    return row


def list_versions(store, result_id: int | None = None) -> list[dict[str, Any]]:
    """Versions, newest first (of one result, or all)."""
    where, args = ("WHERE result_id = ?", [int(result_id)]) if result_id is not None else ("", [])
    with store._lock:
        return store._dicts(f"SELECT * FROM versions {where} ORDER BY id DESC", args)


def find_version(store, ref: str) -> dict[str, Any] | None:
    """A version by its id (``v3`` or ``3``) or by a prefix of its md5 (at least 6 characters)."""
    ref = ref.strip()
    with store._lock:
        digits = ref[1:] if ref[:1] in ("v", "V") else ref
        if digits.isdigit():
            rows = store._dicts("SELECT * FROM versions WHERE id = ?", [int(digits)])
            if rows:
                return rows[0]
        if len(ref) >= 6:
            rows = store._dicts("SELECT * FROM versions WHERE md5 LIKE ? ORDER BY id DESC", [ref.lower() + "%"])
            if rows:
                return rows[0]
    return None


def save_baseline(store, url: str, result_id: int | None, baseline: dict[str, Any]) -> dict[str, Any]:
    row = {
        "url": url, "result_id": result_id, "created_at": now_iso(), "requests": baseline.get("requests"),
        "latency_mean_ms": baseline.get("latency_mean_ms"), "latency_p95_ms": baseline.get("latency_p95_ms"),
        "error_rate": baseline.get("error_rate"), "data": json.dumps(baseline, default=str),
    }
    with store._lock, store.db.conn:
        table = store.db["monitor_baselines"]
        table.insert(row)
        row["id"] = table.last_pk
    return row


def latest_baseline(store, url: str, result_id: int | None = None) -> dict[str, Any] | None:
    """The newest baseline recorded for ``url`` (and that result, when known)."""
    sql, args = "SELECT * FROM monitor_baselines WHERE url = ?", [url]
    if result_id is not None:
        sql += " AND result_id = ?"
        args.append(result_id)
    with store._lock:
        rows = store._dicts(sql + " ORDER BY id DESC LIMIT 1", args)
    if not rows:
        return None
    out = json.loads(rows[0]["data"] or "{}")
    out.update({k: rows[0][k] for k in ("id", "url", "result_id", "created_at")})
    return out


def get_result(store, result_id: int) -> dict[str, Any] | None:
    rows = store.results(where="id = ?", params=[int(result_id)])
    return rows[0] if rows else None
