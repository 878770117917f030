"""MLflow tracking with the embedded default store (SQLite under $QBENCH_HOME): the outbox the
store fills in each result's transaction, the sender that drains it, a sweep read back with
MLflow's own client, ``qbench register`` / ``registry``, an unreachable server that loses nothing,
and the CLI's usage errors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from test_tui_support import async_test
from tracking_support import FAST, free_port, last_json, qbench, stored_results

from engines.store import Store
from engines.tracking import default_uri, resolve_uri

EMBEDDED = {"MLFLOW_TRACKING_URI": None}  # the CLI's processes use the embedded default


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


@pytest.fixture(scope="module")
def embedded_sweep(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`qbench run` with no tracking setting (the embedded default), then `qbench track --flush`,
    which waits for the background sender the run started."""
    db = tmp_path_factory.mktemp("embedded") / "qbench.db"
    run = qbench("run", "--model", "digits-mlp", "--methods", "fp32,int4:group_size=32", *FAST, "--db", str(db),
                 "--json", "-", env=EMBEDDED)
    assert run.returncode == 0, run.stderr
    body = json.loads(run.stdout)  # --json -: the body alone on stdout
    flush = qbench("track", "--flush", "--json", "--db", str(db), env=EMBEDDED)
    assert flush.returncode == 0, flush.stdout + flush.stderr
    assert last_json(flush.stdout)["queue"] == []
    int4 = next(r["id"] for r in body["results"] if r["method"] == "int4")
    reg = qbench("register", str(int4), "--alias", "best-cpu", "--json", "--db", str(db), env=EMBEDDED)
    assert reg.returncode == 0, reg.stderr
    return {"db": db, "run_id": body["run_id"], "results": body["results"], "registered": last_json(reg.stdout)}


@pytest.mark.slow
def test_a_sweep_logs_to_the_embedded_store_and_registers_a_variant(embedded_sweep: dict):
    """MLflow reads back the sweep's runs, params, metrics and artifacts from
    sqlite:///$QBENCH_HOME/mlflow.db; `register` makes a version whose tags an MLflow search finds."""
    from mlflow import MlflowClient

    run_id, results = embedded_sweep["run_id"], embedded_sweep["results"]
    env = EMBEDDED

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

    registered = embedded_sweep["registered"]  # `qbench register <int4 result> --alias best-cpu`
    assert registered["result_id"] == next(r["id"] for r in results if r["method"] == "int4")
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


@pytest.mark.slow
@async_test
async def test_register_from_the_app_and_compare_registry_versions(embedded_sweep: dict,
                                                                   monkeypatch: pytest.MonkeyPatch):
    """From the app: the sweep's fp32 result registered from the results table (ctrl+p → Register
    result in MLflow…) as digits-app; the registry lists it beside the CLI's digits-mlp int4 version
    and the two, marked, open in the compare view. MLflow runs in child processes only."""
    from test_tui_support import fixed_system, test_settings, wait_for, wait_ready
    from textual.widgets import DataTable, Input

    from qbench_tui.app import make_app
    from qbench_tui.screens.compare import CompareScreen
    from qbench_tui.screens.tracking import RegisterScreen, RegistryScreen

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = {m for m in sys.modules if m.startswith("mlflow")}  # another test may have imported it
    store = Store(embedded_sweep["db"])
    app = make_app(store=store, settings=test_settings(), system=fixed_system())
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_ready(pilot)
        assert app.main.tracking.uri == default_uri()
        await wait_for(pilot, lambda: not app.main.results_pane.tracking.busy, 60, "the start-up check of the queue")
        assert "queued" not in str(app.main.query_one("#topbar").render())
        table = app.main.results_pane.query_one(DataTable)
        names = {}
        # The fp32 result (the int4 one was registered by the CLI in the fixture); not the rows an
        # export's validation added to the store.
        wanted = {r["id"] for r in embedded_sweep["results"] if r["method"] == "fp32"}
        for row in range(table.row_count):
            table.move_cursor(row=row)
            await pilot.pause()
            result = app.main.results_pane.cursor_result()
            if result is None or result["id"] not in wanted:
                continue
            app.main.results_pane.tracking.register_result()
            await wait_for(pilot, lambda: isinstance(app.screen, RegisterScreen) and bool(
                app.screen.query("#register-alias")), 5, "the register dialog")
            app.screen.query_one("#register-name", Input).value = "digits-app"
            app.screen.query_one("#register-alias", Input).focus()
            await pilot.press("enter")
            done = len(names)
            await wait_for(pilot, lambda: len(app.main.results_pane.tracking.registered_versions) > done, 240,
                           "the registration")
            names[app.main.results_pane.tracking.registered_versions[-1]["version"]] = result["method"]
        assert list(names.values()) == ["fp32"]
        app.main.results_pane.tracking.show_registry()
        await wait_for(pilot, lambda: isinstance(app.screen, RegistryScreen) and app.screen.loaded, 120,
                       "the registry")
        screen = app.screen
        cli = embedded_sweep["registered"]
        keys = [f"{v['name']}/{v['version']}" for v in screen.versions]
        mine = next(v for v in screen.versions if v["name"] == "digits-app")
        theirs = next(v for v in screen.versions if (v["name"], v["version"]) == (cli["name"], cli["version"]))
        assert mine["tags"]["quant.method"] == "fp32" and theirs["aliases"] == ["best-cpu"]
        assert theirs["tags"]["quant.group_size"] == "32"
        table = screen.query_one("#registry-table", DataTable)
        for key in (f"digits-app/{mine['version']}", f"{cli['name']}/{cli['version']}"):  # two registered models
            table.move_cursor(row=keys.index(key))
            await pilot.press("space")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen), 5, "the compare view")
        text = str(app.screen.query_one("#compare-text").render())
        assert f"digits-app v{mine['version']}" in text and f"{cli['name']} v{cli['version']}" in text
        assert "faster at the median" in text
    store.close()
    assert {m for m in sys.modules if m.startswith("mlflow")} == before, "the app's process imported MLflow"

def test_a_run_whose_process_died_is_ended_in_mlflow_too(db_path: Path):
    """A run left 'running' by a dead process becomes 'interrupted' when the store is next opened;
    its tracking URIs get a run_ended entry, so the MLflow run does not stay RUNNING."""
    store = Store(db_path)
    uri = "sqlite:////nowhere/mlflow.db"
    from engines.store.sinks import SqliteSink

    SqliteSink(store, outbox=uri).run_started("dead-run", "digits-mlp", {}, {}, "test")
    with store.conn:
        store.conn.execute("UPDATE runs SET pid = 999999999 WHERE id = 'dead-run'")
    store.close()
    reopened = Store(db_path)
    kinds = [k for (k,) in reopened.conn.execute("SELECT kind FROM tracking_outbox WHERE run_id = 'dead-run' "
                                                   "ORDER BY id")]
    assert reopened.get_run("dead-run")["status"] == "interrupted" and kinds == ["run_started", "run_ended"]
    reopened.close()
