"""Sweeps from the app on the real engine: the child-process runner measuring the built-in
digits-mlp with short timing windows, cancelled mid-way, and failing in the two ways an engine
can fail (a crashed worker, an error before any worker starts)."""

from __future__ import annotations

import asyncio

import psutil
import pytest
from test_tui_support import async_test, test_settings, wait_for, wait_ready
from textual.widgets import Input

from engines.models import ModelSpec
from qbench_tui.app import QBenchApp, make_app
from qbench_tui.widgets.results import ResultsTable
from qbench_tui.widgets.sweep_setup import SweepSetupPane

SIZE = (120, 40)
SWEEP_TIMEOUT = 240  # the first sweep of a session trains digits-mlp (cached afterwards)


def _configure(app: QBenchApp, methods: list[str]) -> None:
    app.query_one(SweepSetupPane).apply_setup(
        {"methods": methods, "runtimes": ["onnxruntime"], "devices": ["cpu"], "batch_sizes": [1]})


@async_test
async def test_run_a_real_sweep_from_the_keyboard(store):
    app = make_app(store=store, settings=test_settings())
    seen_phases: list[str] = []
    seen_bench_memory: list[float] = []
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        _configure(app, ["fp32", "dynamic-int8"])
        original_phase, original_sample = app.main.meters.phase_changed, app.main.meters.update_sample

        def phase_changed(phase, batch_size, *detail):
            seen_phases.append(phase)
            original_phase(phase, batch_size, *detail)

        def update_sample(sample):
            if sample.bench_rss_mb is not None:
                seen_bench_memory.append(sample.bench_rss_mb)
            original_sample(sample)

        app.main.meters.phase_changed, app.main.meters.update_sample = phase_changed, update_sample
        await pilot.press("r")
        assert app.main.sweeping
        await wait_for(pilot, lambda: app.main.meters.state != "idle" and not app.main.sweeping, SWEEP_TIMEOUT, "the sweep")
        assert app.main.meters.state == "finished", app.main.meters.message
        assert "2 ok" in app.main.meters.message
        # The meters followed the sweep: its phases (a phase that lasts less than a frame may be
        # collapsed into the next one), a latency trace, the benchmark process's memory.
        assert {"load", "quantize", "accuracy", "measure"} <= set(seen_phases)
        assert len(app.main.meters.latencies) > 0
        assert seen_bench_memory and max(seen_bench_memory) > 20
        # The table shows what the store holds.
        table = app.query_one(ResultsTable)
        assert table.row_count == 2
        assert {str(table.get_cell(row, "status")) for row in table.rows} == {"ok"}
    run_id = store.latest_run_id()
    run = store.get_run(run_id)
    assert run["status"] == "finished" and run["source"] == "tui"
    results = store.results(run_id)
    assert {r["method"] for r in results} == {"fp32", "dynamic-int8"}
    assert all(r["status"] == "ok" and r["latency_ms"]["p50"] > 0 for r in results)
    assert run["request"]["measure"]["min_time_s"] == 0.05


@async_test
async def test_cancel_a_real_sweep(store):
    app = make_app(store=store, settings=test_settings())
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        _configure(app, ["fp32", "dynamic-int8"])
        await pilot.press("r")
        await wait_for(pilot, lambda: app.main.meters.variant is not None, 60, "the first variant")
        await pilot.press("c")
        await wait_for(pilot, lambda: not app.main.sweeping, 30, "the cancellation")
        assert app.main.meters.state == "cancelled"
        assert "Resume run" in app.main.meters.message
        assert not psutil.Process().children(recursive=True)  # the worker process is gone
        assert any(t.startswith("Resume run") for t, *_ in app.palette_commands())
    run = store.get_run(store.latest_run_id())
    assert run["status"] == "interrupted"


@async_test
async def test_engine_errors_show_in_the_app_and_are_stored(store, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("QBENCH_FAULT", "crash:fp32")  # the worker aborts for real (engines.bench.worker)
    app = make_app(store=store, settings=test_settings())
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        _configure(app, ["fp32"])
        await pilot.press("r")
        await wait_for(pilot, lambda: app.main.meters.state != "idle" and not app.main.sweeping, SWEEP_TIMEOUT, "the sweep")
        failed = [r for r in app.main.results_pane.visible if r["status"] == "failed"]  # the rows shown
        assert len(failed) == 1 and "crashed" in failed[0]["error"]
        assert any("crashed" in n.message for n in app._notifications)
        table = app.query_one(ResultsTable)
        assert "failed" in {str(table.get_cell(row, "status")) for row in table.rows}

        # An error before any worker starts (a model file that has gone) ends the sweep as failed.
        gone = ModelSpec("gone", "generic", "file", "a deleted file", "engines.models.files:load",
                         path="/nonexistent/gone.onnx")
        app.main.browser.add_model(gone)
        await pilot.pause()
        await pilot.press("r")
        await wait_for(pilot, lambda: app.main.meters.state == "failed" and not app.main.sweeping, 60, "the failure")
        assert "gone" in app.main.meters.message
        assert app.is_running
    assert store.results(where="status = 'failed'")[0]["error"].startswith("worker crashed")


@async_test
async def test_r_pressed_as_soon_as_the_models_show_runs_the_remembered_setup(store):
    """The set-up's lower part (its forms, the threads field) mounts just after the frame that
    shows the models; r pressed at once, before it has mounted, runs the set-up it then shows.
    (Read too early, a settings form's drop-down said Select.NULL and r only showed an error.)"""
    remembered = {"model": "digits-mlp", "methods": ["fp32", "dynamic-int8"], "runtimes": ["onnxruntime"],
                  "devices": ["cpu"], "batch_sizes": [1], "configs": {"dynamic-int8": {"reduce_range": True}},
                  "threads": 1}
    app = make_app(store=store, settings=test_settings(last_setup=remembered))
    async with app.run_test(size=SIZE) as pilot:
        while not app.main.loaded:  # every turn of the event loop: the first moment r can act
            await asyncio.sleep(0)
        pane = app.query_one(SweepSetupPane)
        assert not pane.details_ready and not pane.query("#threads")
        await pilot.press("r")
        assert app.main.sweeping, [n.message for n in app._notifications]
        await wait_for(pilot, lambda: app.main.sweep.run_id is not None, 60, "the run to start")
        await pilot.press("c")
        await wait_for(pilot, lambda: not app.main.sweeping, 30, "the cancellation")
        await wait_for(pilot, lambda: pane.details_ready, 10, "the set-up's lower part")
        assert pane.query_one("#threads", Input).value == "1"
    request = store.get_run(app.main.sweep.run_id)["request"]
    assert request["methods"] == ["fp32", "dynamic-int8"]
    assert request["configs"] == {"dynamic-int8": {"reduce_range": True}} and request["threads"] == 1
