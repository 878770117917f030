"""The main screen: the frame around the four panes (models, sweep setup, meters, results): the
top bar, the grid, the tabs that replace it on small terminals (made when first needed), the
footer and the keys.

Each pane owns its widgets, its dialogs and the messages only it handles (the model browser:
models and their history; the meters: device samples; the results pane: the table, its dialogs
and exports, a sweep's results as they come, MLflow's queue). The screen composes them and
routes what crosses panes: what the start-up thread read, the sweep (``main_sweep.py``), and the
keys that work whatever pane has the focus (each delegates to its pane). Workers' unexpected
errors bubble to one handler here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container, Vertical
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Static
from textual.worker import Worker, WorkerState

from qbench_tui import gc_pause, messages
from qbench_tui.commands import PaletteCommand, main_screen_commands
from qbench_tui.controllers.startup import StartupLoad, warm_runner
from qbench_tui.controllers.sweep import SweepController, describe_error
from qbench_tui.controllers.tracking import TrackingController
from qbench_tui.screens.main_sweep import SweepCoordinator
from qbench_tui.settings import STARTER_SETUP, AppSettings
from qbench_tui.system import SystemProbe
from qbench_tui.widgets.footer import CompactFooter
from qbench_tui.widgets.meters import DeviceMeters
from qbench_tui.widgets.model_browser import ModelBrowser
from qbench_tui.widgets.readout import set_text, short_path
from qbench_tui.widgets.results import ResultsPane, ResultsTable
from qbench_tui.widgets.sweep_setup import SweepSetupPane

if TYPE_CHECKING:
    from textual.widgets import Tabs

# pane id -> (tab title, the widget that takes focus when the pane is chosen)
PANES: dict[str, tuple[str, str]] = {
    "models": ("1 Models", "#model-list"),
    "setup": ("2 Sweep setup", "#methods"),
    "meters": ("3 Meters", "#device-meters"),
    "results": ("4 Results", "#results-table"),
}
WARM_RUNNER_AFTER_S = 0.5  # after the history is shown: the first full frame is drawn by then
FIRST_READING_S = 0.2  # the shortest span a first CPU reading covers (psutil counts in 10 ms ticks)
STARTUP_WAIT_S = 0.5  # the longest the first frame waits for the start-up thread (a slow store)
TOTAL_BORDER_AND_PADDING = 4  # a pane's round border and its padding of 1 on each side (main.tcss)


def setup_frame_width(size: Any) -> int:
    """The Sweep setup frame's content width in a terminal of ``size`` (main.tcss's grid: a
    28-column models pane and two equal columns; the full width where the panes are tabs)."""
    tabbed = size.width < 100 or size.height < 28
    frame = size.width if tabbed else (size.width - 28) // 2
    return frame - TOTAL_BORDER_AND_PADDING


class MainScreen(Screen[None]):
    """The app's one full screen; the dialogs are modal screens pushed over it."""

    # Below 100 columns or 28 rows the four panes become tabs.
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (28, "-tall"), (48, "-very-tall")]

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "run_sweep", "Run", tooltip="Run the configured sweep on the chosen model"),
        Binding("c", "cancel_sweep", "Cancel", tooltip="Cancel the running sweep (finished results stay stored)"),
        Binding("b", "starter_sweep", "Starter", tooltip="Run the starter sweep on the built-in digits-mlp"),
        Binding("question_mark", "help", "Help", tooltip="Show every key binding"),
        Binding("q", "quit", "Quit", tooltip="Quit (asks first while a sweep runs)"),
        Binding("o", "open_model", "Open", tooltip="Open a model file or folder by path"),
        Binding("p", "pull_model", "Pull", show=False, tooltip="Pull a model from the Hugging Face Hub (ORG/NAME)"),
        Binding("slash", "focus_filter", "Filter", tooltip="Filter the results by text (model, method, status…)"),
        Binding("s", "sort", "Sort", show=False, tooltip="Sort the results by a column (clicking a header does too)"),
        Binding("S", "reverse_sort", "Reverse", show=False, tooltip="Reverse the sort order"),
        Binding("g", "chart", "Chart", tooltip="Chart accuracy vs latency with the Pareto frontier"),
        Binding("x", "compare", "Compare", tooltip="Compare the two marked results (space marks a row)"),
        Binding("i", "insights", "Insights", show=False,
                tooltip="What to ship for the chosen model and why; which technique wins per architecture"),
        Binding("e", "export", "Export", show=False, tooltip="Export the shown results to CSV or JSON"),
        Binding("h", "hosts", "Hosts", show=False, tooltip="The fleet's hosts: devices, current variant, queue"),
        Binding("ctrl+l", "clear_filters", "Clear filters", show=False, tooltip="Clear every result filter"),
        Binding("1", "pane('models')", "Models", show=False, tooltip="Go to the model browser"),
        Binding("2", "pane('setup')", "Setup", show=False, tooltip="Go to the sweep setup (methods, runtimes…)"),
        Binding("3", "pane('meters')", "Meters", show=False, tooltip="Go to the live device meters"),
        Binding("4", "pane('results')", "Results", show=False, tooltip="Go to the results table"),
    ]

    def __init__(self, settings: AppSettings, system: SystemProbe, store: Any | None = None,
                 db_path: Path | None = None):
        super().__init__(id="main")
        self.settings = settings
        self.system = system
        self.store = store
        self.db_path = Path(store.path) if store is not None else db_path
        self.store_error: str | None = None
        self.built = False  # the panes' contents are mounted (on_mount)
        self.loaded = False  # store opened, models listed, history read (tests wait on this)
        # The sweep's worker posts its messages here; the screen hands each to the panes it concerns.
        self.coordinator = SweepCoordinator(self)
        self.sweep = SweepController(self.post_message, self.coordinator.spawn, system.monotonic)
        # MLflow: the sweep's sinks queue each result; the results pane sends the queue.
        self.tracking = TrackingController(settings)
        self.sweep.sinks_for = self.tracking.sinks
        # The store, the models, the history and the first device reading are read while Textual
        # composes and mounts the panes (on_mount takes what is read by then).
        primed_at = getattr(system, "primed_at", None)
        self._startup = StartupLoad(store, self.db_path, system, self._startup_model(),
                                    primed_at + FIRST_READING_S if primed_at is not None else system.monotonic())

    # --- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # Everything the first screen shows is in the first frame: the panes' contents and the
        # footer's keys (a skeleton painted first, then the panes, then the keys, cost the user a
        # full frame each before the screen was complete). What lies below the Sweep setup's fold
        # comes after that frame (SweepSetupPane.mount_details).
        # The breakpoint classes are set before the widgets are mounted: Textual sets them at the
        # first resize, after the mount, which restyled every widget of the screen a second time.
        width, height = self.app.size
        for dimension, breakpoints in ((width, self.HORIZONTAL_BREAKPOINTS), (height, self.VERTICAL_BREAKPOINTS)):
            chosen = self._get_breakpoint_classes(dimension, breakpoints)
            for _, name in breakpoints:
                self.set_class(name in chosen, name, update=False)
        yield Static("", id="topbar")
        if self.tabbed:  # else made when the terminal first becomes small (hidden in the grid: 6 widgets)
            yield self._pane_tabs("models")
        contents = {
            "models": ModelBrowser(self.system, lambda: (self.results_pane.total, len(self.results_pane.runs)),
                                   id="model-browser"),
            "setup": SweepSetupPane(self.system, self.settings.measure_settings(), id="sweep-setup",
                                    stacked=SweepSetupPane.stacks_in(setup_frame_width(self.app.size))),
            "meters": DeviceMeters(self.system, self.settings.sample_interval_s, lambda: self.sweeping,
                                   id="device-meters"),
            "results": ResultsPane(self.tracking, self._results_shown, id="results-pane"),
        }
        with Container(id="workspace"):
            for pane, (title, _) in PANES.items():
                with Vertical(id=pane, classes="pane -active" if pane == "models" else "pane") as frame:
                    frame.border_title = title
                    yield contents[pane]
        yield CompactFooter()

    def on_mount(self) -> None:
        # The panes are mounted (compose's widgets are, before this runs).
        self.built = True
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)
        self.setup_pane.apply_setup(self.settings.last_setup or STARTER_SETUP)
        # What the start-up thread read while the panes were composed (the store, the models, the
        # history, the first device reading) is shown in the first frame: handled here, before the
        # screen is first drawn. A slow store (or a slow first reading) is not waited for beyond
        # STARTUP_WAIT_S: the thread posts the rest, shown a frame later.
        read, sample_coming = self._startup.take(STARTUP_WAIT_S, self._post_startup)
        for message in read:
            target = self.meters if isinstance(message, messages.DeviceSampled) else self
            getattr(target, message.handler_name)(message)
        if not sample_coming and not any(isinstance(m, messages.DeviceSampled) for m in read):
            # The first CPU reading covers the time since the process primed psutil (the entry
            # point does, before importing Textual).
            primed_at = getattr(self.system, "primed_at", None)
            elapsed = self.system.monotonic() - primed_at if primed_at is not None else 0.0
            self.meters.arm_sampler(max(0.01, FIRST_READING_S - elapsed))  # a timer of 0 s divides by zero
        self.refresh_topbar()
        self.query_one("#model-list").focus()
        self.call_after_refresh(gc_pause.resume)  # the collector, paused by the entry point

    def _post_startup(self, message: Message) -> None:
        """What the start-up thread reads after the first frame: a device reading to the meters, the rest here."""
        (self.meters if isinstance(message, messages.DeviceSampled) else self).post_message(message)

    @property
    def ready(self) -> bool:
        """Everything is mounted and loaded: store, models, history (its Pareto stars too), the set-up's lower part."""
        return self.loaded and self.setup_pane.details_ready and self.results_pane.view.frontier_known

    @property
    def results_pane(self) -> ResultsPane:
        return self.query_one(ResultsPane)

    @property
    def setup_pane(self) -> SweepSetupPane:
        return self.query_one(SweepSetupPane)

    @property
    def meters(self) -> DeviceMeters:
        return self.query_one(DeviceMeters)

    @property
    def browser(self) -> ModelBrowser:
        return self.query_one(ModelBrowser)

    @property
    def sweeping(self) -> bool:
        return self.sweep.busy

    @property
    def tabbed(self) -> bool:
        """True when the panes are shown one at a time (small terminals)."""
        return self.has_class("-narrow") or self.has_class("-short")

    def refresh_topbar(self) -> None:
        topbar = self.query_one("#topbar", Static)
        if not self.built:
            set_text(topbar, Content.from_markup("[b $text-primary]qbench[/] [$text-muted]starting…[/]"))
            return
        if self.store_error:
            state = "[$text-error]store unusable[/]"
        elif self.sweeping:
            state = "[b $text-accent]▶ sweep running[/]"
        else:
            state = "[$text-muted]idle[/]"
        runs = len(self.results_pane.runs) if self.loaded else 0
        queued = self.results_pane.tracking.line()  # results waiting for MLflow (and why)
        set_text(topbar, Content.from_markup(  # one line (CSS): no layout pass
            "[b $text-primary]qbench[/] [$text-muted]store[/] $path [$text-muted]· $runs ·[/] " + state
            + (" [$text-warning]· $queued[/]" if queued else ""),
            path=short_path(self.db_path) if self.db_path else "no store",
            runs=f"{runs} run{'s' if runs != 1 else ''}", queued=queued or ""))

    def on_tracking_synced(self) -> None:
        self.refresh_topbar()  # the results pane's MLflow queue changed (the top bar shows it)

    def _theme_changed(self, theme: Any) -> None:
        if self.loaded:
            self.results_pane.refresh_view()  # table cells carry theme colours

    # --- start-up ------------------------------------------------------------------------------

    @work(thread=True, group="warm-runner", exit_on_error=False)
    def _warm_runner(self) -> None:
        warm_runner()

    def on_store_opened(self, message: messages.StoreOpened) -> None:
        if message.path is not None:
            self.db_path = Path(message.path)
        if message.store is None:
            self.store_error = message.error or "the store could not be opened"
            self.results_pane.show_store_error(self.store_error)
            self.notify(self.store_error, title="store", severity="error", timeout=10)
        else:
            self.store = self.sweep.store = message.store
            self.results_pane.set_welcome(short_path(self.db_path))
            self.results_pane.tracking.sync(self.store)  # what an earlier session could not send to MLflow
        self.refresh_topbar()

    def _startup_model(self) -> str:
        """The model the browser selects once the models are listed."""
        return (self.settings.last_setup or {}).get("model") or STARTER_SETUP["model"]

    def on_models_listed(self, message: messages.ModelsListed) -> None:
        self.browser.set_models(message.models, select=self._startup_model())
        if message.error:
            self.notify(f"listing models failed: {message.error}", severity="error")

    def on_history_loaded(self, message: messages.HistoryLoaded) -> None:
        self.results_pane.set_history(self.store, message.view, message.runs)
        if self.store_error:
            self.results_pane.show_store_error()
        self.loaded = True
        self.browser.store, self.browser.history_ready = self.store, True
        if message.model and message.model_summary is not None:
            self.browser.history_read(message.model, message.model_summary)
        self.browser.show_history()
        self.refresh_topbar()
        self.refresh_bindings()
        self.set_timer(WARM_RUNNER_AFTER_S, self._warm_runner, name="warm-runner")
        # The set-up's widgets below its fold (half the app's widgets), once the frame with the
        # models, the history and the welcome is drawn: mounted before it, they delayed it. A key
        # pressed meanwhile reads the set-up from what they will show (current_setup).
        self.call_after_refresh(self.setup_pane.mount_details)

    # --- keys that work in every pane: each delegates to its pane (or opens a dialog over all) ---

    def action_open_model(self) -> None:
        self.browser.open_model()

    def action_pull_model(self) -> None:
        self.browser.pull_model()

    def select_model(self, name: str) -> None:
        if self.browser.select(name):
            self.action_pane("models")

    def action_focus_filter(self) -> None:
        self.action_pane("results")
        self.results_pane.query_one("#filter-text").focus()

    def action_clear_filters(self) -> None:
        self.results_pane.clear_filters()

    def action_sort(self) -> None:
        self.results_pane.choose_sort()

    def action_reverse_sort(self) -> None:
        self.results_pane.reverse_sort()

    def action_chart(self) -> None:
        self.results_pane.show_chart()

    def action_compare(self) -> None:
        self.results_pane.compare_marked()

    def action_export(self) -> None:
        self.results_pane.export_shown()

    def show_run(self, run_id: str) -> None:
        self.results_pane.show_run(run_id)
        self.action_pane("results")

    def action_hosts(self) -> None:
        from qbench_tui.screens.hosts import HostsScreen

        self.app.push_screen(HostsScreen(self.store))

    def action_insights(self) -> None:
        from qbench_tui.screens.insights import InsightsScreen

        selected = self.browser.selected if self.built else None
        self.app.push_screen(InsightsScreen(self.store, getattr(selected, "name", None)))

    # --- the sweep (what it does to each pane is in main_sweep.py) -----------------------------

    def action_run_sweep(self) -> None:
        self.coordinator.run()

    def action_starter_sweep(self) -> None:
        self.coordinator.starter()

    def action_cancel_sweep(self) -> None:
        self.coordinator.cancel()

    def action_quit(self) -> None:
        self.coordinator.quit()

    @on(messages.SweepWaiting)
    @on(messages.SweepStarted)
    @on(messages.VariantStarted)
    @on(messages.PhaseChanged)
    @on(messages.LatenciesMeasured)
    @on(messages.ResultRecorded)
    @on(messages.SweepFinished)
    @on(messages.SweepCancelled)
    @on(messages.SweepFailed)
    def route_sweep_message(self, message: Message) -> None:
        """The worker's messages come here (the screen owns the sweep); each goes to its panes."""
        self.coordinator.route(message)

    def _results_shown(self, first: bool) -> None:
        """A batch of the sweep's results is shown: the model's history changed; the starter key may go."""
        self.browser.show_history(background=True)
        if first:
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_sweep":
            return True if self.sweeping else None  # shown dimmed while idle
        if action == "run_sweep":
            return None if self.sweeping else True
        if action == "starter_sweep":
            # Offered while the store is empty (first launch); hidden afterwards. Dimmed until the
            # history is read: the footer then only turns keys on or off, in place (no recompose).
            if not self.loaded:
                return None
            return not self.results_pane.total and not self.sweeping and not self.store_error
        return True

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place where an unexpected worker error becomes a message (never a crash)."""
        if event.state != WorkerState.ERROR:
            return
        error = describe_error(event.worker.error) if event.worker.error else "unknown error"
        if event.worker.group == "sweep":
            self.post_message(messages.SweepFailed(self.sweep.run_id, error))
        else:
            self.notify(error, title=f"{event.worker.group} failed", severity="error", timeout=10)

    # --- panes -----------------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "starter-button":
            self.action_starter_sweep()

    def _pane_tabs(self, active: str) -> Tabs:
        from textual.widgets import Tab, Tabs  # only small terminals show them

        return Tabs(*(Tab(title, id=f"tab-{pane}") for pane, (title, _) in PANES.items()),
                    active=f"tab-{active}", id="pane-tabs")

    def on_resize(self) -> None:
        # The breakpoint classes are set by now (Screen._on_resize runs first).
        if self.tabbed and not self.query("#pane-tabs"):
            shown = next((p for p in PANES if self.query_one(f"#{p}").has_class("-active")), "models")
            self.mount(self._pane_tabs(shown), before="#workspace")

    def action_pane(self, pane: str) -> None:
        self._show_pane(pane)
        target = PANES[pane][1]
        if pane == "results" and not self.results_pane.query_one(ResultsTable).display:
            target = "#starter-button"
        widget = self.query(target).first()
        if widget.focusable:
            widget.focus()

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        if event.tab.id:
            self._show_pane(event.tab.id.removeprefix("tab-"))

    def _show_pane(self, pane: str) -> None:
        for tabs in self.query("#pane-tabs"):  # no change (and no TabActivated) when chosen by its tab
            tabs.active = f"tab-{pane}"
        for name in PANES:
            self.query_one(f"#{name}").set_class(name == pane, "-active")

    def focus_field(self, field: str) -> None:
        widgets = self.query(f"#{field}")
        if not widgets:
            return
        widget = widgets.first()
        pane = next((p for p in PANES if self.query_one(f"#{p}") in widget.ancestors), None)
        if pane and self.tabbed:
            self._show_pane(pane)
        target = widget if widget.focusable else next((w for w in widget.query("*") if w.focusable), None)
        if target is not None:
            target.focus()
            target.scroll_visible()

    # --- help and the palette --------------------------------------------------------------------

    def action_help(self) -> None:
        from qbench_tui.screens.help import HelpScreen, main_help_sections

        footer = f"store: {self.db_path or '–'} · settings: {self.settings.path or 'not saved'}"
        self.app.push_screen(HelpScreen(main_help_sections(self.app, self.BINDINGS), footer))

    def palette_commands(self, extra: list[PaletteCommand]) -> list[PaletteCommand]:
        """The palette's entries for this screen, ``extra`` (the app's) among them."""
        return main_screen_commands(self, PANES, [*extra, *self.results_pane.tracking.commands()]) if self.built else []

