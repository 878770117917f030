"""MLflow tracking with the embedded default store (SQLite under $QBENCH_HOME): the outbox the
store fills in each result's transaction, the sender that drains it, a sweep read back with
MLflow's own client, ``qbench register`` / ``registry``, an unreachable server that loses nothing,
and the CLI's usage errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tracking_support import FAST, free_port, last_json, qbench, stored_results

from engines.store import Store
from engines.tracking import default_uri, resolve_uri


def test_the_uri_comes_from_the_flag_then_the_environment_then_the_setting():
    assert resolve_uri(None, None, {}) == default_uri()
    assert default_uri().startswith("sqlite:///") and default_uri().endswith("/mlflow.db")
    assert resolve_uri(None, "http://team:5000", {}) == "http://team:5000"
    env = {"MLFLOW_TRACKING_URI": "http://env:5000"}
    assert resolve_uri(None, "http://team:5000", env) == "http://env:5000"
    assert resolve_uri("http://flag:5000", "http://team:5000", env) == "http://flag:5000"
    assert resolve_uri("off", None, env) is None
    assert resolve_uri(None, None, {"MLFLOW_TRACKING_URI": "OFF"}) is None
    assert resolve_uri(None, "off", {}) is None


def test_each_result_is_queued_in_its_own_transaction(store: Store):
    uri = "sqlite:////nowhere/mlflow.db"
    stored_results(store, uri, [{"method": "fp32"}, {"method": "dynamic-int8"}])
    stored_results(store, None, [{"method": "fp32"}])  # tracking off: nothing queued
    rows = store.conn.execute("SELECT kind, result_id IS NOT NULL FROM tracking_outbox ORDER BY id").fetchall()
    assert rows == [("run_started", 0), ("result", 1), ("result", 1), ("run_ended", 0)]
    assert store.tracking_queue() == [{"uri": uri, "results": 2, "entries": 4, "failed": 0, "last_error": None}]
    ids = {r["id"] for r in store.results()}
    queued = {rid for (rid,) in store.conn.execute("SELECT result_id FROM tracking_outbox WHERE kind = 'result'")}
    assert queued <= ids and len(queued) == 2


def test_an_unreachable_server_keeps_every_result_queued(store: Store, tmp_path: Path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    stored_results(store, uri, [{"method": "fp32"}, {"method": "dynamic-int8"}, {"method": "int4"}])
    out = qbench("track", "--flush", "--json", "--db", str(store.path), "--mlflow-uri", uri)
    assert out.returncode == 1, out.stderr
    body = last_json(out.stdout)
    assert body["flush"]["sent"] == 0 and "unreachable" in body["flush"]["errors"][uri]
    [queue] = body["queue"]
    assert queue["results"] == 3 and queue["entries"] == 5 and "unreachable" in queue["last_error"]
    # Said in one line by `qbench track`.
    text = qbench("track", "--db", str(store.path), "--mlflow-uri", uri).stdout
    assert f"3 result(s) queued for {uri}" in text and "unreachable" in text


def test_bad_tracking_input_is_one_line_and_exit_2(tmp_path: Path):
    db = str(tmp_path / "q.db")
    cases = [
        ("run", "--model", "digits-mlp", "--methods", "fp32", "--mlflow-uri", "bogus", "--db", db),
        ("register", "12345", "--db", db, "--mlflow-uri", f"sqlite:///{tmp_path}/m.db"),
        ("registry", "--where", "no-equals-sign", "--mlflow-uri", f"sqlite:///{tmp_path}/m.db"),
        ("register", "1", "--db", db, "--mlflow-uri", "off"),
    ]
    for args in cases:
        out = qbench(*args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("qbench: error:"), (args, out.stderr)


@pytest.mark.slow
def test_a_sweep_logs_to_the_embedded_store_and_registers_a_variant(tmp_path: Path):
    """`qbench run` with no tracking setting logs to sqlite:///$QBENCH_HOME/mlflow.db (a background
    sender after the sweep); MLflow reads back runs, params, metrics and artifacts; `register`
    makes a version whose tags are found by an MLflow search."""
    from mlflow import MlflowClient

    db = tmp_path / "qbench.db"
    env = {"MLFLOW_TRACKING_URI": None}  # the embedded default
    run = qbench("run", "--model", "digits-mlp", "--methods", "fp32,int4:group_size=32", *FAST, "--db", str(db),
                 "--json", "-", env=env)
    assert run.returncode == 0, run.stderr
    body = json.loads(run.stdout)  # --json -: the body alone on stdout
    run_id = body["run_id"]
    flush = qbench("track", "--flush", "--json", "--db", str(db), env=env)  # waits for the background sender
    assert flush.returncode == 0, flush.stdout + flush.stderr
    assert last_json(flush.stdout)["queue"] == []

    uri = default_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("qbench/digits-mlp")
    assert experiment is not None
    assert experiment.artifact_location.startswith(Path(os.environ["QBENCH_HOME"]).resolve().as_uri())
    runs = client.search_runs([experiment.experiment_id], f"tags.`qbench.run_id` = '{run_id}'")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    nested = {r.data.tags["quant.method"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    [parent] = parents
    assert parent.info.run_name == run_id and parent.info.status == "FINISHED"
    assert parent.data.params["model"] == "digits-mlp"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"environment.json", "request.json"}
    assert set(nested) == {"fp32", "int4"}
    int4 = nested["int4"]
    assert int4.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert int4.data.params["config.group_size"] == "32" and int4.data.params["runtime"] == "onnxruntime"
    assert int4.data.params["device"] == "cpu" and "threads" in int4.data.params
    for metric in ("latency_p50_ms", "latency_p99_ms", "throughput_per_s", "memory_mb", "size_mb", "accuracy",
                   "agreement_top1", "speedup_vs_fp32"):
        assert metric in int4.data.metrics, metric
    assert int4.data.tags["quant.bits"] == "4" and int4.data.tags["quant.group_size"] == "32"
    assert int4.data.tags["bench.runtime"] == "onnxruntime" and int4.data.tags["bench.device"] == "cpu"
    artifacts = {a.path for a in client.list_artifacts(int4.info.run_id)}
    assert "result.json" in artifacts and "model" in artifacts
    assert any(a.path.endswith(".onnx") for a in client.list_artifacts(int4.info.run_id, "model"))

    result_id = next(r["id"] for r in body["results"] if r["method"] == "int4")
    reg = qbench("register", str(result_id), "--alias", "best-cpu", "--json", "--db", str(db), env=env)
    assert reg.returncode == 0, reg.stderr
    registered = last_json(reg.stdout)
    found = client.search_model_versions(
        "name = 'digits-mlp' and tags.`quant.method` = 'int4' and tags.`quant.bits` = '4' and "
        "tags.`quant.group_size` = '32' and tags.`bench.runtime` = 'onnxruntime' and tags.`bench.device` = 'cpu'")
    version = next(v for v in found if v.version == int(registered["version"]))
    assert float(version.tags["bench.speedup_vs_fp32"]) > 0
    assert version.run_id == int4.info.run_id and version.tags["export.format"] == "onnx"
    assert version.tags["export.how"] == "export" and version.tags["export.validated"] == "true"
    exported = {a.path for a in client.list_artifacts(int4.info.run_id, "export/onnx")}
    assert {"export/onnx/model.onnx", "export/onnx/qbench.json", "export/onnx/deploy"} <= exported
    assert client.get_model_version_by_alias("digits-mlp", "best-cpu").version == version.version
    listed = qbench("registry", "--where", "quant.method=int4", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = [v for v in last_json(listed.stdout)["versions"] if v["version"] == registered["version"]]
    assert rows and rows[0]["aliases"] == ["best-cpu"] and rows[0]["tags"]["quant.group_size"] == "32"
