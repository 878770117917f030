"""The monitor's parts on real Prometheus output (prometheus-client's own exposition), the drift
rules, and the re-optimization suggested from a real store."""

from __future__ import annotations

import pytest

from tests.helpers import needs

# Found, not imported, at collection (every xdist worker collects every module).
pytestmark = [needs("prometheus_client")]


class FakeService:
    """prometheus-client metrics shaped like the exported service's; ``fetch`` is the scrape."""

    def __init__(self, result_id: str = "1"):
        from prometheus_client import CollectorRegistry, Counter, Histogram, Info, generate_latest

        self.generate_latest = generate_latest

        self.registry = CollectorRegistry()
        self.latency = Histogram("qbench_request_latency_seconds", "t", ["endpoint"], registry=self.registry,
                                 buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))
        Histogram("qbench_inference_seconds", "model only", registry=self.registry).observe(5.0)
        self.requests = Counter("qbench_requests", "by status", ["status"], registry=self.registry)
        Info("qbench_model", "m", registry=self.registry).info({"model": "digits-mlp", "result_id": result_id,
                                                                  "label": 'int4 "g64"'})

    def serve(self, n: int, seconds: float, status: str = "200") -> None:
        for _ in range(n):
            self.latency.labels(endpoint="/predict").observe(seconds)
            self.requests.labels(status=status).inc()

    def fetch(self, url: str) -> str:
        assert url.endswith("/metrics")
        return self.generate_latest(self.registry).decode()


def test_the_exposition_is_read_by_shape():
    from engines.ops.prometheus import histogram_quantile, read_scrape, window

    svc = FakeService()
    svc.serve(90, 0.002)
    svc.serve(10, 0.02, status="500")
    scrape = read_scrape(svc.fetch("http://x/metrics"))
    assert scrape.latency_metric == "qbench_request_latency_seconds"  # not the inference histogram
    assert scrape.requests == {"200": 90.0, "500": 10.0}
    assert scrape.info["result_id"] == "1" and scrape.info["label"] == 'int4 "g64"'
    w = window(None, scrape)
    assert w["requests"] == 100 and w["error_rate"] == pytest.approx(0.1)
    assert w["latency_mean_ms"] == pytest.approx(0.9 * 2 + 0.1 * 20)
    assert 10.0 <= w["latency_p95_ms"] <= 25.0
    assert histogram_quantile(0.5, [(1.0, 0.0), (float("inf"), 0.0)]) is None


def test_a_malformed_exposition_says_which_line():
    from engines.ops.prometheus import parse_exposition

    with pytest.raises(ValueError, match="line 2"):
        parse_exposition("# TYPE a counter\na_total{status=200} 1\n")


def test_baseline_then_drift_alerts_only_over_enough_requests():
    from engines.ops.monitor import Monitor, Thresholds

    svc = FakeService()
    svc.serve(500, 0.5)  # history before the watch began: not part of any window
    saved = []
    mon = Monitor("http://127.0.0.1:1/metrics", Thresholds(min_requests=50, latency_ratio=1.5, error_rate=0.05),
                  fetch=svc.fetch, on_baseline=saved.append)
    mon.start()
    svc.serve(30, 0.002)
    assert mon.poll().state == "collecting"  # 30 < 50: not judged, window stays open
    svc.serve(30, 0.002)
    report = mon.poll()
    assert report.state == "baseline" and saved and saved[0]["requests"] == 60
    assert saved[0]["latency_mean_ms"] == pytest.approx(2.0)
    svc.serve(60, 0.0025)
    assert mon.poll().state == "ok"  # 1.25× is within 1.5×
    svc.serve(10, 0.05)
    assert mon.poll().state == "collecting"  # slow, but only 10 requests
    svc.serve(50, 0.05)
    report = mon.poll()
    assert report.state == "alert"
    kinds = {a["metric"] for a in report.alerts}
    assert "latency_mean_ms" in kinds and "p95" in " ".join(a["message"] for a in report.alerts)
    svc.serve(40, 0.002)
    svc.serve(20, 0.002, status="500")
    report = mon.poll()
    assert [a["kind"] for a in report.alerts] == ["errors"]


def test_a_restarted_server_starts_a_new_window():
    from engines.ops.monitor import Monitor, Thresholds

    first, second = FakeService(), FakeService()
    first.serve(100, 0.002)
    current = {"svc": first}
    mon = Monitor("http://x", Thresholds(min_requests=20), fetch=lambda url: current["svc"].fetch(url))
    mon.start()
    current["svc"] = second
    second.serve(25, 0.002)
    report = mon.poll()
    assert report.window["restarted"] and report.window["requests"] == 25 and report.state == "baseline"


def _result(store, run: str, method: str, p50: float, accuracy: float, device: str = "cpu") -> int:
    from engines.store import Result

    store.add_result(run, Result(model="digits-mlp", method=method, recipe_id=method, runtime="onnxruntime",
                                 device=device, batch_size=1, latency_ms={"p50": p50}, accuracy=accuracy))
    return store.results(where="method = ? AND device = ?", params=[method, device])[-1]["id"]


