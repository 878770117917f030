"""Every interaction of the app, driven with Pilot (App.run_test) on a fixed machine and a real
SQLite store. Each test starts the app once and walks through one feature area (starting the
app is the expensive part). The sweeps themselves run on the real engine in test_tui_sweep.py."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import pytest
from test_tui_support import (
    RUN_A,
    RUN_B,
    _result,
    async_test,
    fill_store,
    fixed_system,
    test_settings,
    wait_for,
    wait_ready,
)
from textual.widgets import Checkbox, DataTable, Input, OptionList, Select, SelectionList, Static, Tabs

from engines import catalog
from engines.methods import configs
from qbench_tui import analysis, messages
from qbench_tui.app import QBenchApp, make_app
from qbench_tui.commands import QBenchCommands
from qbench_tui.screens.chart import ParetoChartScreen
from qbench_tui.screens.compare import CompareScreen
from qbench_tui.screens.confirm import ConfirmScreen
from qbench_tui.screens.export import ExportScreen
from qbench_tui.screens.help import HelpScreen
from qbench_tui.screens.main import MainScreen
from qbench_tui.screens.open_model import OpenModelScreen
from qbench_tui.screens.result_detail import ResultDetailScreen
from qbench_tui.screens.sort import SortScreen
from qbench_tui.settings import AppSettings
from qbench_tui.widgets.method_form import MethodSettingsForm, field_widget_id
from qbench_tui.widgets.results import ResultsTable
from qbench_tui.widgets.sweep_setup import SweepSetupPane

WIDE, NARROW = (120, 40), (80, 24)
PANES = ("models", "setup", "meters", "results")


@pytest.fixture
def filled_store(store):
    fill_store(store)
    return store


def _app(store, system=None, **settings) -> QBenchApp:
    return make_app(store=store, settings=test_settings(**settings), system=system or fixed_system())


def _text(app: QBenchApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def _table(app: QBenchApp) -> ResultsTable:
    return app.query_one(ResultsTable)


def _column(app: QBenchApp, key: str) -> list[str]:
    table = _table(app)
    return [str(table.get_cell(row, key)) for row in table.rows]


def _notified(app: QBenchApp, text: str) -> bool:
    return any(text in n.message for n in app._notifications)


def _shown_panes(app: QBenchApp) -> list[str]:
    return [p for p in PANES if app.query_one(f"#{p}").display]


# --- start-up, empty store, help, quitting ----------------------------------------------------


@async_test
async def test_first_launch_offers_the_starter_sweep_and_help_lists_every_key(store):
    app = _app(store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        assert app.query_one("#results-empty").display
        assert "Welcome to qbench" in _text(app, "#welcome")
        starter = app.active_bindings["b"]
        assert starter.binding.action == "starter_sweep" and starter.enabled
        assert app.main.browser.selected.name == "digits-mlp"
        assert "never measured" in _text(app, "#model-details")
        # The setup starts as the starter sweep (so r runs it too).
        setup = app.query_one(SweepSetupPane).current_setup("digits-mlp")
        assert setup.methods == ("fp32", "dynamic-int8") and setup.runtimes == ("onnxruntime",)

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = _text(app, "#help-text")
        for binding in [*MainScreen.BINDINGS, *ResultsTable.BINDINGS, *ParetoChartScreen.BINDINGS]:
            assert binding.tooltip or binding.description in text, binding.action
            if binding.tooltip:
                assert binding.tooltip in text, binding.action
        assert "ctrl+p" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("q")  # no sweep: quits at once
        await pilot.pause()
    assert app.return_value == 0


@async_test
async def test_quit_during_a_sweep_asks_first(store):
    app = _app(store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        app.main.sweep.begin()  # as if a sweep had just started
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        assert "finished results are already stored" in _text(app, "#confirm-question")
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen) and app.is_running
        await pilot.press("q", "y")
        await pilot.pause()
    assert app.return_value == 0


# --- layout -------------------------------------------------------------------------------


@async_test
async def test_panes_become_tabs_on_small_terminals_and_a_grid_on_large_ones(filled_store):
    app = _app(filled_store)
    async with app.run_test(size=NARROW) as pilot:
        await wait_ready(pilot)
        assert app.main.tabbed and app.query_one("#pane-tabs").display
        assert _shown_panes(app) == ["models"]
        for key, pane in (("2", "setup"), ("3", "meters"), ("4", "results"), ("1", "models")):
            await pilot.press(key)
            assert app.query_one("#pane-tabs", Tabs).active == f"tab-{pane}"
            assert _shown_panes(app) == [pane]
        await pilot.click("#tab-results")  # the mouse works too
        assert _shown_panes(app) == ["results"]

        await pilot.resize_terminal(200, 60)
        await pilot.pause()
        assert not app.main.tabbed and not app.query_one("#pane-tabs").display
        assert _shown_panes(app) == list(PANES)
        assert app.query_one("#results").region.width > 190
        await pilot.resize_terminal(120, 24)  # wide but short: tabs again
        await pilot.pause()
        assert app.main.tabbed


# --- model browser ------------------------------------------------------------------------


@async_test
async def test_model_browser_details_history_and_open_by_path(filled_store):
    app = _app(filled_store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        assert _table(app).row_count == 8 and not app.query_one("#results-empty").display
        assert app.main.check_action("starter_sweep", ()) is False
        details = _text(app, "#model-details")
        assert "measured before 2 runs" in details and "static-int8" in details
        assert "2 runs" in _text(app, "#topbar")

        await pilot.press("1", "end")
        await wait_for(pilot, lambda: app.main.browser.selected.name == "all-MiniLM-L6-v2", what="model choice")
        details = _text(app, "#model-details")
        assert "embedding" in details and "/models/all-MiniLM-L6-v2" in details and "22.7M" in details
        assert "never measured" in details

        await pilot.press("o")
        assert isinstance(app.screen, OpenModelScreen)
        app.screen.query_one(Input).value = "/nonexistent/model.onnx"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, OpenModelScreen) and bool(app.screen.error),
                       what="the error")
        assert "unknown model" in _text(app, "#open-error")
        app.screen.query_one(Input).value = "/models/all-MiniLM-L6-v2"
        app.screen.query_one("#allow-pickle", Checkbox).value = True  # kept in the model's options
        app.screen.query_one(Input).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, OpenModelScreen))
        assert app.main.browser.selected.name == "all-MiniLM-L6-v2"
        assert app.main.browser.model_options["all-MiniLM-L6-v2"] == {"allow_pickle": True}


# --- method configurator --------------------------------------------------------------------


@async_test
async def test_method_configurator(store):
    system = fixed_system()
    system.reasons[("int4", "onnxruntime", "cpu")] = "MatMulNBits needs a newer ONNX Runtime"
    app = _app(store, system)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        pane = app.query_one(SweepSetupPane)
        methods = app.query_one("#methods", SelectionList)

        # Every method's form is generated from its config dataclass, help text included.
        methods.select_all()
        await pilot.pause()
        await pilot.pause()
        for name, spec in catalog.METHODS.items():
            fields = configs.field_specs(spec.config_class)
            forms = list(app.query(f"#form-{name}").results(MethodSettingsForm))
            assert len(forms) == (1 if fields else 0), name
            helps = [str(h.render()) for h in forms[0].query(".field-help")] if fields else []
            for f in fields:
                assert app.query_one(f"#{field_widget_id(name, f['name'])}")
                assert f["help"] in helps

        # Unsupported pairs are marked in the list, the table and the summary, with the reason.
        pane.apply_setup({"methods": ["fp32", "int4"], "runtimes": ["onnxruntime"], "devices": ["cpu"]})
        await pilot.pause()
        matrix = _text(app, "#support-matrix")
        assert "onnxruntime/cpu" in matrix and "✓" in matrix and "✗1" in matrix
        assert "MatMulNBits needs a newer ONNX Runtime" in matrix
        assert "unsupported here" in str(methods.get_option("int4").prompt)
        assert "1 unsupported" in _text(app, "#setup-summary")
        devices = app.query_one("#devices", SelectionList)
        assert devices.get_option("cuda").disabled and "no NVIDIA driver" in str(devices.get_option("cuda").prompt)

        # r explains what is missing instead of starting.
        methods.deselect_all()
        await pilot.press("r")
        assert not app.main.sweeping and _notified(app, "choose at least one method")
        assert app.focused is methods
        methods.select("static-int8")
        await pilot.pause()
        samples = app.query_one(f"#{field_widget_id('static-int8', 'calibration_samples')}", Input)
        samples.value = "0"
        app.set_focus(None)
        await pilot.press("r")
        assert not app.main.sweeping and _notified(app, "calibration_samples must be between")
        form = next(f for f in app.query(MethodSettingsForm) if f.method == "static-int8")
        problem = form.query_one(".form-error", Static)  # the form says it under itself too
        assert problem.display and "calibration_samples must be between" in str(problem.render())
        samples.value = "64"
        assert form.check() is None and not problem.display  # checked again, the problem line goes
        app.query_one("#batch-sizes", Input).value = "1, x"
        app.set_focus(None)
        await pilot.press("r")
        assert not app.main.sweeping and _notified(app, "batch sizes must be whole numbers")

        # What the form holds reads back as the sweep: only non-default settings are sent.
        pane.apply_setup({"methods": ["int4", "static-int8"], "runtimes": ["onnxruntime"], "devices": ["cpu"],
                          "batch_sizes": [1, 8], "configs": {"int4": {"group_size": 128}}})
        await pilot.pause()
        app.query_one(f"#{field_widget_id('static-int8', 'calibration_method')}", Select).value = "entropy"
        await pilot.pause()
        app.query_one("#seq-len", Input).value = "64"
        setup = pane.current_setup("digits-mlp", {"allow_pickle": True})
        assert setup.model_options == {"allow_pickle": True, "seq_len": 64}
        assert set(setup.methods) == {"static-int8", "int4"} and setup.batch_sizes == (1, 8)
        assert setup.configs == {"int4": {"group_size": 128},
                                 "static-int8": {"calibration_method": "entropy", "calibration_samples": 64}}
        assert setup.measure["min_time_s"] == 0.05  # from the settings


# --- results: filter, sort, open, compare, chart, export --------------------------------------


@async_test
async def test_results_filter_sort_open_compare_chart_export(filled_store, tmp_path: Path):
    app = _app(filled_store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        # Filter by text, then by fields.
        await pilot.press("slash")
        assert app.focused is app.query_one("#filter-text")
        await pilot.press(*"sigkill")
        await wait_for(pilot, lambda: _table(app).row_count == 1, what="the typed filter")  # applied as typing pauses
        await pilot.press("enter")  # back to the table
        assert app.focused is _table(app)
        await pilot.press("ctrl+l")
        assert _table(app).row_count == 8
        app.query_one("#filter-status", Select).value = "ok"
        await pilot.pause()
        assert set(_column(app, "status")) == {"ok"} and _table(app).row_count == 6
        app.query_one("#filter-run_id", Select).value = RUN_B
        await pilot.pause()
        assert _table(app).row_count == 2 and "2 of 8 results" in _text(app, "#results-status")
        await pilot.press("ctrl+l")

        # Sort from the picker, reverse, and by clicking a header.
        await pilot.press("s")
        assert isinstance(app.screen, SortScreen)
        sort_list = app.screen.query_one("#sort-list", OptionList)
        sort_list.highlighted = sort_list.get_option_index("p50")
        await pilot.press("enter")
        values = [float(v) for v in _column(app, "p50") if v != "–"]
        assert values == sorted(values)
        await pilot.press("S")
        values = [float(v) for v in _column(app, "p50") if v != "–"]
        assert values == sorted(values, reverse=True)
        table = _table(app)
        column = table.columns[table.get_column_index("method") and "method"]  # type: ignore[index]
        app.main.results_pane.post_message(DataTable.HeaderSelected(table, column.key, 3, column.label))
        await pilot.pause()
        assert app.main.results_pane.sort_column == "method" and _column(app, "method") == sorted(_column(app, "method"))

        # Enter opens everything about a result, the environment of its run included.
        app.main.results_pane.set_filter(app.main.results_pane.filter.with_(run_id=RUN_A, method="fp32"))
        await pilot.press("4", "enter")
        assert isinstance(app.screen, ResultDetailScreen)
        text = _text(app, "#detail-text")
        for expected in ("Latency per call", "p99", "throughput", "peak RSS", "SQNR", "Environment of the run",
                         "Test CPU @ 3.0GHz", "CPUExecutionProvider", "Same variant in other runs", RUN_B):
            assert expected in text, expected
        await pilot.press("escape")
        await pilot.press("ctrl+l")

        # Compare: two marks, then x; results from two runs also compare the runs.
        await pilot.press("x")
        assert _notified(app, "mark two results")
        app.main.results_pane.set_sort("p50", reverse=False)
        await pilot.press("4")
        _table(app).move_cursor(row=0)
        await pilot.press("space", "down", "space")
        assert len(app.main.results_pane.marked) == 2 and "x compares" in _text(app, "#results-status")
        await pilot.press("x")
        assert isinstance(app.screen, CompareScreen)
        text = _text(app, "#compare-text")
        assert "latency p50" in text and "×" in text and "faster at the median" in text, text
        assert "Runs side by side" in text
        await pilot.press("w", "escape")

        # Chart of accuracy vs latency with the frontier; s switches the x axis to size.
        await pilot.press("g")
        assert isinstance(app.screen, ParetoChartScreen)
        frontier = _text(app, "#chart-frontier")
        assert "static-int8" in frontier and "fp32" in frontier and "int4" not in frontier
        await pilot.press("s")
        assert app.screen.x_axis == "size" and "MB" in _text(app, "#chart-frontier")
        await pilot.press("escape")

        # Export what is shown, as CSV and as JSON.
        for name in ("out.csv", "out.json"):
            await pilot.press("e")
            assert isinstance(app.screen, ExportScreen)
            app.screen.query_one(Input).value = str(tmp_path / name)
            await pilot.press("enter")
            await wait_for(pilot, lambda target=tmp_path / name: target.exists(), what=name)
        rows = list(csv.DictReader((tmp_path / "out.csv").open()))
        assert len(rows) == 8 and {r["run_id"] for r in rows} == {RUN_A, RUN_B}
        data = json.loads((tmp_path / "out.json").read_text())
        assert len(data) == 8 and all(r["status"] != "ok" or r["latency_ms"]["p50"] > 0 for r in data)


# --- palette and themes -------------------------------------------------------------------------


@async_test
async def test_palette_commands_and_a_theme_that_is_remembered(store, tmp_path: Path):
    settings = test_settings(path=tmp_path / "settings.json")
    app = make_app(store=store, settings=settings, system=fixed_system())
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        titles = [c[0] for c in app.palette_commands()]
        for expected in ("Run sweep", "Cancel sweep", "Export results…", "Open model by path…", "Keys and help",
                         "Theme: qbench light", "Theme: qbench high contrast", "Open model: digits-cnn",
                         "Show accuracy vs latency chart", "Compare marked results"):
            assert expected in titles, expected
        assert QBenchCommands in app.COMMANDS
        await pilot.press("ctrl+p")
        await pilot.press(*"qbench high")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.theme == "qbench-high-contrast", what="theme switch")
        assert json.loads((tmp_path / "settings.json").read_text())["theme"] == "qbench-high-contrast"
    # Remembered: the next start paints in it from the first frame.
    again = make_app(store=store, settings=AppSettings.load(tmp_path / "settings.json"), system=fixed_system())
    assert again.theme == "qbench-high-contrast"


# --- engine errors never crash the app ----------------------------------------------------------


@async_test
async def test_an_unusable_store_is_explained_and_the_app_stays_up(tmp_path: Path):
    bad = tmp_path / "not-a-db.db"
    bad.write_text("this is not SQLite")
    app = make_app(db=bad, settings=test_settings(), system=fixed_system())
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        assert app.main.store_error and "store unusable" in _text(app, "#topbar")
        assert "cannot be used" in _text(app, "#welcome")
        await pilot.press("r")
        assert not app.main.sweeping and app.is_running
    assert bad.read_text() == "this is not SQLite"  # never written to


@async_test
async def test_sweep_messages_drive_the_meters_and_the_table(filled_store):
    """The message flow of a sweep (the real engine runs it in test_tui_sweep.py)."""
    app = _app(filled_store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        app.main.sweep.begin()  # what r does before its worker runs
        app.main.post_message(messages.SweepStarted("run-x", "digits-mlp", 2, 0, False, {"id": "run-x"}))
        app.main.post_message(messages.VariantStarted("run-x", "fp32", "onnxruntime", "cpu", 0, 2, [1]))
        app.main.post_message(messages.PhaseChanged("run-x", "measure", 1))
        app.main.post_message(messages.LatenciesMeasured("run-x", [0.1, 0.2, 0.15]))
        await pilot.pause()
        assert app.main.meters.state == "running"
        assert "variant 1/2" in _text(app, "#job") and "measure" in _text(app, "#phases")
        assert "0.150" in _text(app, "#latency-text")
        # As the runner does: each result is stored, then announced.
        filled_store.create_run("run-x", "digits-mlp", {}, {}, "tui")
        for result in (_result("fp32", "ok", 0.1, 0.97, 4.3), _result("int4", "failed", None, None, 0, error="kaboom")):
            filled_store.add_result("run-x", result)
            app.main.post_message(messages.ResultRecorded("run-x", {**result, "run_id": "run-x"}))
        await pilot.pause()
        assert app.main.meters.done == 2  # the count moves at once; the table within RESULTS_FLUSH_S
        await wait_for(pilot, lambda: _table(app).row_count == 10, what="the results in the table")
        assert _notified(app, "kaboom")
        app.main.post_message(messages.SweepFailed("run-x", "RuntimeError: the engine broke"))
        await pilot.pause()
        assert app.main.meters.state == "failed" and "the engine broke" in _text(app, "#job")
        assert app.is_running


# --- recipes: several settings of one method, named by their labels ------------------------------


def _int4(group_size: int, p50: float, size: float) -> dict:
    return {**_result("int4", "ok", p50, 0.97, size), "run_id": "run-r", "label": f"int4(g{group_size})",
            "recipe_id": f"r-int4-g{group_size}", "passes": ["export-onnx", "ort-nbits"],
            "recipe": [{"method": "int4", "config": {"version": 1, "group_size": group_size}}],
            "runtime_config": {"threads": 4, "providers": ["CPUExecutionProvider"]},
            "config": {"version": 1, "group_size": group_size}}


@async_test
async def test_recipe_labels_name_the_variants_in_every_view(store):
    app = _app(store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        main = app.main
        main.sweep.begin()
        main.post_message(messages.SweepStarted("run-r", "digits-mlp", 2, 0, False, {"id": "run-r"}))
        main.post_message(messages.VariantStarted("run-r", "int4(g32)", "onnxruntime", "cpu", 0, 2, [1]))
        await pilot.pause()
        assert "int4(g32) · onnxruntime · cpu" in _text(app, "#job")
        g32, g128 = _int4(32, 0.08, 0.7), _int4(128, 0.05, 0.6)
        store.create_run("run-r", "digits-mlp", {}, {}, "tui")
        for r in (g32, g128):  # stored, then announced (as the runner does)
            store.add_result("run-r", r)
            main.post_message(messages.ResultRecorded("run-r", r))
        main.post_message(messages.SweepFinished("run-r", "finished", 3.0))
        await pilot.pause()
        # Two rows, one per recipe, named by their labels.
        assert sorted(_column(app, "method")) == ["int4(g128)", "int4(g32)"]
        assert "int4(g128) · onnxruntime · cpu · bs 1" in _text(app, "#model-details")
        # The detail names the recipe, its id, passes and runtime settings.
        main.results_pane.open_result(g128)
        await pilot.pause()
        text = _text(app, "#detail-text")
        for expected in ("int4(g128)", "r-int4-g128", "export-onnx → ort-nbits", "Runtime settings", "threads",
                         "group_size"):
            assert expected in text, expected
        await pilot.press("escape")
        # The chart's frontier and the comparison name them too.
        await pilot.press("g")
        assert "int4(g128) · onnxruntime" in _text(app, "#chart-frontier")
        await pilot.press("escape")
        main.results_pane.toggle_mark(analysis.result_key(g32))
        main.results_pane.toggle_mark(analysis.result_key(g128))
        await pilot.press("x")
        text = _text(app, "#compare-text")
        assert "A digits-mlp · int4(g32)" in text and "B digits-mlp · int4(g128)" in text


@async_test
async def test_several_settings_of_one_method_become_extra_variants(store):
    """The set-up side only: a sweep with method specs needs the engine's spec parser (the CLI's
    ``--methods int4,int4:group_size=128``), tested on the engine side."""
    app = _app(store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        pane = app.query_one(SweepSetupPane)
        pane.apply_setup({"methods": ["int4"], "runtimes": ["onnxruntime"], "devices": ["cpu"], "batch_sizes": [1]})
        await pilot.pause()
        group = app.query_one(f"#{field_widget_id('int4', 'group_size')}", Input)
        assert not app.query_one("#variants-title").display

        group.value = "128"
        app.query_one("#add-variant-int4").focus()  # the keyboard's way: tab to the button, enter
        await pilot.press("enter")
        await pilot.pause()
        assert pane.variants == ["int4:group_size=128"]
        assert app.query_one("#variants-title").display
        assert [str(s.render()) for s in app.query(".variant-spec")] == ["int4:group_size=128"]
        assert "1 method + 1 variant × 1 runtime·device × 1 batch size = 2 measurements" in _text(app, "#setup-summary")

        group.value = "32"
        app.query_one(f"#{field_widget_id('int4', 'symmetric')}", Checkbox).value = False
        await pilot.pause()
        assert pane.add_variant_from_form("int4") == "int4:group_size=32:symmetric=false"
        assert pane.add_variant_from_form("int4") is None
        await pilot.pause()
        assert _notified(app, "in the sweep already")
        group.value = "64"  # the defaults again: that is plain int4
        app.query_one(f"#{field_widget_id('int4', 'symmetric')}", Checkbox).value = True
        await pilot.pause()
        assert pane.add_variant_from_form("int4") is None
        await pilot.pause()
        assert _notified(app, "default settings")
        group.value = "33"  # invalid settings are explained, not added
        await pilot.pause()
        assert pane.add_variant_from_form("int4") is None
        await pilot.pause()
        assert _notified(app, "group_size must be one of")
        group.value = "64"

        # The sweep carries the specs next to the plain names (the engine parses them).
        setup = pane.current_setup("digits-mlp")
        assert setup.methods == ("int4", "int4:group_size=128", "int4:group_size=32:symmetric=false")
        assert setup.measurement_count == 3
        assert "1 method + 2 variants" in _text(app, "#setup-summary")
        # The engine applies the plain method's settings under a spec's fields: what a variant does
        # not name is pinned to its default, so it runs as it was added.
        app.query_one(f"#{field_widget_id('int4', 'symmetric')}", Checkbox).value = False
        await pilot.pause()
        setup = pane.current_setup("digits-mlp")
        assert setup.configs == {"int4": {"symmetric": False}}
        assert setup.methods == ("int4", "int4:group_size=128:symmetric=true", "int4:group_size=32:symmetric=false")
        app.query_one(f"#{field_widget_id('int4', 'symmetric')}", Checkbox).value = True
        await pilot.pause()

        # Removable; a variant alone is a sweep.
        first_remove = app.query(".remove-variant").first()
        first_remove.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert pane.variants == ["int4:group_size=32:symmetric=false"]
        app.query_one("#methods", SelectionList).deselect("int4")
        await pilot.pause()
        assert pane.current_setup("digits-mlp").methods == ("int4:group_size=32:symmetric=false",)

        # Remembered set-ups bring their variants back (unknown methods are dropped).
        pane.apply_setup({"methods": ["fp32", "int4:group_size=128", "nope:x=1"]})
        await pilot.pause()
        assert pane.variants == ["int4:group_size=128"]
        assert pane.current_setup("digits-mlp").methods == ("fp32", "int4:group_size=128")
        pane.apply_setup({"methods": ["fp32"]})
        await pilot.pause()
        assert pane.variants == [] and not app.query_one("#variants-title").display


@async_test
async def test_the_setup_read_before_its_lower_part_is_mounted_is_the_one_it_then_shows():
    """The set-up pane's widgets below the fold mount after the first full frame; a sweep started
    in between (the starter button, at once) runs the same set-up the fields then show."""
    from textual.app import App

    pane = SweepSetupPane(fixed_system(), {}, id="sweep-setup")

    class Holder(App[None]):
        def compose(self):
            yield pane

    remembered = {"methods": ["fp32", "int4", "int4:group_size=128"], "runtimes": ["onnxruntime"],
                  "devices": ["cpu"], "batch_sizes": [1, 8], "configs": {"int4": {"group_size": 128, "symmetric": True}},
                  "threads": 2, "model_options": {"seq_len": 64}}
    async with Holder().run_test(size=WIDE) as pilot:
        await pilot.pause()
        assert not pane.details_ready and not pane.query("#measure-settings")
        pane.apply_setup(remembered)
        before = pane.current_setup("digits-mlp")
        await pane.mount_details()
        await pilot.pause()
        assert pane.query_one("#threads", Input).value == "2" and pane.query_one("#seq-len", Input).value == "64"
        assert pane.variants == ["int4:group_size=128"] and pane.query(".variant-row")
        assert "int4" in str(pane.query_one("#support-matrix", Static).render())
        assert pane.current_setup("digits-mlp") == before
        assert before.threads == 2 and before.model_options == {"seq_len": 64} and before.configs == {"int4": {"group_size": 128}}


@async_test
async def test_the_setup_reads_the_same_at_every_moment_of_start_up(store):
    """From the frame that shows the models until the set-up's last widget is mounted (its lower
    part, then the forms it shows), a key reading the set-up (r) gets the same one every time:
    the remembered one, drop-downs and fields below the fold included."""
    remembered = {"model": "digits-mlp", "methods": ["fp32", "dynamic-int8", "static-int8"],
                  "runtimes": ["onnxruntime"], "devices": ["cpu"], "batch_sizes": [1, 8],
                  "configs": {"dynamic-int8": {"quantize_conv": True},
                              "static-int8": {"calibration_method": "entropy", "calibration_samples": 64}},
                  "threads": 2, "model_options": {"seq_len": 64}}
    app = _app(store, last_setup=remembered)
    async with app.run_test(size=WIDE):
        reads, moments = [], set()
        while not app.main.loaded:
            await asyncio.sleep(0)
        pane = app.query_one(SweepSetupPane)

        def settled() -> bool:
            return pane.details_ready and all(w.is_mounted for w in pane.query("*"))

        while not settled():  # every turn of the event loop
            moments.add((pane.details_ready, len(pane.query(MethodSettingsForm)), len(pane.query(Select))))
            reads.append(pane.current_setup("digits-mlp"))
            await asyncio.sleep(0)
        final = pane.current_setup("digits-mlp")
    assert (False, 0, 0) in moments and len(moments) > 2  # before, during and after the forms' mount
    wrong = [read for read in reads if read != final]
    assert not wrong, (wrong[0], final)
    assert final.configs == remembered["configs"] and final.threads == 2 and final.model_options == {"seq_len": 64}



@async_test
async def test_the_footer_shows_its_keys_once_as_the_app_starts(store):
    """The keys are composed once the four panes are drawn (not on the way to that frame), as
    they will stay: turned on, b (offered on an empty store) among them, and not removed and
    mounted again as the set-up's lower part mounts."""
    from textual.widgets._footer import FooterKey

    app = _app(store)
    async with app.run_test(size=WIDE) as pilot:
        while not app.query(FooterKey):
            await asyncio.sleep(0)
        first = {key.key: key for key in app.query(FooterKey)}
        assert app.main.built and app.main.loaded
        await wait_ready(pilot)
        keys = {key.key: key for key in app.query(FooterKey)}
        assert all(keys[name] is first[name] for name in keys) and keys.keys() == first.keys()
        enabled = {name for name, key in keys.items() if not key.has_class("-disabled") and not key._disabled}
        assert {"r", "b", "q", "question_mark"} <= enabled and "c" not in enabled


