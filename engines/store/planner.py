"""The query planner's statistics for the results table (``ANALYZE``), gathered when a store is
opened and missing or stale, at a bounded cost.

Without them SQLite picks indexes by rule of thumb, and at 20,000 results it read a page's fp32
references through the status index (every ok row: 20 ms) instead of the run's (a few rows), and
scanned rows in a low-value index's order. With them, each query takes its selective index.
"""

from __future__ import annotations

import sqlite3

# Gathered from this many results on (below it any plan is fast), and again whenever the table has
# doubled or halved since; ANALYZE then looks at this many rows of each index (a few ms).
STATS_MIN_ROWS = 1000
STATS_ANALYSIS_LIMIT = 1000
META_KEY = "stats_rows"  # qbench_meta: the results when last analyzed (sqlite_stat1's are estimates)


def refresh_stats(conn: sqlite3.Connection) -> bool:
    """Analyze ``results`` if its statistics are missing or stale; returns whether it did."""
    rows = conn.execute("SELECT count(*) FROM results").fetchone()[0]
    known = conn.execute("SELECT value FROM qbench_meta WHERE key = ?", [META_KEY]).fetchone()
    known = int(known[0]) if known else 0
    if rows < STATS_MIN_ROWS or known / 2 <= rows <= known * 2:
        return False
    try:
        with conn:
            conn.execute(f"PRAGMA analysis_limit = {STATS_ANALYSIS_LIMIT}")
            conn.execute("ANALYZE results")
            conn.execute("INSERT OR REPLACE INTO qbench_meta (key, value) VALUES (?, ?)", [META_KEY, str(rows)])
    except sqlite3.OperationalError:  # another process writes (busy past the timeout): next opening
        return False
    return True
