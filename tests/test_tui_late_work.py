"""What the app leaves for after its first frame, and that it still arrives: method plugins named by
an installed package's entry points, and the results' Pareto stars after a typed filter."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from test_tui_support import async_test, fill_store, fixed_system, test_settings, wait_for, wait_ready

from engines.store import Store
from qbench_tui.app import make_app
from qbench_tui.widgets.results import ResultsTable

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

PLUGIN = '''
from dataclasses import dataclass
from engines.methods.configs import MethodConfig
from engines.methods.registry import Compute, register_method

@register_method("late-cast", title="a plugin method", bits=16, compute=Compute.FLOAT, description="test plugin")
@dataclass(frozen=True)
class LateCastConfig(MethodConfig):
    pass
'''

APP = '''
import asyncio, sys
from engines.store import Store
from qbench_tui.app import make_app
from qbench_tui.settings import AppSettings

# As the program builds it: nothing has looked for plugins before the app is made.
app = make_app(store=Store(sys.argv[1]), settings=AppSettings(last_setup={"methods": ["fp32", "late-cast"]}))
from engines.methods.registry import all_methods
print("before the frame:", "late-cast" in all_methods())  # what composing the panes sees

from test_tui_support import wait_for, wait_ready
from qbench_tui.widgets.sweep_setup import SweepSetupPane

async def main():
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        pane = app.main.query_one(SweepSetupPane)
        await wait_for(pilot, lambda: pane.plugins_scanned, what="the entry points' scan")
        await pilot.pause()
        methods = app.main.query_one("#methods")
        print("listed:", methods.get_option("late-cast") is not None)
        print("selected:", "late-cast" in methods.selected)

asyncio.run(main())
'''


def test_an_entry_point_plugin_method_is_listed_after_the_first_frame(tmp_path: Path):
    """The entry points are scanned after the first frame (reading every installed package's
    metadata is not waited for), and the plugin's method is then listed, and selected again
    where the remembered set-up had it. In a child process: the plugin registers for good."""
    (tmp_path / "late_cast_plugin.py").write_text(PLUGIN)
    info = tmp_path / "late_cast_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: late-cast-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[qbench.plugins]\nlate = late_cast_plugin\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(TESTS), str(ROOT)]),
           "QBENCH_HOME": str(tmp_path / "home")}
    env.pop("QBENCH_PLUGINS", None)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(APP), str(tmp_path / "q.db")], env=env,
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "before the frame: False" in out.stdout  # the app defers the scan
    assert "listed: True" in out.stdout and "selected: True" in out.stdout


@async_test
async def test_a_typed_filter_shows_its_count_at_once_and_its_stars_after(tmp_path: Path):
    store = Store(tmp_path / "q.db")
    fill_store(store)
    app = make_app(store=store, settings=test_settings(), system=fixed_system())
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_ready(pilot)
        pane = app.main.results_pane
        stars = [str(r[0]) for r in (_row(app, k) for k in _keys(app))]
        assert any("★" in s for s in stars)  # the unfiltered view's frontier, read after its rows
        pane.set_filter(pane.filter.with_(text="int8"))
        # the count and rows are shown before the frontier is read (it comes from a worker)
        assert not pane.view.frontier_known and pane.view.size > 0
        await wait_for(pilot, lambda: pane.view.frontier_known, what="the filtered view's stars")
        await pilot.pause()
        starred = [k for k in _keys(app) if "★" in str(_row(app, k)[0])]
        assert starred
        assert {r["id"] for r in pane.view.rows if _key(r) in starred} == {
            r["id"] for r in pane.view.rows if r["id"] in store.frontier_ids(pane.view.query)}


def _key(r):
    from qbench_tui.analysis import result_key

    return result_key(r)


def _keys(app):
    return [k.value for k in app.main.query_one(ResultsTable).rows]


def _row(app, key):
    return app.main.query_one(ResultsTable).get_row(key)


@async_test
async def test_quitting_before_the_late_widgets_are_mounted_ends_without_an_error(tmp_path: Path):
    # The Sweep setup's lower part is mounted after the first frame; an app that quits at once
    # (q pressed as the screen appears) takes it down meanwhile: nothing may be looked up in it then.
    app = make_app(store=Store(tmp_path / "q.db"), settings=test_settings(), system=fixed_system())
    async with app.run_test(size=(120, 40)):
        pass  # leave as soon as the app runs
    assert app._exception is None


@async_test
async def test_the_pane_tabs_are_made_when_a_wide_terminal_first_becomes_small(tmp_path: Path):
    # Hidden in the grid, the tabs are not made at a wide start; a small terminal makes them, on
    # the pane shown, and they work as at a small start.
    from textual.widgets import Tabs

    app = make_app(store=Store(tmp_path / "q.db"), settings=test_settings(), system=fixed_system())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        assert not app.main.tabbed and not app.query("#pane-tabs")
        await pilot.resize_terminal(80, 24)
        await wait_for(pilot, lambda: app.query("#pane-tabs"), what="the tabs")
        await pilot.pause()
        assert app.query_one("#pane-tabs", Tabs).active == "tab-models"
        await pilot.press("4")
        assert app.query_one("#pane-tabs", Tabs).active == "tab-results"
        assert [p for p in ("models", "setup", "meters", "results") if app.query_one(f"#{p}").display] == ["results"]


@async_test
async def test_the_remembered_theme_is_in_the_first_parse_and_a_switch_still_restyles(tmp_path: Path):
    # The theme is chosen before the stylesheets are first parsed (no re-parse of them all at
    # start): its classes and colours are there from the first frame, and the palette's switch
    # still re-parses and restyles.
    app = make_app(store=Store(tmp_path / "q.db"), settings=test_settings(theme="qbench-light"),
                   system=fixed_system())
    reparses = []
    reparse = app.stylesheet.reparse
    app.stylesheet.reparse = lambda: (reparses.append(1), reparse())[1]
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        assert reparses == []  # every stylesheet parsed once, with the theme's variables
        assert app.theme == "qbench-light" and app.has_class("-theme-qbench-light", "-light-mode")
        assert not app.has_class("-dark-mode")
        light_bg = app.screen.query_one("#models").styles.background
        surface = app.stylesheet._variables["surface"]
        assert surface == app.get_css_variables()["surface"]  # the light theme's variables, parsed once
        app.set_theme("qbench-dark")
        await pilot.pause()
        assert app.has_class("-theme-qbench-dark", "-dark-mode") and not app.has_class("-light-mode")
        assert reparses and app.stylesheet._variables["surface"] != surface
        assert app.screen.query_one("#models").styles.background != light_bg
