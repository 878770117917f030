"""The SQLite store on real files: schema, WAL, results, and refusing files it does not own."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from engines.methods import parse_recipe
from engines.store import SCHEMA_VERSION, Store, StoreError


def _result(method="fp32", batch=1, status="ok", **extra):
    return {"model": "digits-mlp", "method": method, "runtime": "onnxruntime", "device": "cpu",
            "batch_size": batch, "status": status, "config": {"version": 1},
            "latency_ms": {"p50": 1.0, "p90": 1.5, "p99": 2.0, "mean": 1.1, "std": 0.1, "iqr": 0.2,
                           "min": 0.9, "max": 2.5, "samples": 100},
            "agreement": {"top1": 1.0, "sqnr_db": float("inf"), "cosine": 1.0}, **extra}


def test_new_store_has_schema_and_wal(db_path):
    store = Store(db_path)
    assert store.schema_version == SCHEMA_VERSION
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_results_survive_reopening_and_round_trip(db_path):
    store = Store(db_path)
    store.create_run("r1", "digits-mlp", {"model": "digits-mlp"}, {"python": "3.11"}, "test")
    store.add_result("r1", _result())
    store.add_result("r1", _result("int4", status="failed", error="boom"))
    store.close()
    again = Store(db_path)
    results = again.results("r1")
    assert [(r["method"], r["status"]) for r in results] == [("fp32", "ok"), ("int4", "failed")]
    assert results[0]["latency_ms"]["p50"] == 1.0 and results[0]["latency_ms"]["samples"] == 100
    assert results[0]["agreement"]["sqnr_db"] == float("inf")
    assert results[1]["error"] == "boom"
    assert again.get_run("r1")["environment"] == {"python": "3.11"}
    fp32, int4 = parse_recipe("fp32").id, parse_recipe("int4").id
    assert again.completed_keys("r1") == {(fp32, "onnxruntime", "cpu", 1), (int4, "onnxruntime", "cpu", 1)}
    assert [r["label"] for r in results] == ["fp32", "int4"]


def test_re_measuring_a_row_replaces_it(store):
    store.create_run("r1", "m", {}, {}, "test")
    store.add_result("r1", _result(status="failed", error="x"))
    store.add_result("r1", _result())
    assert [r["status"] for r in store.results("r1")] == ["ok"]


def test_public_json_turns_infinity_into_null(store):
    import json

    from engines.core.schema import public_json

    store.create_run("r1", "m", {}, {}, "test")
    store.add_result("r1", _result())
    text = json.dumps(public_json(store.results("r1")), allow_nan=False)
    assert '"sqnr_db": null' in text


def test_a_file_that_is_not_sqlite_is_refused_and_left_untouched(db_path):
    db_path.write_bytes(b"this is not a database\n" * 100)
    before = db_path.read_bytes()
    with pytest.raises(StoreError, match="not a SQLite database"):
        Store(db_path)
    assert db_path.read_bytes() == before


def test_a_corrupt_sqlite_file_is_refused_and_left_untouched(db_path):
    store = Store(db_path)
    store.create_run("r1", "m", {}, {}, "test")
    for i in range(200):
        store.add_result("r1", _result(batch=i + 1))
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    data = bytearray(db_path.read_bytes())
    data[4096:12288] = os.urandom(8192)  # scramble pages after the header
    db_path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupt"):
        Store(db_path)
    assert db_path.read_bytes() == bytes(data)


def test_another_applications_database_is_refused(db_path):
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a qbench database"):
        Store(db_path)


def test_a_newer_schema_is_refused(db_path):
    Store(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE qbench_meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer qbench"):
        Store(db_path)


def test_a_run_left_running_by_a_dead_process_becomes_interrupted(db_path):
    # A real process that writes a 'running' run and dies without finishing it.
    code = (
        "import sys; from engines.store import Store;"
        f"s = Store({str(db_path)!r}); s.create_run('dead', 'm', {{}}, {{}}, 'test'); import os; os._exit(9)"
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    store = Store(db_path)
    run = store.get_run("dead")
    assert run["status"] == "interrupted"
    assert "ended unexpectedly" in run["message"]


# --- a database written by the first release (schema 1) ------------------------------------------


def _first_release_db(path):
    """The tables and rows qbench 0.1 wrote, built with plain SQL as it left them on disk."""
    from engines.store.migrations import LEGACY_RESULT_COLUMNS

    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE qbench_meta (key TEXT PRIMARY KEY, value TEXT);"
        "INSERT INTO qbench_meta VALUES ('app', 'qbench'), ('schema_version', '1');"
        "CREATE TABLE runs (id TEXT PRIMARY KEY, created_at TEXT, finished_at TEXT, status TEXT, model TEXT,"
        " request TEXT, environment TEXT, pid INTEGER, host TEXT, source TEXT, message TEXT);"
        f"CREATE TABLE results ({', '.join(c + (' INTEGER PRIMARY KEY' if c == 'id' else '') for c in LEGACY_RESULT_COLUMNS)},"
        " FOREIGN KEY(run_id) REFERENCES runs(id));"
        "CREATE UNIQUE INDEX idx_results_run_id_method_runtime_device_batch_size"
        " ON results (run_id, method, runtime, device, batch_size);"
    )
    request = {"model": "digits-mlp", "methods": ["fp32", "int4"], "runtimes": ["onnxruntime"], "devices": ["cpu"],
               "batch_sizes": [1], "configs": {}, "threads": None, "timeout_s": 900.0, "memory_limit_mb": None,
               "measure": {}, "model_options": {}}
    conn.execute("INSERT INTO runs VALUES ('old1', '2026-11-20T10:00:00+00:00', NULL, 'interrupted', 'digits-mlp',"
                 " ?, '{}', 1, 'host', 'cli', NULL)", [json.dumps(request)])
    # the old int4 default was group 32, stored in full, with the 'compute' field this release dropped
    old_int4 = {"group_size": 32, "symmetric": True, "compute": "int8", "version": 1}
    conn.execute("INSERT INTO results (run_id, model, method, runtime, device, batch_size, status, config,"
                 " latency_p50_ms, latency_samples, size_mb, metrics, notes, runtime_info)"
                 " VALUES ('old1', 'digits-mlp', 'int4', 'onnxruntime', 'cpu', 1, 'ok', ?, 0.2, 50, 0.7, '{}', '[]',"
                 " '{}')", [json.dumps(old_int4)])
    conn.commit()
    conn.close()


def test_a_first_release_database_is_migrated_and_its_results_still_show(db_path):
    _first_release_db(db_path)
    store = Store(db_path)
    assert store.schema_version == SCHEMA_VERSION
    (result,) = store.results("old1")
    assert result["label"] == "int4(g32)" and result["recipe_id"] == parse_recipe("int4:group_size=32").id
    assert result["latency_ms"]["p50"] == 0.2 and result["size_mb"] == 0.7
    (step,) = result["recipe"]
    assert step["method"] == "int4" and step["config"]["group_size"] == 32 and step["config"]["symmetric"]
    assert "compute" not in step["config"]  # a setting this release dropped is not carried
    # migration 8 fills the search text of rows stored before it: a typed filter finds them
    from engines.store.query import ResultQuery

    assert [r["id"] for r in store.query_results(ResultQuery(text="int4(G32) old1 bs1"))] == [result["id"]]
    # the new unique key: two settings of one method can live in one run
    store.add_result("old1", {**result, "id": None, "recipe_id": parse_recipe("int4:group_size=128").id,
                              "label": "int4(g128)"})
    assert len(store.results("old1")) == 2
    store.close()


def test_closing_waits_for_a_background_reader_and_a_later_read_raises(tmp_path):
    """The app reads the store from threads (start-up, the Pareto stars) while its owner may close
    it; a close in the middle of a read crashed the process inside SQLite."""
    import threading
    import time

    store = Store(tmp_path / "q.db")
    reading, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def reader() -> None:
        with store.reading():
            reading.set()
            seen.append(len(store.list_runs()))
            release.wait(5)
            seen.append(len(store.list_runs()))  # still open: close() waits for this reader

    thread = threading.Thread(target=reader)
    thread.start()
    reading.wait(5)
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    store.close()
    assert time.monotonic() - started >= 0.25 and seen == [0, 0]
    thread.join(5)
    with pytest.raises(sqlite3.ProgrammingError):
        with store.reading():
            store.list_runs()
