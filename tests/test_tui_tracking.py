"""MLflow from the app (Pilot, a real store, the sender as a child process): the status bar says
what is queued for an unreachable server. (Registering from the app and comparing registry versions
runs in test_tracking.py, on the results of its real sweep.)"""

from __future__ import annotations

import sys
from pathlib import Path

from test_tui_support import async_test, fixed_system, test_settings, wait_for, wait_ready
from tracking_support import free_port, stored_results

from qbench_tui.app import make_app

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
