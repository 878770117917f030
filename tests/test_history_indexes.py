"""History at scale, how SQLite answers: the newest-first view read from the runs' time index, the
read indexes and planner statistics a store gains (old stores too), and the start-up's brief runs.
Real stores of a few thousand results; the answers are compared with the plain sorted query."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from test_history_paging import _fill
from test_tui_support import async_test, fixed_system, test_settings, wait_for, wait_ready

from engines.core.schema import Result
from engines.store import Store
from engines.store.planner import META_KEY
from engines.store.query import ResultQuery, newest_page_sql, select_sql
from qbench_tui.app import make_app
from qbench_tui.screens.result_detail import ResultDetailScreen

RESULTS = 2_000  # above the statistics' threshold (engines.store.planner.STATS_MIN_ROWS)


@pytest.fixture(scope="module")
def store_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("indexes") / "h.db"
    _fill(path, RESULTS)
    return path


@pytest.fixture
def store(store_db: Path, tmp_path: Path):
    path = tmp_path / "h.db"
    path.write_bytes(store_db.read_bytes())
    s = Store(path)
    yield s
    s.close()


def _plan(store: Store, sql: str, args: list) -> str:
    return " | ".join(row[3] for row in store.conn.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall())


def _sorted_ids(store: Store, query: ResultQuery) -> list[int]:
    """The view's ids from the one sorted query (what the pages must equal)."""
    sql, args = select_sql(query, columns="r.id")
    return [i for (i,) in store.conn.execute(sql, args).fetchall()]


def _paged_ids(store: Store, query: ResultQuery, size: int) -> list[int]:
    out: list[int] = []
    while page := store.query_results(query, limit=size, offset=len(out)):
        out.extend(r["id"] for r in page)
    return out


@pytest.mark.parametrize("reverse", [True, False])
def test_the_newest_first_view_is_read_from_the_runs_time_index(store: Store, reverse: bool):
    query = ResultQuery(sort="when", reverse=reverse)
    assert _paged_ids(store, query, 50) == _sorted_ids(store, query)
    runs_sql, own_sql = newest_page_sql(query, 50)
    plan = _plan(store, *runs_sql)
    # Run by run in time order, each run's results from an index; SQLite stops after the page.
    assert plan.startswith(("SCAN ru USING INDEX idx_runs_created_at", "SEARCH ru USING INDEX idx_runs_created_at"))
    assert "RIGHT PART OF ORDER BY" in plan
    assert "SCAN r " not in plan
    assert "SCAN r " not in _plan(store, *own_sql)  # the results timed by themselves: by the run id's index


def test_results_timed_by_themselves_take_their_place_in_the_newest_first_pages(store: Store):
    """A run without a time and a result without a run: their results sort by their own start,
    as in the one sorted query (COALESCE of the run's time and the result's)."""
    with store.conn:
        runs = [r for (r,) in store.conn.execute("SELECT id FROM runs ORDER BY created_at LIMIT 3 OFFSET 40")]
        store.conn.execute(f"UPDATE runs SET created_at = NULL WHERE id IN ({','.join('?' * len(runs))})", runs)
        # Started later than every run: first when newest first (and one with no time at all: last).
        store.conn.execute("UPDATE results SET started_at = '2027-01-01T00:00:00+00:00' WHERE run_id = ?", [runs[0]])
        store.conn.execute("UPDATE results SET started_at = NULL WHERE run_id = ?", [runs[1]])
    store.add_result(None, Result(model="digits-mlp", method="fp32", runtime="torch", device="cpu", batch_size=3,
                                  recipe_id="fp32", label="fp32", status="ok",
                                  started_at="2026-06-20T12:00:00+00:00"))
    for reverse in (True, False):
        query = ResultQuery(sort="when", reverse=reverse)
        expected = _sorted_ids(store, query)
        assert _paged_ids(store, query, 50) == expected and len(expected) == RESULTS + 1
        assert _paged_ids(store, query, 7)[:40] == expected[:40]
    newest = store.query_results(ResultQuery(sort="when", reverse=True), limit=8)
    assert {r["run_id"] for r in newest} == {runs[0]}