@async_test
async def test_the_screens_keys_show_and_work_whatever_pane_has_the_focus(filled_store):
    """The keys the footer shows are the screen's (each delegating to its pane), so focusing
    another pane changes none of them; only a pane's own keys (space marks a row) come and go.
    A key moved into one pane would show, and work, only while that pane has the focus."""
    from textual.widgets._footer import FooterKey

    app = _app(filled_store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        shown = [b.key for b in MainScreen.BINDINGS if b.show]  # type: ignore[union-attr]
        seen = {}
        for key, pane in (("1", "models"), ("2", "setup"), ("3", "meters"), ("4", "results")):
            await pilot.press(key)
            await pilot.pause()
            assert app.focused is not None and app.query_one(f"#{pane}") in app.focused.ancestors_with_self
            seen[pane] = [k.key for k in app.query(FooterKey)]
        mine = {pane: [k for k in keys if k in shown] for pane, keys in seen.items()}
        assert mine["models"] == mine["setup"] == mine["meters"] == mine["results"]
        assert {"r", "c", "o", "slash", "g", "question_mark", "q"} <= set(mine["models"])
        assert "space" in seen["results"] and "space" not in seen["models"]
        await pilot.press("1", "g")  # the results pane's chart, from the model browser
        await wait_for(pilot, lambda: isinstance(app.screen, ParetoChartScreen), what="the chart")


@async_test
async def test_an_unexpected_error_in_a_panes_worker_is_shown_by_the_screen(filled_store, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch):
    """Worker.StateChanged does not bubble: the results pane hands its workers' unexpected errors
    (here the export's) to the screen's one handler, which shows them and keeps the app up."""
    from qbench_tui.screens import export

    def broken(path, results):
        raise RuntimeError("the disk said no")

    monkeypatch.setattr(export, "write_results", broken)
    app = _app(filled_store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        pane = app.main.results_pane
        pane._export_worker(tmp_path / "out.csv", pane.view.query)
        await wait_for(pilot, lambda: _notified(app, "the disk said no"), what="the error shown")
        assert any(n.title == "export failed" for n in app._notifications) and app.is_running
