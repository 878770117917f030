"""Runtime-only knobs (torch.compile, ONNX Runtime's kernel compute type) are set per runtime in
the configurator, generated from each runtime's config class, and reach the engine's request."""

from __future__ import annotations

from test_tui_support import async_test, fixed_system, test_settings, wait_ready
from textual.widgets import Checkbox, Input, Select, SelectionList

from qbench_tui.app import make_app
from qbench_tui.controllers.sweep import build_request
from qbench_tui.widgets.method_form import field_widget_id
from qbench_tui.widgets.sweep_setup import SweepSetupPane


@async_test
async def test_runtime_settings_are_generated_per_chosen_runtime_and_reach_the_request(store):
    app = make_app(store=store, settings=test_settings(), system=fixed_system())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        pane = app.query_one(SweepSetupPane)
        runtimes = app.query_one("#runtimes", SelectionList)
        runtimes.deselect_all()
        runtimes.select("torch")
        await pilot.pause()
        assert app.query_one("#runtime-settings-title").display
        assert not app.query_one("#rtsettings-onnxruntime").display  # shown with its runtime
        app.query_one(f"#{field_widget_id('rt-torch', 'compile')}", Checkbox).value = True
        runtimes.select("onnxruntime")
        await pilot.pause()
        app.query_one(f"#{field_widget_id('rt-onnxruntime', 'nbits_compute')}", Select).value = "fp32"
        await pilot.pause()
        setup = pane.current_setup("digits-mlp")
        assert setup.runtime_configs == {"torch": {"compile": True}, "onnxruntime": {"nbits_compute": "fp32"}}
        request = build_request(setup)
        assert request.runtime_config("torch").compile is True
        assert request.runtime_config("onnxruntime").nbits_compute.value == "fp32"
        # a remembered set-up restores them
        pane.apply_setup({"runtime_configs": {"torch": {"compile": False}}})
        await pilot.pause()
        assert "torch" not in pane.current_setup("digits-mlp").runtime_configs


@async_test
async def test_timing_rounds_are_set_in_the_measurement_settings_and_reach_the_request(store):
    app = make_app(store=store, settings=test_settings(), system=fixed_system())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        pane = app.query_one(SweepSetupPane)
        app.query_one("#measure-repeat", Input).value = "5"
        await pilot.pause()
        setup = pane.current_setup("digits-mlp")
        assert setup.measure["repeat"] == 5
        assert build_request(setup).measure.repeat == 5
