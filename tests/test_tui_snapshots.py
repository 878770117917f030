"""Snapshot tests: every screen and state at a fixed terminal size, in each theme.

The app runs on a fixed machine (devices, models, meter readings) and a store filled at fixed
times, shown in UTC. Update after a deliberate change with ``pytest --snapshot-update`` and look
at the report before committing the new SVGs (tests/__snapshots__/).
"""

from __future__ import annotations

import pytest
from test_tui_support import (
    RUN_A,
    RUN_B,
    RUNNING_SAMPLE,
    SAMPLE,
    _result,
    fill_store,
    fixed_store_path,
    fixed_system,
    test_settings,
    utc,
    wait_for,
    wait_ready,
)
from textual.widgets import Input, OptionList

from engines.store import Store
from qbench_tui import analysis, messages
from qbench_tui.app import QBenchApp, make_app
from qbench_tui.widgets.results import ResultsTable

MAIN = (100, 30)
SMALL = (80, 24)

pytestmark = pytest.mark.usefixtures("utc")
__all__ = ["utc"]


def _app(name: str, *, filled: bool = True, theme: str = "qbench-dark", sample=SAMPLE) -> QBenchApp:
    store = Store(fixed_store_path(name))
    if filled:
        fill_store(store)
    # One device sample only: a second one, taken or not before the screenshot, would move the CPU trace.
    return make_app(store=store, settings=test_settings(theme=theme, sample_interval_s=3600),
                    system=fixed_system(sample))


async def _ready(pilot) -> None:
    await wait_ready(pilot)
    for widget in pilot.app.query(Input):
        widget.cursor_blink = False  # a blinking cursor would make screenshots differ


def _stored(app: QBenchApp, run: str, result: dict) -> None:
    """What the runner does with a result: store it, then announce it."""
    app.main.store.add_result(run, result)
    app.main.post_message(messages.ResultRecorded(run, {**result, "run_id": run}))


async def _running(pilot) -> None:
    """A sweep half-way: the first variant stored, the second measuring."""
    await _ready(pilot)
    app = pilot.app
    run = "20261127-090000-cccc"
    app.main.sweep.begin()  # what r does before its worker runs
    store = app.main.store
    store.create_run(run, "digits-mlp", {}, {}, "tui")
    with store.db.conn:  # a fixed creation time (create_run stamps "now")
        store.db["runs"].update(run, {"created_at": "2026-11-27T09:00:00+00:00"})
    app.main.post_message(messages.SweepStarted(run, "digits-mlp", 3, 0, False, {"id": run, "created_at": "2026-11-27T09:00:00+00:00"}))
    app.main.post_message(messages.VariantStarted(run, "fp32", "onnxruntime", "cpu", 0, 3, [1]))
    _stored(app, run, _result("fp32", "ok", 0.119, 0.9778, 4.30, when="2026-11-27T09:00:20+00:00"))
    app.main.post_message(messages.VariantStarted(run, "dynamic-int8", "onnxruntime", "cpu", 1, 3, [1]))
    app.main.post_message(messages.PhaseChanged(run, "measure", 1))
    app.main.post_message(messages.LatenciesMeasured(run, [0.06 + 0.004 * ((i * 7) % 11) for i in range(120)]))
    await pilot.pause()
    await wait_for(pilot, lambda: app.main.meters.state == "running" and app.main.meters.done == 1)
    # The result and the phase are drawn within a second or so (results, phase changes and
    # latencies are coalesced: meters.QUIET_S), and the model's history is read in a worker.
    await wait_for(pilot, lambda: app.main.results_pane.feed.timer is None and not app.main.meters._pending
                   and not app.main.workers, what="the coalesced redraws")
    await pilot.pause()


async def _failed(pilot) -> None:
    await _running(pilot)
    app = pilot.app
    run = "20261127-090000-cccc"
    _stored(app, run, _result("dynamic-int8", "failed", None, None, 0,
                              error="worker crashed: killed by SIGKILL (out of memory?)", when="2026-11-27T09:00:40+00:00"))
    app.main.post_message(messages.SweepFailed(run, "OSError: [Errno 28] No space left on device"))
    await pilot.pause()
    await wait_for(pilot, lambda: app.main.meters.state == "failed")
    # the stored failure's reload, then its Pareto stars (read in a worker)
    await wait_for(pilot, lambda: app.main.results_pane.feed.timer is None and not app.main.workers
                   and app.main.results_pane.view.frontier_known, what="the stars")


# --- the main screen in each state --------------------------------------------------------------


def test_main_empty_store(snap_compare):
    assert snap_compare(_app("empty", filled=False), terminal_size=MAIN, run_before=_ready)


@pytest.mark.parametrize("theme", ["qbench-dark", "qbench-light", "qbench-high-contrast"])
def test_main_finished_in_each_theme(snap_compare, theme):
    assert snap_compare(_app(f"finished-{theme}", theme=theme), terminal_size=MAIN, run_before=_ready)


