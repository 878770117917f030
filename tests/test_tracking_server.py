"""Tracking against a real ``mlflow server`` started on loopback (once for the module): a sweep
whose server stops mid-sweep loses nothing (its logs wait in the store's outbox and arrive once
the server is back), and ``register`` on that server creates a version found by its tags."""

from __future__ import annotations

from pathlib import Path

import pytest
from tracking_support import MlflowServer, last_json, qbench

from engines.methods.recipe import parse_recipes
from engines.store import Store
from engines.tracking import sinks_for
from engines.tracking.sender import drain

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    srv.start()  # about 20 s on a busy 2-core machine (the first start creates the tables)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def swept(server: MlflowServer, tmp_path_factory: pytest.TempPathFactory):
    """A real sweep (digits-mlp: fp32 and int4 with group size 32 on ONNX Runtime) whose tracking
    server is stopped as soon as the first result is stored, then started again after the sweep."""
    from engines.bench.measure import MeasureSettings
    from engines.bench.runner import SweepRequest, SweepRunner
    from engines.core import events

    db = tmp_path_factory.mktemp("swept") / "qbench.db"
    store = Store(db)
    stopped: list[str] = []

    def on_event(event: events.SweepEvent) -> None:
        if isinstance(event, events.ResultRecorded) and not stopped:
            server.stop()  # mid-sweep: the second result is measured with the server down
            stopped.append(event.result["method"])

    request = SweepRequest(model="digits-mlp", methods=parse_recipes(("fp32", "int4:group_size=32")), runtimes=("onnxruntime",),
                           devices=("cpu",), batch_sizes=(1,),
                           measure=MeasureSettings(warmup_reps=2, warmup_s=0.0, min_reps=5, min_time_s=0.05,
                                                   max_time_s=2.0, repeat=1))
    outcome = SweepRunner(store, on_event, sinks=sinks_for(store, server.uri, drain_on_end=False)).run(request)
    assert stopped and [r["status"] for r in outcome.results] == ["ok", "ok"]
    down = drain(db)  # the sweep's end: the server is down
    queue = store.tracking_queue()
    store.close()
    server.start()
    return {"db": db, "run_id": outcome.run_id, "results": outcome.results, "down": down, "queue": queue}


def test_a_server_stopped_mid_sweep_loses_nothing(server: MlflowServer, swept: dict):
    from mlflow import MlflowClient

    assert swept["down"]["sent"] == 0 and "unreachable" in swept["down"]["errors"][server.uri]
    [queued] = swept["queue"]
    assert queued["uri"] == server.uri and queued["results"] == 2 and queued["entries"] == 4
    back = drain(swept["db"])  # the server is back: the queued logs arrive
    assert back["sent"] == 2 and back["errors"] == {} and back["queue"] == []

    client = MlflowClient(tracking_uri=server.uri)
    experiment = client.get_experiment_by_name("qbench/digits-mlp")
    runs = client.search_runs([experiment.experiment_id], f"tags.`qbench.run_id` = '{swept['run_id']}'")
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    nested = {r.data.tags["quant.method"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert set(nested) == {"fp32", "int4"} and parent.info.status == "FINISHED"
    for run in nested.values():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.params["runtime"] == "onnxruntime" and "latency_p50_ms" in run.data.metrics
        assert "result.json" in {a.path for a in client.list_artifacts(run.info.run_id)}  # proxied artifacts
    assert nested["int4"].data.metrics["speedup_vs_fp32"] > 0
    again = drain(swept["db"])  # nothing is logged twice
    assert again["sent"] == 0 and len(client.search_runs([experiment.experiment_id],
                                                         f"tags.`qbench.run_id` = '{swept['run_id']}'")) == 3


def test_register_on_the_server_is_found_by_its_tags(server: MlflowServer, swept: dict):
    from mlflow import MlflowClient

    result_id = next(r["id"] for r in swept["results"] if r["method"] == "int4")
    out = qbench("register", str(result_id), "--name", "digits-int4", "--alias", "best-cpu", "--json",
                 "--db", str(swept["db"]), "--mlflow-uri", server.uri)
    assert out.returncode == 0, out.stderr
    registered = last_json(out.stdout)
    client = MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)
    [version] = client.search_model_versions(
        "name = 'digits-int4' and tags.`quant.method` = 'int4' and tags.`quant.bits` = '4' "
        "and tags.`quant.group_size` = '32' and tags.`bench.runtime` = 'onnxruntime' and tags.`bench.device` = 'cpu'")
    assert str(version.version) == registered["version"]
    assert float(version.tags["bench.speedup_vs_fp32"]) > 0
    assert client.get_model_version_by_alias("digits-int4", "best-cpu").version == version.version
    assert version.source.endswith("/export/onnx") and version.tags["export.validated"] == "true"
    files = {a.path for a in client.list_artifacts(version.run_id, "export/onnx")}
    assert {"export/onnx/model.onnx", "export/onnx/qbench.json", "export/onnx/validation.json"} <= files


def test_an_unreachable_registry_is_a_usage_error(tmp_path: Path):
    from tracking_support import free_port

    out = qbench("registry", "--mlflow-uri", f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 2 and "unreachable" in out.stderr
