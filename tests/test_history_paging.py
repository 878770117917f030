"""History at scale: SQLite filters, sorts, counts and pages a large real store, and the answers
are the ones the app's Python functions give over every result (``qbench_tui.analysis``). The
app then shows that store a page at a time (Pilot)."""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_tui_support import async_test, fixed_system, test_settings, wait_for, wait_ready

from engines.core.schema import Result
from engines.store import Store
from engines.store.query import ResultQuery
from qbench_tui import analysis
from qbench_tui.analysis import ResultFilter, result_key
from qbench_tui.app import make_app
from qbench_tui.history import PAGE_SIZE, to_query
from qbench_tui.widgets.results import ResultsTable

RESULTS = 6_000  # enough for many pages and for SQLite's plans to matter; quick to fill
MODELS = ("digits-mlp", "digits-cnn", "tiny-lm", "all-MiniLM-L6-v2")
METHODS = ("fp32", "fp16", "dynamic-int8", "int4")


def _fill(path: Path, total: int, seed: int = 3) -> None:
    """Runs of eight results (four methods × two runtimes) over 60 days, with failures, notes,
    missing accuracies and equal latencies (ties), written in one transaction."""
    rng = random.Random(seed)
    store = Store(path)
    start = datetime(2026, 6, 1, tzinfo=UTC)
    with store.db.conn:
        for i in range(total // 8):
            when = start + timedelta(minutes=i * 60 * 24 * 60 // (total // 8))
            run_id = when.strftime("%Y%m%d-%H%M%S-") + f"{i:04x}"
            model = MODELS[i % len(MODELS)]
            store.db["runs"].insert({"id": run_id, "created_at": when.isoformat(timespec="seconds"),
                                     "finished_at": None, "status": "finished", "model": model, "request": "{}",
                                     "environment": "{}", "pid": 1, "host": "test", "source": "cli",
                                     "message": None})
            rows = []
            for method in METHODS:
                for runtime in ("onnxruntime", "torch"):
                    status = rng.choices(("ok", "failed", "unsupported"), (90, 5, 5))[0]
                    ok = status == "ok"
                    p50 = round(rng.uniform(0.05, 3.0), 2)  # rounded: ties happen
                    r = Result(model=model, method=method, runtime=runtime, device="cpu", batch_size=1,
                               recipe_id=method, label=method, status=status,
                               error=None if ok else f"{status}: reason {i % 7}",
                               notes=["noisy measurement"] if ok and rng.random() < 0.05 else [],
                               latency_ms={"p50": p50, "p99": p50 * 1.5, "iqr": p50 * 0.05} if ok else None,
                               size_mb=round(rng.uniform(0.5, 90), 1) if ok else None,
                               accuracy=round(rng.uniform(0.8, 0.99), 3) if ok and model.startswith("digits") else None,
                               agreement={"top1": round(rng.uniform(0.9, 1.0), 3), "cosine": 0.99} if ok else None,
                               started_at=when.isoformat(timespec="seconds"),
                               finished_at=(when + timedelta(seconds=30)).isoformat(timespec="seconds"))
                    rows.append({**r.to_row(), "run_id": run_id})
            store.db["results"].insert_all(rows)
    store.close()


@pytest.fixture(scope="module")
def big_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("history") / "big.db"
    _fill(path, RESULTS)
    return path


@pytest.fixture
def big(big_db: Path):
    store = Store(big_db)
    yield store
    store.close()


def _everything(store: Store) -> tuple[list[dict], dict]:
    runs = {r["id"]: r for r in store.list_runs()}
    return store.results(), runs


def _pages(store: Store, query: ResultQuery, size: int = 500) -> list[dict]:
    out: list[dict] = []
    while True:
        page = store.query_results(query, limit=size, offset=len(out))
        out.extend(page)
        if len(page) < size:
            return out


def test_the_store_is_migrated_to_indexes_on_the_filtered_columns(big: Store):
    indexes = {row[1] for row in big.db.execute("SELECT * FROM sqlite_master WHERE type = 'index'").fetchall()}
    assert big.schema_version >= 3  # later migrations (the fleet's host) build on it
    for column in ("method", "label", "runtime", "device"):
        assert f"idx_results_{column}" in indexes
    assert "results_fp32_reference" in indexes and "idx_runs_created_at" in indexes
    plan = big.db.execute("EXPLAIN QUERY PLAN SELECT count(*) FROM results WHERE model = ?", ["x"]).fetchall()
    assert "USING COVERING INDEX idx_results_model" in str(plan)


@pytest.mark.parametrize(("column", "reverse"), [("when", True), ("p50", False), ("speedup", True),
                                                 ("method", False), ("accuracy", True), ("note", False)])
def test_sql_sorts_and_pages_like_the_python_sort(big: Store, column: str, reverse: bool):
    results, runs = _everything(big)
    ctx = {"runs": runs, "speedups": analysis.speedups(results)}
    expected = [result_key(r) for r in analysis.sort_results(results, column, reverse, ctx)]
    paged = _pages(big, ResultQuery(sort=column, reverse=reverse))
    assert len(paged) == RESULTS
    assert [result_key(r) for r in paged] == expected


@pytest.mark.parametrize("flt", [
    ResultFilter(text="mini"), ResultFilter(text="INT8 fail"), ResultFilter(text="bs1 noisy"),
    ResultFilter(model="tiny-lm", status="ok"), ResultFilter(method="int4", runtime="torch", text="reason"),
    ResultFilter(text="100%_"), ResultFilter(run_id="20260601-000000-0000"),
])
def test_sql_filters_and_counts_like_the_python_filter(big: Store, flt: ResultFilter):
    results, _ = _everything(big)
    expected = analysis.filter_results(results, flt)
    query = to_query(flt, None, False)
    assert [r["id"] for r in _pages(big, query)] == [r["id"] for r in expected]
    counts = big.count_results(query)
    assert counts == {s: n for s in ("ok", "failed", "unsupported")
                      if (n := sum(1 for r in expected if r["status"] == s))}


@pytest.mark.parametrize("flt", [ResultFilter(), ResultFilter(model="digits-mlp"), ResultFilter(text="torch"),
                                 ResultFilter(text="mini bs1")])
def test_the_pareto_frontier_comes_from_a_query(big: Store, flt: ResultFilter):
    results, _ = _everything(big)
    query = to_query(flt, None, False)
    for x in ("p50", "size"):
        _, frontier = analysis.frontier_results(analysis.filter_results(results, flt), x)
        assert big.frontier_ids(query, x) == {r["id"] for r in frontier}
        # the one-pass form a typed filter uses gives the same counts and frontier
        assert big.counts_and_frontier(query, x) == (big.count_results(query), {r["id"] for r in frontier})


def test_model_summary_and_run_counts_match_the_whole_history(big: Store):
    results, runs = _everything(big)
    for model in MODELS:
        history = analysis.model_history(results, model, runs)
        summary = big.model_summary(model)
        assert (summary["runs"], summary["measurements"], summary["last_run"]) == (
            history.runs, history.measurements, history.last_run)
        # The same fastest row per variant, fastest first (variants of equal p50 in either order).
        assert {r["id"] for r in summary["best"]} == {r["id"] for r in history.best}
        assert [analysis.latency(r) for r in summary["best"]] == [analysis.latency(r) for r in history.best]
    listed = big.list_runs(with_counts=True)
    assert sum(r["results"] for r in listed) == RESULTS and len(listed) == RESULTS // 8
    recent = big.list_runs(limit=5, since="2026-07-15", model="tiny-lm", with_counts=True)
    assert len(recent) == 5 and all(r["model"] == "tiny-lm" and r["created_at"] >= "2026-07-15" for r in recent)
    assert [r["created_at"] for r in recent] == sorted((r["created_at"] for r in recent), reverse=True)


# --- the app on the large store -------------------------------------------------------------------


@async_test
async def test_the_app_reads_a_large_store_a_page_at_a_time(big: Store):
    app = make_app(store=big, settings=test_settings(), system=fixed_system())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot, timeout=60)
        pane = app.main.results_pane
        table = app.query_one(ResultsTable)
        status = str(pane.query_one("#results-status").render())
        assert table.row_count == PAGE_SIZE and pane.view.total == RESULTS
        assert f"{RESULTS} results" in status and f"{PAGE_SIZE} read" in status
        newest = big.query_results(ResultQuery(sort="when", reverse=True), limit=3)
        assert [str(k.value) for k in list(table.rows)[:3]] == [result_key(r) for r in newest]

        # The cursor nearing the last row read brings the next page.
        table.focus()
        table.move_cursor(row=PAGE_SIZE - 5)
        await wait_for(pilot, lambda: table.row_count == 2 * PAGE_SIZE, what="the second page")
        await pilot.pause()
        assert table.row_count == 2 * PAGE_SIZE  # one page more, not two

        # A typed filter: SQLite counts and the first page shows.
        await pilot.press("slash", *"mini")
        await wait_for(pilot, lambda: pane.filter.text == "mini" and pane.view.query.text == "mini")
        expected = big.count_results(ResultQuery(text="mini"))
        status = str(pane.query_one("#results-status").render())
        assert f"{sum(expected.values())} of {RESULTS} results" in status
        assert table.row_count == PAGE_SIZE
        assert all(r["model"] == "all-MiniLM-L6-v2" for r in pane.visible)

        # A sort: the same filter, in the new order, straight from the store.
        pane.set_sort("p50", reverse=False)
        await pilot.pause()
        fastest = big.query_results(ResultQuery(text="mini", sort="p50"), limit=PAGE_SIZE)
        assert [r["id"] for r in pane.visible] == [r["id"] for r in fastest]
        p50s = [analysis.latency(r) for r in pane.visible]
        assert p50s == sorted(p50s)

        # Exporting writes the whole view, not the page.
        out = Path(big.path).parent / "export.json"
        pane._export_worker(out, pane.view.query)
        await wait_for(pilot, lambda: out.exists() and out.stat().st_size > 0, what="the export")
        exported = json.loads(out.read_text())
        exported = exported["results"] if isinstance(exported, dict) else exported
        assert len(exported) == sum(expected.values())


def test_a_version_2_store_gains_the_indexes(tmp_path: Path, big_db: Path):
    """Opening an older file adds migration 3's indexes and keeps every row."""
    path = tmp_path / "v2.db"
    path.write_bytes(big_db.read_bytes())
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE qbench_meta SET value = '2' WHERE key = 'schema_version'")
        for name in ("idx_results_method", "idx_results_label", "idx_results_runtime", "idx_results_device",
                     "results_fp32_reference", "idx_runs_created_at"):
            conn.execute(f"DROP INDEX {name}")
    store = Store(path)
    try:
        assert store.schema_version >= 3  # later migrations (the fleet's host) build on it
        assert sum(store.count_results().values()) == RESULTS
        names = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()}
        assert "results_fp32_reference" in names
    finally:
        store.close()