def test_the_store_has_planner_statistics_and_its_queries_take_the_selective_indexes(store: Store):
    assert int(store._get_meta(META_KEY)) == RESULTS
    assert store.conn.execute("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'results'").fetchone()[0] > 0
    runs = [r for (r,) in store.conn.execute("SELECT id FROM runs LIMIT 5")]
    marks = ",".join("?" * len(runs))
    # A page's fp32 references: through the run's index, not the status index (every ok row).
    plan = _plan(store, f"SELECT * FROM results WHERE run_id IN ({marks}) AND method = 'fp32' AND status = 'ok'", runs)
    assert "results_fp32_reference" in plan
    # A typed filter's counts and its newest-first page read the search index, never the rows.
    query = ResultQuery(text="mini", sort="when", reverse=True)
    where, args = query.where()
    count_plan = _plan(store, f"SELECT r.status, count(*) FROM results r WHERE {where} GROUP BY r.status", args)
    assert "COVERING INDEX results_status_search" in count_plan
    assert "COVERING INDEX results_status_search" in _plan(store, *select_sql(query, columns="r.id", limit=50))
    # A model's fastest variants: from their index alone.
    fastest = ("SELECT id, min(latency_p50_ms) FROM results WHERE model = ? AND status = 'ok' AND latency_p50_ms "
               "IS NOT NULL GROUP BY COALESCE(recipe_id, method), runtime, device, batch_size")
    assert "COVERING INDEX results_model_fastest" in _plan(store, fastest, ["tiny-lm"])


def test_statistics_are_gathered_again_only_once_the_results_doubled(store: Store):
    assert not store.refresh_stats()  # gathered at opening, nothing changed since
    rows = [dict(r) for r in store.results(where="run_id = (SELECT min(run_id) FROM results)")]
    run_id = rows[0]["run_id"]
    with store.conn:
        store.conn.executemany(
            "INSERT INTO results (run_id, model, method, recipe_id, runtime, device, batch_size, status, host) "
            "VALUES (?, 'digits-mlp', 'fp32', 'fp32', 'torch', 'cpu', ?, 'ok', 'test')",
            [(run_id, 1000 + i) for i in range(RESULTS // 2)])
    assert not store.refresh_stats()  # half as many again: the statistics still hold
    with store.conn:
        store.conn.executemany(
            "INSERT INTO results (run_id, model, method, recipe_id, runtime, device, batch_size, status, host) "
            "VALUES (?, 'digits-mlp', 'fp32', 'fp32', 'torch', 'cpu', ?, 'ok', 'test')",
            [(run_id, 5000 + i) for i in range(RESULTS)])
    assert store.refresh_stats() and int(store._get_meta(META_KEY)) == 2 * RESULTS + RESULTS // 2


def test_a_version_9_store_gains_the_read_indexes_and_statistics_and_keeps_its_rows(store_db: Path, tmp_path: Path):
    path = tmp_path / "v9.db"
    path.write_bytes(store_db.read_bytes())
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE qbench_meta SET value = '9' WHERE key = 'schema_version'")
        conn.execute("DELETE FROM qbench_meta WHERE key = ?", [META_KEY])
        conn.execute("DROP INDEX results_model_fastest")
        conn.execute("DROP INDEX results_status_search")
        conn.execute("DROP TABLE IF EXISTS sqlite_stat1")
    s = Store(path)
    try:
        names = {r[0] for r in s.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"results_model_fastest", "results_status_search"} <= names
        assert int(s._get_meta(META_KEY)) == RESULTS
        assert sum(s.count_results().values()) == RESULTS
        assert _paged_ids(s, ResultQuery(sort="when", reverse=True), 500) == _sorted_ids(
            s, ResultQuery(sort="when", reverse=True))
    finally:
        s.close()


def test_runs_listed_briefly_are_the_same_runs_without_request_or_environment(store: Store):
    with store.conn:
        store.conn.execute("UPDATE runs SET environment = ? WHERE id = (SELECT max(id) FROM runs)",
                           [json.dumps({"python": "3.11.7", "physical_cores": 8})])
    full, brief = store.list_runs(), store.list_runs(brief=True)
    assert [r["id"] for r in brief] == [r["id"] for r in full]
    assert all("request" not in r and "environment" not in r for r in brief)
    assert [{k: v for k, v in r.items() if k not in ("request", "environment")} for r in full] == brief


@async_test
async def test_the_result_detail_shows_its_runs_environment_though_start_up_read_runs_briefly(store: Store):
    with store.conn:
        store.conn.execute("UPDATE runs SET environment = ?", [json.dumps({"python": "3.11.7", "physical_cores": 8})])
    app = make_app(store=store, settings=test_settings(), system=fixed_system())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot, timeout=60)
        pane = app.main.results_pane
        assert pane.visible and all("environment" not in run for run in pane.runs.values())
        pane.open_result(pane.visible[0])
        await wait_for(pilot, lambda: isinstance(app.screen, ResultDetailScreen), what="the result's detail")
        assert app.screen.run["environment"] == {"python": "3.11.7", "physical_cores": 8}
        assert app.screen.run["id"] == pane.visible[0]["run_id"]
