"""Repeated rounds, the variant's memory per phase, fail-fast model errors, the schema.

Real sweeps on the built-in digits model, real child processes (forked from the preloaded server
on Linux), a real SQLite store."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engines.analysis import paired
from engines.bench import rounds
from engines.core.schema import Result
from engines.methods.recipe import parse_recipes
from tests.helpers import FAST, qbench, qbench_json


def _round(index: int, p50: float, other: float = 0.0) -> dict:
    return {"round": index, "latency": {"p50": p50, "p90": p50, "p99": p50, "mean": p50, "std": 0.0, "iqr": 0.0,
                                        "min": p50, "max": p50, "samples": 10}, "other_cpu": other}


def test_rounds_combine_median_of_medians_spread_and_flags():
    latency, spread, flags = rounds.combine([_round(0, 1.0), _round(1, 1.02), _round(2, 1.5)])
    assert latency["p50"] == 1.02 and latency["samples"] == 30
    assert spread == pytest.approx(0.5 / 1.02) and flags == ["unstable"]
    # a round under load is left out when quiet ones exist; all under load is flagged
    latency, spread, flags = rounds.combine([_round(0, 1.0), _round(1, 5.0, other=1.5), _round(2, 1.01)])
    assert latency["p50"] == pytest.approx(1.005) and flags == []
    _, _, flags = rounds.combine([_round(0, 1.0, other=1.0), _round(1, 1.0, other=0.9)])
    assert flags == ["under-load"]
    latency, spread, flags = rounds.combine([_round(0, 2.0, other=1.2)])  # --repeat 1 on a busy machine
    assert latency["p50"] == 2.0 and spread is None and flags == ["under-load"]


def test_speedup_is_the_median_of_per_round_ratios():
    # the machine slows by 2x in round 1: both variants see it, the paired ratio does not
    base = {"rounds": [_round(0, 2.0), _round(1, 4.0), _round(2, 2.0)]}
    fast = {"rounds": [_round(0, 1.0), _round(1, 2.0), _round(2, 1.1)]}
    s = paired.speedup(base, fast)
    assert s["ratio"] == pytest.approx(2.0) and s["rounds"] == 3 and s["low"] == pytest.approx(2 / 1.1)
    assert rounds.round_order(["a", "b", "c", "d"], 0) == rounds.round_order(["a", "b", "c", "d"], 0)
    assert {tuple(rounds.round_order(list("abcd"), i)) for i in range(6)} != {tuple("abcd")}


def test_result_round_trips_the_new_fields_through_sqlite(store):
    result = Result(model="m", method="fp32", runtime="onnxruntime", device="cpu", batch_size=1, recipe_id="r",
                    memory_mb=21.5, memory={"open_mb": 16.0, "load_mb": 3.0}, rounds=[_round(0, 1.0)],
                    spread=0.03, flags=["under-load"])
    store.create_run("run1", "m", {}, {}, "test")
    store.add_result("run1", result)
    back = store.results("run1")[0]
    assert back["memory_mb"] == 21.5 and back["memory"]["open_mb"] == 16.0
    assert back["rounds"][0]["latency"]["p50"] == 1.0 and back["spread"] == 0.03 and back["flags"] == ["under-load"]


def test_a_version_2_store_migrates_to_3(tmp_path: Path):
    import sqlite_utils

    from engines.store import SCHEMA_VERSION, Store
    from engines.store.migrations import MIGRATIONS

    path = tmp_path / "v2.db"
    db = sqlite_utils.Database(path)
    db["qbench_meta"].create({"key": str, "value": str}, pk="key")
    db["qbench_meta"].insert_all([{"key": "app", "value": "qbench"}, {"key": "schema_version", "value": "2"}])
    MIGRATIONS[0](db)
    MIGRATIONS[1](db)
    db["runs"].insert({"id": "old", "status": "finished", "request": "{}", "environment": "{}"})
    db["results"].insert({"run_id": "old", "model": "m", "method": "fp32", "runtime": "onnxruntime", "device": "cpu",
                          "batch_size": 1, "status": "ok", "recipe_id": "x", "latency_p50_ms": 1.0, "config": "{}",
                          "peak_rss_mb": 800.0})
    db.conn.close()
    store = Store(path)
    assert store.schema_version == SCHEMA_VERSION >= 3
    old = store.results("old")[0]
    assert old["memory_mb"] is None and old["rounds"] == [] and old["flags"] == [] and old["peak_rss_mb"] == 800.0
    store.close()


@pytest.mark.slow
def test_repeat_3_gives_rounds_spread_and_the_variants_own_memory(tmp_path: Path):
    """digits-mlp on ONNX Runtime fp32: its memory is the variant's (tens of MB), not the process's
    (hundreds: torch, the reference); three interleaved rounds each, a spread, per-phase figures."""
    db = tmp_path / "q.db"
    proc, out = qbench_json("--db", str(db), "run", "--model", "digits-mlp", "--methods", "fp32,dynamic-int8",
                            "--runtimes", "onnxruntime", "--repeat", "3", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {r["method"]: r for r in out["results"]}
    fp32 = results["fp32"]
    assert fp32["memory_mb"] < 100, fp32["memory"]
    assert fp32["peak_rss_mb"] > fp32["memory_mb"]  # the process peak stays, as a detail
    for key in ("baseline_mb", "load_mb", "open_mb", "timing_peak_mb", "timing_growth_mb", "process_peak_mb"):
        assert fp32["memory"][key] is not None, key
    assert len(fp32["rounds"]) >= 3 and {r["round"] for r in fp32["rounds"]} >= {0, 1, 2}
    assert fp32["spread"] is not None and all("other_cpu" in r for r in fp32["rounds"])
    assert fp32["runtime_info"]["thread_pool"]["omp_wait_policy"] == "PASSIVE"
    speedup = results["dynamic-int8"]["metrics"]["speedup_vs_fp32"]
    # paired by round; rounds measured under load on one side only are left out of the pairs
    assert speedup["rounds"] >= 1 and speedup["low"] <= speedup["ratio"] <= speedup["high"]
    row = sqlite3.connect(db).execute("SELECT memory_mb, spread, rounds FROM results WHERE method = 'fp32'").fetchone()
    assert row[0] == pytest.approx(fp32["memory_mb"]) and len(json.loads(row[2])) == len(fp32["rounds"])
    assert "mem MB" in qbench("--db", str(db), "results").stdout


@pytest.mark.slow
def test_an_unsupported_architecture_fails_once_before_any_variant(tmp_path: Path):
    """An object-detection folder: exit 2, one message saying what is missing, one child in all (not
    one per variant)."""
    folder = tmp_path / "yolos"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["YolosForObjectDetection"], "model_type": "yolos", "hidden_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 37, "image_size": 30,
        "patch_size": 2, "num_labels": 3}))
    from safetensors.numpy import save_file

    save_file({"vit.embeddings.cls_token": __import__("numpy").zeros((1, 1, 32), "float32")},
              str(folder / "model.safetensors"))
    db = tmp_path / "q.db"
    proc = qbench("--db", str(db), "run", "--model", str(folder), "--methods", "fp32,dynamic-int8,static-int8",
                  "--runtimes", "onnxruntime,torch", *FAST)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("qbench: error:")]
    assert len(errors) == 1 and "object detection models" in errors[0] and "not supported" in errors[0]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM results").fetchone()[0] == 0
    assert conn.execute("SELECT status FROM runs").fetchone()[0] == "failed"
    # one child started: one variant folder holds a worker log, the others none
    logs = list((Path(__import__("os").environ["QBENCH_HOME"]) / "artifacts").glob("*/*/worker.log"))
    run_id = conn.execute("SELECT id FROM runs").fetchone()[0]
    assert len([p for p in logs if p.parent.parent.name == run_id]) == 1


def test_fork_server_children_are_isolated_and_cheap(tmp_path: Path, store, fast_measure):
    """A crashing variant ends alone; the next one still measures, forked from the same server."""
    import os

    from engines.bench.runner import SweepRequest, SweepRunner

    os.environ["QBENCH_FAULT"] = "crash:dynamic-int8"
    try:
        request = SweepRequest(model="digits-mlp", methods=parse_recipes(("dynamic-int8", "fp32")), runtimes=("onnxruntime",),
                               measure=fast_measure)
        outcome = SweepRunner(store).run(request)
    finally:
        del os.environ["QBENCH_FAULT"]
    by_method = {r["method"]: r for r in outcome.results}
    assert by_method["dynamic-int8"]["status"] == "failed" and "SIGABRT" in by_method["dynamic-int8"]["error"]
    assert by_method["fp32"]["status"] == "ok"
    if sys.platform.startswith("linux"):
        assert by_method["fp32"]["runtime_info"]["thread_pool"]["launcher"] == "fork"


def test_spawn_launcher_still_works(tmp_path: Path):
    db = tmp_path / "q.db"
    proc, out = qbench_json("--db", str(db), "run", "--model", "digits-mlp", "--methods", "fp32",
                            "--repeat", "1", *FAST, env={"QBENCH_LAUNCHER": "spawn"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = out["results"][0]
    assert r["status"] == "ok" and r["runtime_info"]["thread_pool"]["launcher"] == "spawn"
    assert len(r["rounds"]) == 1 and r["spread"] is None


def test_no_process_left_after_a_sweep(tmp_path: Path):
    """Every child ends with its sweep, and so does the fork server (it would hold torch's memory
    beside an idle app)."""
    db = tmp_path / "q.db"
    proc = subprocess.run([sys.executable, "-c", (
        "import sys, psutil; from qbench_tui.cli import main; rc = main(sys.argv[1:]); "
        "print('LEFT', len(psutil.Process().children(recursive=True))); sys.exit(rc)"),
        "--db", str(db), "run", "--model", "digits-mlp", "--methods", "fp32,dynamic-int8", *FAST],
        capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LEFT 0" in proc.stdout, proc.stdout[-500:]
