"""The store's ``machine_profiles`` table: each machine's measured peak GFLOP/s and memory bandwidth
(the roofline's ceilings). Functions over an open :class:`engines.store.Store`."""

from __future__ import annotations

import json
from typing import Any

from engines.core.schema import now_iso

FIGURES = ("host", "peak_gflops", "bandwidth_gbs")


def machine_profile(store: Any, host: str) -> dict[str, Any] | None:
    """The newest profile stored for ``host`` (its details merged in), or None."""
    if "machine_profiles" not in store.db.table_names():
        return None
    rows = list(store.db.query("SELECT * FROM machine_profiles WHERE host = ? ORDER BY measured_at DESC LIMIT 1",
                               [host]))
    if not rows:
        return None
    row = dict(rows[0])
    row.update(json.loads(row.pop("details") or "{}"))
    return row


def save_machine_profile(store: Any, figures: dict[str, Any]) -> None:
    """Store one measured profile (``host``, ``peak_gflops``, ``bandwidth_gbs``; the rest as details)."""
    details = {k: v for k, v in figures.items() if k not in FIGURES}
    with store._lock, store.db.conn:
        store.db["machine_profiles"].insert({"host": figures["host"], "measured_at": now_iso(),
                                             "peak_gflops": figures["peak_gflops"],
                                             "bandwidth_gbs": figures["bandwidth_gbs"],
                                             "details": json.dumps(details)})
