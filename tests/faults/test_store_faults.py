"""The store under faults: processes racing to create it, read-only homes, full disks, a file
locked by another process, truncated and future files. The message names the real cause and the
fix; earlier results survive (integrity check)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engines.store import SCHEMA_VERSION, Store, StoreError
from tests.faults.fault_support import fill, integrity
from tests.helpers import qbench


def _result(batch: int = 1) -> dict:
    return {"model": "digits-mlp", "method": "fp32", "runtime": "onnxruntime", "device": "cpu", "batch_size": batch,
            "status": "ok", "config": {}, "latency_ms": {"p50": 1.0, "samples": 10}}


def _seeded(db: Path, rows: int = 3) -> None:
    store = Store(db)
    store.create_run("r1", "digits-mlp", {"model": "digits-mlp"}, {}, "test")
    for batch in range(1, rows + 1):
        store.add_result("r1", _result(batch))
    store.set_run_status("r1", "finished")
    store.close()


@pytest.mark.slow  # twenty command-line processes
def test_four_commands_creating_one_new_store_together_all_succeed(tmp_path):
    """Five rounds of `runs` ×3 + `results` started at once on a fresh file: creation and migrations
    are one transaction the others wait for, so none sees a half-made schema."""
    command = [sys.executable, "-m", "qbench_tui"]
    for round_ in range(5):
        db = tmp_path / f"round{round_}" / "qbench.db"
        procs = [subprocess.Popen([*command, name, "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for name in ("runs", "runs", "runs", "results")]
        outcomes = [(p.wait(timeout=180), p.stderr.read()) for p in procs]
        for p in procs:
            p.stdout.close()
            p.stderr.close()
        assert [code for code, _ in outcomes] == [0, 0, 0, 0], [err[-400:] for _, err in outcomes]
        assert integrity(db) == "ok"
        assert Store(db).schema_version == SCHEMA_VERSION


def test_a_locked_store_names_the_process_holding_it(tmp_path, monkeypatch):
    db = tmp_path / "qbench.db"
    _seeded(db)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sqlite3, sys, time
        conn = sqlite3.connect({str(db)!r}, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        print("held", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr("engines.store.opening.BUSY_TIMEOUT_S", 0.3)
        with pytest.raises(StoreError) as info:
            Store(db)
        message = str(info.value)
        assert f"locked by process {holder.pid}" in message and "corrupt" not in message
    finally:
        holder.kill()
        holder.wait()
    assert integrity(db) == "ok" and len(Store(db).results("r1")) == 3


def _read_only(where: Path, tmpfs) -> None:
    """Make ``where`` (a folder holding a store) read-only: a read-only remount of its tmpfs as root,
    permissions otherwise."""
    if os.geteuid() == 0:
        tmpfs.read_only(where)
    else:
        for path in where.iterdir():
            path.chmod(0o444)
        where.chmod(0o555)


@pytest.fixture
def read_only_home(tmp_path, tmpfs):
    """A folder holding a store with three results, made read-only after a clean close."""
    where = tmpfs(4096) if os.geteuid() == 0 else tmp_path / "home"
    where.mkdir(exist_ok=True)
    _seeded(where / "qbench.db")
    _read_only(where, tmpfs)
    yield where
    if os.geteuid() != 0:
        where.chmod(0o755)


def test_a_read_only_store_is_still_readable_and_a_run_is_refused_for_the_right_reason(read_only_home):
    db = read_only_home / "qbench.db"
    store = Store(db)
    assert store.read_only and len(store.results("r1")) == 3 and store.list_runs()[0]["status"] == "finished"
    with pytest.raises(StoreError, match="read-only|no permission") as info:
        store.create_run("r2", "m", {}, {}, "test")
    assert "corrupt" not in str(info.value)
    listed = qbench("results", "--db", str(db), timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "digits-mlp" in listed.stdout
    assert qbench("runs", "--db", str(db), timeout=120).returncode == 0
    refused = qbench("run", "--model", "digits-mlp", "--methods", "fp32", "--db", str(db), timeout=300)
    assert refused.returncode != 0 and "corrupt" not in refused.stderr and "Traceback" not in refused.stderr
    assert "read-only" in refused.stderr or "no permission" in refused.stderr
    assert integrity(db) == "ok"


def test_a_new_store_on_a_full_disk_says_no_space(tmpfs):
    where = tmpfs(64)
    fill(where)
    with pytest.raises(StoreError) as info:
        Store(where / "qbench.db")
    assert "no space left" in str(info.value) and "corrupt" not in str(info.value)


def test_a_new_store_past_the_file_size_limit_says_no_space(tmp_path):
    """Where no tmpfs can be mounted: the child may write 8 KB per file (RLIMIT_FSIZE)."""
    db = tmp_path / "qbench.db"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
        from engines.store import Store, StoreError
        try:
            Store({str(db)!r})
        except StoreError as exc:
            print(exc)
    """)], capture_output=True, text=True, timeout=120, check=False)
    assert "no space left" in proc.stdout and "corrupt" not in proc.stdout, proc.stdout + proc.stderr[-2000:]


def test_a_truncated_store_is_refused_untouched(tmp_path):
    db = tmp_path / "qbench.db"
    _seeded(db, rows=200)
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    before = db.read_bytes()
    with pytest.raises(StoreError, match="corrupt"):
        Store(db)
    assert db.read_bytes() == before


def test_a_future_schema_is_refused_untouched(tmp_path):
    import sqlite3

    db = tmp_path / "qbench.db"
    _seeded(db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE qbench_meta SET value = '999' WHERE key = 'schema_version'")
    conn.close()
    before = db.stat().st_mtime_ns
    time.sleep(0.01)
    with pytest.raises(StoreError, match="newer qbench"):
        Store(db)
    assert db.stat().st_mtime_ns == before and integrity(db) == "ok"
