"""In the app, the sweep set-up offers ``auto`` for devices and methods (as ``qbench run
--devices auto --methods auto``), and the app shows the best device for the model with its evidence."""

from __future__ import annotations

from test_tui_support import (
    DEVICES,
    ENVIRONMENT,
    MODELS,
    SAMPLE,
    _result,
    async_test,
    fixed_reasons,
    test_settings,
    wait_ready,
)
from textual.widgets import Static

from engines.devices import DeviceInfo
from engines.devices.strategies import device_strategies
from qbench_tui.app import make_app
from qbench_tui.controllers.sweep import expand_auto
from qbench_tui.system import FixedSystem
from qbench_tui.widgets.sweep_setup import SweepSetupPane

MAC_GPU = DeviceInfo("mps", "Apple GPU (Metal)", True, "Apple M4 GPU")
DEVICES_WITH_MPS = [DEVICES[0], DEVICES[1], MAC_GPU, DEVICES[3]]


def test_auto_expands_like_the_cli():
    methods, devices, strategies = expand_auto(["auto"], ["auto"], ["torch"], DEVICES_WITH_MPS)
    assert devices == ["cpu", "mps"]  # cuda and ane are absent; onnxruntime would not add mps
    expected = [s.spec for s in device_strategies(DEVICES[0]) + device_strategies(MAC_GPU)]
    assert methods == list(dict.fromkeys(expected)) and "fp16" in methods
    assert {s.device for s in strategies} == {"cpu", "mps"}
    assert expand_auto(["fp32"], ["auto"], ["onnxruntime"], DEVICES_WITH_MPS)[:2] == (["fp32"], ["cpu"])


@async_test
async def test_the_app_offers_auto_and_shows_the_best_device(store):
    system = FixedSystem(device_list=list(DEVICES_WITH_MPS), models=list(MODELS), reasons=fixed_reasons(),
                         fixed_sample=SAMPLE)
    app = make_app(store=store, settings=test_settings(), system=system)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        pane = app.query_one(SweepSetupPane)
        pane.apply_setup({"methods": ["auto"], "runtimes": ["torch"], "devices": ["auto"], "batch_sizes": [1]})
        await pilot.pause()
        setup = pane.current_setup("digits-mlp")
        assert setup.devices == ("cpu", "mps") and setup.choose_device
        assert "fp32" in setup.methods and "fp16" in setup.methods and "auto" not in setup.methods
        assert "auto:" in str(pane.query_one("#setup-summary", Static).render())

        # a finished run on both devices: mps is faster and keeps the answers
        request = {"model": "digits-mlp", "methods": ["fp32", "fp16"], "runtimes": ["torch"],
                   "devices": ["cpu", "mps"], "batch_sizes": [1]}
        store.create_run("run-auto", "digits-mlp", request, ENVIRONMENT, "tui")
        for device, method, p50 in (("cpu", "fp32", 0.20), ("mps", "fp32", 0.09), ("mps", "fp16", 0.05)):
            store.add_result("run-auto", {**_result(method, "ok", p50, 0.97, 4.3, runtime="torch"), "device": device})
        choice = app.main.results_pane.feed.rank_devices("run-auto")
        await pilot.pause()
        assert choice["device"] == "mps"
        line = app.query_one("#device-choice", Static)
        assert line.display
        text = str(line.render())
        assert "best device for digits-mlp (latency): mps" in text
        assert "evidence: mps fp16·torch p50 0.050 ms; cpu fp32·torch p50 0.200 ms" in text
