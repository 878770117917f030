"""Serve and monitor on real parts: a digits-mlp result exported (ONNX, validated) and versioned by
``qbench version``, the export's own FastAPI service run by ``qbench serve`` under uvicorn on
loopback, real HTTP, and ``qbench monitor`` / the app's monitor view alerting when the server is
slowed down by a real delay (the service's ``QBENCH_FAULT_DELAY_FILE`` hook)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import needs
from test_tui_support import async_test

# Found, not imported, at collection (every xdist worker collects every module).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), needs("fastapi", "uvicorn", "prometheus_client", "dvc")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, payload) -> dict:
    req = urllib.request.Request(url + "/predict", json.dumps(payload).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read())


class Load:
    """Keeps posting one-row requests to the service from a thread, as a client would."""

    def __init__(self, url: str, row: list[float]):
        self.url, self.row, self.stop, self.count = url, row, threading.Event(), 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                _post(self.url, {"inputs": [self.row]})
                self.count += 1
            except OSError:
                time.sleep(0.05)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.fixture(scope="module")
def ops_home(tmp_path_factory):
    """A store with a digits-mlp run: the served fp32 result and a faster dynamic-int8 one."""
    from engines.methods.recipe import parse_recipe
    from engines.store import Result, Store

    home = tmp_path_factory.mktemp("ops-home")
    store = Store(home / "qbench.db")
    store.create_run("run-1", "digits-mlp", {"model": "digits-mlp"}, {}, "test")
    ids = {}
    for method, p50, accuracy, top1 in (("fp32", 0.20, 0.975, 1.0), ("dynamic-int8", 0.06, 0.972, 0.995)):
        recipe = parse_recipe(method)
        store.add_result("run-1", Result(model="digits-mlp", method=method, recipe_id=recipe.id, label=recipe.label,
                                         recipe=recipe.to_list(), runtime="onnxruntime", device="cpu", batch_size=1,
                                         latency_ms={"p50": p50}, accuracy=accuracy, agreement={"top1": top1}))
        ids[method] = store.results(where="method = ?", params=[method])[0]["id"]
    store.close()
    return home, ids


def _env(home: Path, **extra: str) -> dict[str, str]:
    """The session's QBENCH_HOME (its trained built-in models), with this module's exports and DVC
    repository and remote (settings) and store (``--db``) of its own."""
    return {**os.environ, "QBENCH_EXPORTS_DIR": str(home / "exports"), "QBENCH_DVC_REPO": str(home / "dvc" / "repo"),
            "QBENCH_DVC_REMOTE": str(home / "dvc" / "remote"), **extra}


@pytest.fixture(scope="module")
def served(ops_home):
    """`qbench version` exports and versions the fp32 result; `qbench serve` runs it on loopback."""
    home, ids = ops_home
    out = subprocess.run([sys.executable, "-m", "qbench_tui", "version", str(ids["fp32"]), "--json",
                          "--db", str(home / "qbench.db")],
                         capture_output=True, text=True, timeout=300, env=_env(home))
    assert out.returncode == 0, out.stderr
    version = json.loads(out.stdout)
    delay = home / "delay"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "qbench_tui", "serve", str(ids["fp32"]), "--port", str(port),
                             "--db", str(home / "qbench.db")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env(home, QBENCH_FAULT_DELAY_FILE=str(delay)))
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.3)
        else:
            pytest.fail("qbench serve did not answer /healthz in 180 s")
        yield {"url": url, "delay": delay, "home": home, "ids": ids, "version": version, "proc": proc}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_version_exports_the_result_and_serve_answers_predict_and_metrics(served):
    """/predict gives the exported model's own outputs (ONNX Runtime on the same file) and the right
    digits; /metrics is Prometheus text with the latency histogram, requests by status, model info."""
    import numpy as np
    import onnxruntime as ort
    from prometheus_client.parser import text_string_to_metric_families

    from engines.models.digits import digits_splits

    home, ids, version = served["home"], served["ids"], served["version"]
    export = home / "exports" / f"result-{ids['fp32']}" / "onnx"
    assert version["md5"].endswith(".dir") and (export / "model.onnx").is_file()
    assert json.loads((export / "qbench.json").read_text())["source_result_id"] == ids["fp32"]

    x, y = digits_splits()["test"]
    rows = x[:64].astype(np.float32)
    body = _post(served["url"], {"inputs": rows.tolist()})
    logits = np.asarray(next(iter(body["outputs"].values())), dtype=np.float32)
    session = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: rows})[0]
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert body["top1"] == expected.argmax(axis=1).tolist()
    assert np.mean(np.asarray(body["top1"]) == y[:64]) > 0.9

    with pytest.raises(urllib.error.HTTPError) as bad:
        _post(served["url"], {"inputs": [[1.0, 2.0]]})
    assert bad.value.code == 422

    text = urllib.request.urlopen(served["url"] + "/metrics", timeout=10).read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["qbench_request_latency_seconds"].type == "histogram"
    statuses = {s.labels["status"]: s.value for s in families["qbench_requests"].samples
                if s.name == "qbench_requests_total"}
    assert statuses.get("200", 0) >= 1 and statuses.get("422", 0) >= 1
    info = families["qbench_model_info"].samples[0].labels
    assert info["result_id"] == str(ids["fp32"]) and info["model"] == "digits-mlp"


def test_monitor_alerts_on_a_real_delay_and_names_the_faster_recipe(served):
    """Baseline from the first 20 requests, then 50 ms added to every request: the CLI raises a
    latency alert and suggests the dynamic-int8 result measured faster on the same device."""
    url, delay, home, ids = served["url"], served["delay"], served["home"], served["ids"]
    delay.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "qbench_tui", "monitor", url, "--interval", "0.3",
                             "--min-requests", "20", "--until-alert", "--polls", "400", "--rebaseline", "--json",
                             "--db", str(home / "qbench.db")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(home))
    events = []
    with Load(url, [0.5] * 64):
        try:
            for line in proc.stdout:
                event = json.loads(line)
                events.append(event)
                if event.get("state") == "baseline":
                    delay.write_text("0.05")  # every request now waits 50 ms more
        finally:
            delay.unlink(missing_ok=True)
    assert proc.wait(60) == 1, proc.stderr.read()
    assert events[0]["event"] == "start" and events[0]["result_id"] == ids["fp32"]
    baseline = next(e for e in events if e.get("state") == "baseline")["baseline"]
    alert = next(e for e in events if e.get("state") == "alert")
    assert alert["window"]["requests"] >= 20
    assert {a["kind"] for a in alert["alerts"]} == {"latency"}
    assert alert["window"]["latency_mean_ms"] > 1.5 * baseline["latency_mean_ms"]
    suggestion = next(e for e in events if e["event"] == "suggestion")
    assert suggestion["better"][0]["id"] == ids["dynamic-int8"]
    assert f"qbench serve {ids['dynamic-int8']}" in suggestion["text"]


def test_the_canary_agrees_with_the_stored_result(served):
    from engines.ops.canary import run_canary
    from engines.store import Store
    from engines.store.ops_tables import get_result

    store = Store(served["home"] / "qbench.db")
    try:
        report = run_canary(served["url"], get_result(store, served["ids"]["fp32"]), rows=128)
    finally:
        store.close()
    assert report["rows"] == 128 and not report["alert"], report["text"]
    assert report["agreement_top1"] == 1.0  # the fp32 export answers as the fp32 reference


@async_test
async def test_the_app_monitor_view_alerts_and_suggests(served, monkeypatch):
    from textual.widgets import Static

    from engines.store import Store
    from qbench_tui.app import make_app
    from qbench_tui.screens.monitor import MonitorScreen
    from qbench_tui.settings import AppSettings

    url, delay, home = served["url"], served["delay"], served["home"]
    delay.unlink(missing_ok=True)
    monkeypatch.setenv("QBENCH_MONITOR_INTERVAL_S", "0.3")
    monkeypatch.setenv("QBENCH_MONITOR_MIN_REQUESTS", "20")
    store = Store(home / "qbench.db")
    # A fresh baseline: the CLI test's stored one was taken under other load.
    store.conn.execute("DELETE FROM monitor_baselines")
    store.conn.commit()
    app = make_app(store=store, settings=AppSettings())
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            app.action_monitor(url)
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, MonitorScreen)
            await pilot.press("ctrl+w")
            with Load(url, [0.5] * 64):
                try:
                    for _ in range(1800):
                        await pilot.pause(0.1)
                        state = (screen.last_report or {}).get("state")
                        if state == "baseline" and not delay.exists():
                            delay.write_text("0.05")
                        if state == "alert":
                            break
                finally:
                    delay.unlink(missing_ok=True)
            assert screen.last_report["state"] == "alert"
            alerts = str(screen.query_one("#monitor-alerts", Static).render())
            assert "ALERT latency" in alerts and "dynamic-int8" in alerts
    finally:
        store.close()


@async_test
async def test_the_app_versions_and_serves_the_selected_result(served, monkeypatch):
    """Palette entries on the result under the cursor: `qbench version` and `qbench serve` as child
    processes; the served variant opens in the monitor view and stops when the app quits."""
    from engines.store import Store
    from engines.store.ops_tables import list_versions
    from qbench_tui.app import make_app
    from qbench_tui.screens.monitor import MonitorScreen
    from qbench_tui.settings import AppSettings
    from qbench_tui.widgets.results import ResultsTable

    home, ids = served["home"], served["ids"]
    for key, value in _env(home).items():
        if key.startswith("QBENCH_"):
            monkeypatch.setenv(key, value)
    store = Store(home / "qbench.db")
    before = len(list_versions(store, ids["fp32"]))
    app = make_app(store=store, settings=AppSettings())
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            for _ in range(1200):
                await pilot.pause(0.05)
                if app.main.built and app.main.results_pane.view is not None:
                    break
            pane = app.main.results_pane
            table = pane.query_one(ResultsTable)
            # The history may still be filling the table (a later page redraws it and puts the cursor
            # back on the first row): put the cursor on fp32 until it stays there.
            steady = 0
            for _ in range(200):
                result = pane.cursor_result()
                if result is not None and result.get("id") == ids["fp32"]:
                    steady += 1
                    if steady == 3:
                        break
                else:
                    steady = 0
                    rows = [key.value for key in table.rows]
                    index = next((i for i, key in enumerate(rows) if pane._by_key[key]["id"] == ids["fp32"]), None)
                    if index is not None:
                        table.move_cursor(row=index, animate=False)
                await pilot.pause(0.1)
            assert pane.cursor_result()["id"] == ids["fp32"]
            commands = {c.title: c for c in app.palette_commands()}
            commands["Version the selected result with DVC"].callback()
            for _ in range(1200):
                await pilot.pause(0.1)
                if app.ops.last_version is not None:
                    break
            # The export is unchanged since the fixture versioned it: the same version answers.
            assert app.ops.last_version["md5"] == served["version"]["md5"]
            assert len(list_versions(store, ids["fp32"])) == before
            commands["Serve the selected result"].callback()
            for _ in range(1200):
                await pilot.pause(0.1)
                if isinstance(app.screen, MonitorScreen):
                    break
            assert isinstance(app.screen, MonitorScreen)
            proc, url = app.ops.served[ids["fp32"]]
            assert app.screen.initial_url == url and url != served["url"]
            assert json.loads(urllib.request.urlopen(url + "/healthz", timeout=5).read())["status"] == "ok"
        assert proc.wait(30) is not None  # quitting the app stopped the service
    finally:
        store.close()