def test_suggestions_name_a_faster_measured_recipe_or_the_sweep(store):
    from engines.analysis.reoptimize import suggest_reoptimization
    from engines.store.ops_tables import get_result

    store.create_run("r", "digits-mlp", {}, {}, "test")
    served = _result(store, "r", "fp32", 1.0, 0.97)
    _result(store, "r", "int4", 0.5, 0.90)  # faster, but loses 7 points
    fast = _result(store, "r", "dynamic-int8", 0.6, 0.965)
    _result(store, "r", "static-int8", 0.3, 0.97, device="cuda")  # another device
    out = suggest_reoptimization(store, get_result(store, served))
    assert [b["id"] for b in out["better"]] == [fast]
    assert out["better"][0]["speedup"] == pytest.approx(1 / 0.6)
    assert "dynamic-int8" in out["text"] and f"qbench serve {fast}" in out["text"]
    best = suggest_reoptimization(store, get_result(store, fast))
    assert best["better"] == [] and "run the sweep" in best["text"]
    assert best["sweep"]["argv"][:5] == ["run", "--model", "digits-mlp", "--methods", "auto"]
    from qbench_tui.cli import build_parser  # the suggested sweep is a valid `qbench run`

    args = build_parser().parse_args(best["sweep"]["argv"])
    assert (args.command, args.model, args.methods, args.devices) == ("run", "digits-mlp", ("auto",), ("cpu",))


def test_the_session_keeps_the_baseline_and_suggests_on_an_alert(store):
    from engines.ops.monitor import Thresholds
    from engines.ops.session import MonitorSession

    store.create_run("r", "digits-mlp", {}, {}, "test")
    served = _result(store, "r", "fp32", 1.0, 0.97)
    _result(store, "r", "dynamic-int8", 0.6, 0.97)
    svc = FakeService(result_id=str(served))
    session = MonitorSession("http://127.0.0.1:9/", store, Thresholds(min_requests=10), fetch=svc.fetch)
    assert session.start()["result_id"] == served
    svc.serve(10, 0.002)
    assert session.poll()["state"] == "baseline"
    # A second watch of the same URL reuses the stored baseline and judges its first window.
    again = MonitorSession("http://127.0.0.1:9", store, Thresholds(min_requests=10), fetch=svc.fetch)
    assert again.start()["baseline"]["latency_mean_ms"] == pytest.approx(2.0)
    svc.serve(10, 0.02)
    report = again.poll()
    assert report["state"] == "alert" and "dynamic-int8" in report["suggestion"]["text"]


@pytest.mark.slow
def test_model_at_alias_resolves_through_the_mlflow_registry(store, tmp_path):
    """``serve NAME@ALIAS``: the alias's model version names the result in its qbench.result_id tag."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from engines.ops.serving import ServeError, resolve_target

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store.create_run("r", "digits-mlp", {}, {}, "test")
    served = _result(store, "r", "fp32", 1.0, 0.97)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("digits")
    version = client.create_model_version("digits", source=str(tmp_path), tags={"qbench.result_id": str(served)})
    client.set_registered_model_alias("digits", "champion", version.version)
    assert resolve_target(store, "digits@champion", uri) == served
    assert resolve_target(store, str(served), uri) == served
    with pytest.raises(ServeError, match="not in the registry"):
        resolve_target(store, "digits@nope", uri)
    with pytest.raises(ServeError, match="no result 999"):
        resolve_target(store, "999", uri)


def test_every_ops_setting_has_a_default_a_file_an_environment_variable_and_an_option(tmp_path, monkeypatch,
                                                                                     capsys):
    import json as _json

    from engines.ops.config import load_ops_config
    from qbench_tui.cli import main

    monkeypatch.setenv("QBENCH_HOME", str(tmp_path))
    default = load_ops_config(environ={})
    assert default.dvc_repo_path() == tmp_path / "dvc" / "repo"
    assert default.dvc_remote_url() == str(tmp_path / "dvc" / "remote")
    (tmp_path / "ops.json").write_text(_json.dumps({"serve_port": 9100, "monitor_min_requests": 10}))
    config = load_ops_config({"monitor_min_requests": 7}, environ={"QBENCH_SERVE_PORT": "9200"})
    assert (config.serve_port, config.monitor_min_requests) == (9200, 7)
    own = load_ops_config(environ={"QBENCH_DVC_REPO": str(tmp_path / "mine")})
    assert own.dvc_remote_url() is None  # a user's repository keeps its own default remote
    with pytest.raises(ValueError, match="monitor_latency_ratio"):
        load_ops_config({"monitor_latency_ratio": 0.5}, environ={})
    assert main(["monitor", "http://127.0.0.1:9", "--latency-ratio", "0.5"]) == 2
    assert "monitor_latency_ratio must be above 1" in capsys.readouterr().err
    assert main(["monitor", "ftp://x"]) == 2
