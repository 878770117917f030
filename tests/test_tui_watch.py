"""What the app does while it shows a running sweep, driven with Pilot on a real SQLite store:
a burst of results is shown in one refresh (every result in the table and the history, the
progress complete, one toast for the failures), the footer restyles its keys in place when a
sweep starts and ends, and a burst of phases and latencies ends drawn, every phase done."""

from __future__ import annotations

from test_tui_support import _result, async_test, fill_store, fixed_system, test_settings, wait_for, wait_ready
from textual.widgets import ProgressBar, Static
from textual.widgets._footer import FooterKey

from engines.core.events import PHASES
from qbench_tui import messages
from qbench_tui.app import make_app
from qbench_tui.widgets.results import ResultsTable

RUN = "20261127-120000-wwww"


def _text(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def _keys(app) -> dict[str, FooterKey]:
    return {key.action: key for key in app.screen.query(FooterKey)}


@async_test
async def test_a_burst_of_results_ends_with_every_result_shown(store):
    fill_store(store)  # 8 results in two runs
    app = make_app(store=store, settings=test_settings(), system=fixed_system())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        main = app.main
        main.sweep.begin()  # what r does before its worker runs
        store.create_run(RUN, "digits-mlp", {}, {}, "tui")
        main.post_message(messages.SweepStarted(RUN, "digits-mlp", 12, 0, False, {"id": RUN}))
        methods = [f"m{i}" for i in range(12)]
        for i, method in enumerate(methods):  # stored, then announced (as the runner does), all at once
            failed = i % 4 == 3
            r = _result(method, "failed" if failed else "ok", None if failed else 0.05 + i / 1000,
                        None if failed else 0.97, 1.0, error=f"boom {i}" if failed else None)
            store.add_result(RUN, r)
            main.post_message(messages.ResultRecorded(RUN, {**r, "run_id": RUN}))
        table = app.screen.query_one(ResultsTable)
        await wait_for(pilot, lambda: table.row_count == 20, what="every result in the table")
        assert main.meters.done == 12
        progress = app.screen.query_one("#sweep-progress", ProgressBar)
        assert (progress.progress, progress.total) == (12, 12)
        assert "12/12 done" in _text(app, "#progress-text")
        await wait_for(pilot, lambda: "measured before 3 runs" in _text(app, "#model-details"),
                       what="the model's history with the new run")
        assert "m0 · onnxruntime" in _text(app, "#model-details")  # the fastest of the new variants
        # The three failures in one toast, each named.
        toasts = [n for n in app._notifications if "failed" in (n.title or "")]
        assert len(toasts) == 1 and toasts[0].title == "3 variants failed (stored)"
        assert all(f"boom {i}" in toasts[0].message for i in (3, 7, 11))

        main.post_message(messages.SweepFinished(RUN, "finished", 2.0))
        await wait_for(pilot, lambda: main.meters.state == "finished", what="the sweep's end")
        assert "9 ok · 3 failed · 0 unsupported" in _text(app, "#job")


@async_test
async def test_the_footer_restyles_its_keys_in_place_when_a_sweep_starts_and_ends(store):
    fill_store(store)  # the starter key is hidden: only Run and Cancel change, dimmed or lit
    app = make_app(store=store, settings=test_settings(), system=fixed_system())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        before = _keys(app)
        assert before["run_sweep"].has_class("-disabled") is False and before["cancel_sweep"].has_class("-disabled")
        main = app.main
        main.sweep.begin()
        main.post_message(messages.SweepStarted(RUN, "digits-mlp", 1, 0, False, {"id": RUN}))
        await wait_for(pilot, lambda: _keys(app)["run_sweep"].has_class("-disabled"), what="Run dimmed")
        during = _keys(app)
        assert not during["cancel_sweep"].has_class("-disabled") and not during["cancel_sweep"]._disabled
        assert all(during[action] is key for action, key in before.items())  # the same widgets, restyled

        main.post_message(messages.SweepFinished(RUN, "finished", 1.0))
        await wait_for(pilot, lambda: not _keys(app)["run_sweep"].has_class("-disabled"), what="Run lit again")
        assert _keys(app)["cancel_sweep"].has_class("-disabled")
        assert all(_keys(app)[action] is key for action, key in before.items())


@async_test
async def test_a_burst_of_phases_and_latencies_ends_drawn_with_every_phase_done(store):
    """Phase changes and latencies several times a second are drawn with the next device sample
    (or after meters.QUIET_S): the strip ends on the latest phase with every earlier one done, the
    trace on the latest latencies, and the job readout keeps the height it took at the start."""
    fill_store(store)
    app = make_app(store=store, settings=test_settings(), system=fixed_system())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        main = app.main
        main.sweep.begin()  # what r does before its worker runs
        main.meters.sweep_started("", "digits-mlp", 2, 0, ["dynamic-int8 · onnxruntime · cpu", "fp32 · onnxruntime · cpu"], [1])
        main.post_message(messages.SweepStarted(RUN, "digits-mlp", 2, 0, False, {"id": RUN}))
        await pilot.pause()
        job = app.screen.query_one("#job", Static)
        height = job.size.height
        for i, (label, phases) in enumerate([("fp32", PHASES[:4]), ("dynamic-int8", PHASES)]):
            main.post_message(messages.VariantStarted(RUN, label, "onnxruntime", "cpu", i, 2, [1]))
            for phase in phases:  # each handled (queued phase changes collapse into the latest)
                main.post_message(messages.PhaseChanged(RUN, phase, 1))
                await pilot.pause()
        for burst in range(3):  # the rounds of a measurement
            main.post_message(messages.PhaseChanged(RUN, "warm-up", 1))
            await pilot.pause()
            main.post_message(messages.PhaseChanged(RUN, "measure", 1))
            main.post_message(messages.LatenciesMeasured(RUN, [0.1 * (burst + 1)] * 10))
            await pilot.pause()
        await wait_for(pilot, lambda: main.meters.phase == "measure" and not main.meters._pending,
                       what="the pending redraws")
        strip = app.screen.query_one("#phases", Static).render()
        assert " measure " in str(strip)
        done = {str(strip)[s.start:s.end] for s in strip.spans if "success" in str(s.style)}
        assert done == set(PHASES[:-1])  # every phase before measure shows as done
        assert "0.300" in _text(app, "#latency-text") and "last 10" in _text(app, "#latency-text")
        assert "variant 2/2" in _text(app, "#job") and job.size.height == height