@pytest.mark.parametrize("word", ["mini", "MiniLM", "INT8", "bs1", "reason", "noisy", "%", "_", "\\", "onnx",
                                  "20260601", "test", "fail", "e,", '"', "zz-nothing"])
def test_the_search_text_matches_what_a_like_per_field_matched(big: Store, word: str):
    """Migration 8's joined search text keeps the answers of the eleven LIKEs it replaced."""
    pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    fields = ("run_id", "model", "label", "method", "runtime", "device", "status", "error", "notes", "host",
              "'bs' || batch_size")
    per_field = " OR ".join(f"{f} LIKE ? ESCAPE '\\'" for f in fields)
    old = [i for (i,) in big.conn.execute(f"SELECT id FROM results WHERE {per_field} ORDER BY id",
                                          [pattern] * len(fields))]
    assert [r["id"] for r in _pages(big, ResultQuery(text=word))] == old


def test_the_search_text_follows_inserts_replacements_and_updates(tmp_path: Path):
    store = Store(tmp_path / "s.db")
    store.create_run("r1", "digits-mlp", {}, {}, "cli")
    row_id = store.add_result("r1", Result(model="digits-mlp", method="fp32", runtime="torch", device="cpu",
                                           batch_size=4, recipe_id="fp32", label="fp32", status="ok"))
    assert {r["id"] for r in store.query_results(ResultQuery(text="BS4 Torch"))} == {row_id}
    with store.conn:
        store.conn.execute("UPDATE results SET status = 'failed', error = 'out of memory' WHERE id = ?", [row_id])
    assert [r["id"] for r in store.query_results(ResultQuery(text="memory"))] == [row_id]
    # a resumed run replaces the row: the new one is found, the old words are gone
    new_id = store.add_result("r1", Result(model="digits-mlp", method="fp32", runtime="torch", device="cpu",
                                           batch_size=4, recipe_id="fp32", label="fp32", status="ok",
                                           notes=["noisy"]))
    assert [r["id"] for r in store.query_results(ResultQuery(text="noisy"))] == [new_id]
    assert store.query_results(ResultQuery(text="memory")) == []
    store.close()
