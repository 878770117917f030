"""MLflow from the app (Pilot, a real store, real MLflow in child processes): the status bar says
what is queued for an unreachable server, a result is registered from the results table, and the
registry's versions open in the compare view. The app's own process never imports MLflow."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_tui_support import async_test, fixed_system, test_settings, wait_for, wait_ready
from textual.widgets import DataTable, Input
from tracking_support import free_port, stored_results

from qbench_tui.app import make_app
from qbench_tui.screens.compare import CompareScreen
from qbench_tui.screens.tracking import RegisterScreen, RegistryScreen

WIDE = (160, 48)


def _topbar(app) -> str:
    return str(app.main.query_one("#topbar").render())


def _mlflow_modules() -> set[str]:
    return {m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")}


def _results(artifact: Path | None = None) -> list[dict]:
    lat = {"p50": 0.2, "p90": 0.25, "p99": 0.4, "mean": 0.21, "std": 0.01, "iqr": 0.01, "min": 0.19, "max": 0.5,
           "samples": 100}
    common = {"status": "ok", "accuracy": 0.97, "size_mb": 1.0, "artifact": str(artifact) if artifact else None,
              "agreement": {"top1": 0.99, "sqnr_db": 30.0, "cosine": 0.999}}
    return [{"method": "fp32", "latency_ms": lat, **common},
            {"method": "int4", "config": {"group_size": 32, "version": 1},
             "recipe": [{"method": "int4", "config": {"group_size": 32, "version": 1}}],
             "latency_ms": {**lat, "p50": 0.05}, "metrics": {"speedup_vs_fp32": 4.0}, **common}]


@async_test
async def test_the_status_bar_says_what_waits_for_an_unreachable_server(store):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    stored_results(store, uri, [*_results(), {"method": "dynamic-int8", "status": "ok"}])
    before = _mlflow_modules()  # another test of the session may have imported it: none may be added
    app = make_app(store=store, settings=test_settings(), system=fixed_system())
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        # At start-up the app tries to send (a child process) and says why it could not.
        await wait_for(pilot, lambda: "URI unreachable" in _topbar(app), 60, "the queue line")
        assert "3 results queued for MLflow (URI unreachable)" in _topbar(app)
        titles = [c.title for c in app.palette_commands()]
        assert {"MLflow registry", "Register result in MLflow…", "Send queued results to MLflow"} <= set(titles)
    assert _mlflow_modules() == before, "the app's process imported MLflow"


@pytest.mark.slow
@async_test
async def test_register_from_the_app_and_compare_registry_versions(store, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"stand-in for the variant's file")
    stored_results(store, uri, _results(artifact))
    before = _mlflow_modules()
    app = make_app(store=store, settings=test_settings(tracking_uri=uri), system=fixed_system())
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        await wait_for(pilot, lambda: app.main.tracking_queue == [] and not app.main._tracking_busy, 120,
                       "the queue to be sent")
        assert "queued" not in _topbar(app)
        table = app.main.results_pane.query_one(DataTable)
        registered = []
        for row in range(2):
            table.move_cursor(row=row)
            await pilot.pause()
            result = app.main.results_pane.cursor_result()
            app.main.action_register_result()
            await wait_for(pilot, lambda: isinstance(app.screen, RegisterScreen) and bool(
                app.screen.query("#register-alias")), 5, "the register dialog")
            app.screen.query_one("#register-alias", Input).value = "best-cpu" if result["method"] == "int4" else ""
            app.screen.query_one("#register-alias", Input).focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: len(getattr(app.main, "registered_versions", [])) > len(registered), 120,
                           "the registration")
            registered.append(result["method"])
        app.main.action_registry()
        await wait_for(pilot, lambda: isinstance(app.screen, RegistryScreen) and app.screen.loaded, 120,
                       "the registry")
        screen = app.screen
        assert len(screen.versions) == 2, screen.versions
        int4 = next(v for v in screen.versions if v["tags"]["quant.method"] == "int4")
        assert int4["aliases"] == ["best-cpu"] and int4["tags"]["quant.group_size"] == "32"
        await pilot.press("space", "down", "space", "x")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen), 5, "the compare view")
        text = str(app.screen.query_one("#compare-text").render())
        assert "digits-mlp v1" in text and "digits-mlp v2" in text and "faster at the median" in text
    assert _mlflow_modules() == before, "the app's process imported MLflow"
