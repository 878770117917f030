"""What a new user reads on the screen: state in text rather than colour, the result id to copy,
figures with their units. Driven with Pilot (App.run_test) on a fixed machine and a real store."""

from __future__ import annotations

import re

from test_tui_support import RUN_A, _result, async_test, fill_store, fixed_system, test_settings, wait_ready
from textual.widgets import DataTable, SelectionList, Static
from textual.widgets._toast import Toast, ToastRack

from qbench_tui.app import make_app
from qbench_tui.screens.result_detail import ResultDetailScreen
from qbench_tui.widgets.checks import CHECKED, UNCHECKED
from qbench_tui.widgets.method_form import field_widget_id
from qbench_tui.widgets.sweep_setup import SweepSetupPane

WIDE = (120, 40)


def _lines(widget) -> list[str]:
    return [widget.render_line(y).text for y in range(widget.size.height)]


@async_test
async def test_check_boxes_read_chosen_or_not_in_text_in_every_theme(store):
    app = make_app(store=store, settings=test_settings(), system=fixed_system())
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        methods = app.query_one("#methods", SelectionList)
        methods.deselect_all()
        methods.select("fp32")
        await pilot.pause()
        themes = [tf.theme.name for tf in app.theme_files] or [app.theme]
        for theme in themes:
            app.theme = theme
            await pilot.pause()
            rows = _lines(methods)
            fp32 = next(r for r in rows if " fp32 " in r)
            int4 = next(r for r in rows if " int4 " in r)
            assert fp32.startswith(CHECKED) and int4.startswith(UNCHECKED), (theme, fp32, int4)
            assert not any("▐X▌" in r for r in rows), theme
            # Unsupported rows say so, and read as not chosen when they are not.
            assert all(r.startswith((CHECKED, UNCHECKED)) for r in rows if r.strip()), rows
        for list_id in ("runtimes", "devices"):
            rows = [r for r in _lines(app.query_one(f"#{list_id}", SelectionList)) if r.strip()]
            assert rows and all(r.startswith((CHECKED, UNCHECKED)) for r in rows), rows
        # A boolean method setting reads the same way.
        methods.select("int4")
        await pilot.pause()
        await pilot.pause()
        box = app.query_one(f"#{field_widget_id('int4', 'symmetric')}")
        text = str(box.render())
        assert text.startswith(CHECKED if box.value else UNCHECKED), text
        box.value = not box.value
        await pilot.pause()
        assert str(box.render()).startswith(CHECKED if box.value else UNCHECKED)


@async_test
async def test_the_result_id_is_in_the_table_and_the_detail(store):
    fill_store(store)
    ids = {str(r["id"]) for r in store.results(run_id=RUN_A)}
    app = make_app(store=store, settings=test_settings(), system=fixed_system())
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_ready(pilot)
        table = app.query_one("#results-table", DataTable)
        labels = [str(c.label) for c in table.columns.values()]
        assert "id" in labels, labels
        col = labels.index("id")
        shown = {str(table.get_row_at(i)[col]) for i in range(table.row_count)}
        assert ids <= shown, (ids, shown)
        table.focus()
        table.move_cursor(row=0)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ResultDetailScreen)
        rid = str(table.get_row_at(0)[col])
        text = "\n".join(str(s.render()) for s in app.screen.query(Static))
        assert re.search(rf"^\s+id\s+{rid}\b", text, re.MULTILINE), text[:400]


@async_test
async def test_a_narrow_terminal_keeps_the_figures_and_shortens_identifiers(store):
    fill_store(store)
    app = make_app(store=store, settings=test_settings(), system=fixed_system())
    async with app.run_test(size=(90, 30)) as pilot:
        await wait_ready(pilot)
        # The results tab (the panes are tabs at this size).
        await pilot.press("4")
        await pilot.pause()
        table = app.query_one("#results-table", DataTable)
        await pilot.pause()
        keys = [str(k.value) for k in table.columns]
        for figure in ("method", "status", "p50", "speedup", "accuracy", "id"):
            assert figure in keys, keys
        widths = sum(c.get_render_width(table) for c in table.columns.values())
        assert widths <= table.size.width, (widths, table.size.width, keys)
        status = str(app.query_one("#results-status", Static).render())
        assert "columns left out at this width" in status
    # Wide, every column is there.
    app = make_app(store=store, settings=test_settings(), system=fixed_system())
    async with app.run_test(size=(220, 40)) as pilot:
        await wait_ready(pilot)
        table = app.query_one("#results-table", DataTable)
        assert "note" in [str(k.value) for k in table.columns] and "rss" in [str(k.value) for k in table.columns]