def test_main_running(snap_compare):
    assert snap_compare(_app("running", sample=RUNNING_SAMPLE), terminal_size=MAIN, run_before=_running)


def test_main_error(snap_compare):
    assert snap_compare(_app("error", sample=RUNNING_SAMPLE), terminal_size=MAIN, run_before=_failed)


def test_main_store_unusable(snap_compare):
    path = fixed_store_path("unusable")
    path.write_text("this is not SQLite")
    app = make_app(db=path, settings=test_settings(sample_interval_s=3600), system=fixed_system())
    assert snap_compare(app, terminal_size=MAIN, run_before=_ready)


def test_large_terminal(snap_compare):
    assert snap_compare(_app("large", sample=RUNNING_SAMPLE), terminal_size=(160, 48), run_before=_running)


# --- 80x24: the panes as tabs ---------------------------------------------------------------


@pytest.mark.parametrize("pane", ["2", "3"])  # the models and results tabs look like their wide panes
def test_small_terminal_tabs(snap_compare, pane):
    assert snap_compare(_app(f"small-{pane}", sample=RUNNING_SAMPLE), terminal_size=SMALL,
                        run_before=_running if pane == "3" else _ready, press=[pane])


# --- dialogs ------------------------------------------------------------------------------------


def test_help_screen(snap_compare):
    assert snap_compare(_app("help"), terminal_size=MAIN, run_before=_ready, press=["question_mark"])


async def _open_first_result(pilot) -> None:
    await _ready(pilot)
    pane = pilot.app.main.results_pane
    pane.set_filter(pane.filter.with_(run_id=RUN_A, method="dynamic-int8"))
    pilot.app.query_one(ResultsTable).focus()


def test_result_detail(snap_compare):
    assert snap_compare(_app("detail"), terminal_size=MAIN, run_before=_open_first_result, press=["enter"])


async def _mark_two(pilot) -> None:
    await _ready(pilot)
    pane = pilot.app.main.results_pane
    for run_id, method in ((RUN_A, "fp32"), (RUN_B, "dynamic-int8")):
        key = next(analysis.result_key(r) for r in pane.visible
                   if r["run_id"] == run_id and r["method"] == method and r["runtime"] == "onnxruntime")
        pane.toggle_mark(key)


def test_compare_screen(snap_compare):
    assert snap_compare(_app("compare"), terminal_size=MAIN, run_before=_mark_two, press=["x"])


def test_pareto_chart(snap_compare):
    assert snap_compare(_app("chart"), terminal_size=MAIN, run_before=_ready, press=["g"])


async def _sweeping(pilot) -> None:
    await _running(pilot)


def test_quit_confirmation_during_a_sweep(snap_compare):
    assert snap_compare(_app("quit", sample=RUNNING_SAMPLE), terminal_size=MAIN, run_before=_sweeping,
                        press=["q"])


async def _export_dialog(pilot) -> None:
    await _ready(pilot)
    await pilot.press("e")
    field = pilot.app.screen.query_one(Input)
    field.cursor_blink = False
    field.value = "/tmp/exports/qbench-results.csv"


def test_export_dialog(snap_compare):
    assert snap_compare(_app("export"), terminal_size=MAIN, run_before=_export_dialog)


async def _open_model_error(pilot) -> None:
    await _ready(pilot)
    await pilot.press("o")
    pilot.app.screen.query_one(Input).value = "/nonexistent/model.onnx"
    await pilot.press("enter")
    await wait_for(pilot, lambda: bool(getattr(pilot.app.screen, "error", None)))
    pilot.app.screen.query_one(Input).cursor_blink = False


def test_open_model_error(snap_compare):
    assert snap_compare(_app("open"), terminal_size=MAIN, run_before=_open_model_error)


async def _sort_picker(pilot) -> None:
    await _ready(pilot)
    await pilot.press("s")
    sort_list = pilot.app.screen.query_one(OptionList)
    sort_list.highlighted = sort_list.get_option_index("p50")


def test_sort_picker(snap_compare):
    assert snap_compare(_app("sort"), terminal_size=MAIN, run_before=_sort_picker)


# --- sweep setup: extra variants of one method ---------------------------------------------------


async def _variants(pilot) -> None:
    await _ready(pilot)
    from qbench_tui.widgets.sweep_setup import SweepSetupPane

    pane = pilot.app.query_one(SweepSetupPane)
    pane.apply_setup({"methods": ["fp32", "int4", "int4:group_size=128", "int4:group_size=64:symmetric=false"],
                      "runtimes": ["onnxruntime"], "devices": ["cpu"], "batch_sizes": [1]})
    await pilot.press("2")
    await pilot.pause()
    pilot.app.query_one("#variants-title").scroll_visible(top=True, animate=False)
    await pilot.pause()


def test_sweep_setup_with_variants(snap_compare):
    assert snap_compare(_app("variants"), terminal_size=SMALL, run_before=_variants)