@async_test
async def test_the_detail_gives_every_other_metric_its_unit_and_interval(store):
    request = {"model": "digits-mlp", "methods": ["dynamic-int8"], "runtimes": ["onnxruntime"], "devices": ["cpu"],
               "batch_sizes": [1], "configs": {}, "measure": {}}
    store.create_run(RUN_A, "digits-mlp", request, {}, "cli")
    result = _result("dynamic-int8", "ok", 0.035, 0.9778, 1.09)
    result["metrics"] = {"top5_agreement": 1.0, "rss_delta_mb": 18.3, "device_memory_mb": None,
                         "other_cpu_cores": 1.816,
                         "speedup_vs_fp32": {"ratio": 1.8773, "low": 1.8734, "high": 1.9046, "rounds": 6}}
    result["runtime_info"] = {"onnxruntime": "1.32.0", "providers": ["CPUExecutionProvider"],
                              "intra_op_spinning": True, "thread_pool": {"threads": 2, "omp_wait_policy": "PASSIVE"}}
    store.add_result(RUN_A, result)
    app = make_app(store=store, settings=test_settings(), system=fixed_system())
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        table = app.query_one("#results-table", DataTable)
        table.focus()
        await pilot.press("enter")
        await pilot.pause()
        text = str(app.screen.query_one("#detail-text", Static).render())
        assert re.search(r"speedup vs fp32\s+×1\.88 \(×1\.87–×1\.90 over 6 rounds\)", text), text
        assert re.search(r"rss delta mb\s+18\.30 MB", text) and re.search(r"top5 agreement\s+100\.0 %", text)
        assert re.search(r"other cpu cores\s+1\.82 cores of other processes", text)
        assert re.search(r"intra op spinning\s+yes", text) and "CPUExecutionProvider" in text
        assert "{" not in text and '"' not in text, text


@async_test
async def test_the_sweep_setup_says_it_scrolls_while_there_is_more_below(store):
    app = make_app(store=store, settings=test_settings(), system=fixed_system())
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        pane = app.query_one(SweepSetupPane)
        await pilot.pause()
        frame = pane.parent
        assert pane.max_scroll_y > 0
        assert "more below" in str(frame.border_subtitle), (pane.max_scroll_y, frame.border_subtitle)
        pane.scroll_end(animate=False)
        await pilot.pause()
        await pilot.pause()
        assert not frame.border_subtitle


@async_test
async def test_toasts_stay_inside_the_results_pane_frame(store):
    app = make_app(store=store, settings=test_settings(), system=fixed_system())
    async with app.run_test(size=WIDE, notifications=True) as pilot:
        await wait_ready(pilot)
        app.notify("3 result(s) logged to MLflow", timeout=30)
        for _ in range(5):
            await pilot.pause()
        toast = app.screen.get_child_by_type(ToastRack).query_one(Toast)
        pane = app.query_one("#results").region
        region = toast.region
        assert region.bottom <= pane.bottom - 1 and region.right <= pane.right - 1, (region, pane)


def test_monitor_says_how_many_requests_a_window_holds_before_it_is_judged():
    from engines.ops.config import OpsConfig
    from qbench_tui.cli.ops import _fmt_report

    config = OpsConfig()
    text = _fmt_report({"state": "collecting", "window": None, "alerts": []}, config)
    assert f"0 of the {config.monitor_min_requests} requests" in text and "judged from" not in text
    text = _fmt_report({"state": "collecting", "window": {"requests": 7, "error_rate": 0.0}, "alerts": []}, config)
    assert f"7 of the {config.monitor_min_requests} requests" in text
