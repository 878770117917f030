"""The qbench terminal app: model browser, method configurator, live device meters, results.

Everything blocking runs in thread workers that end by posting a message named as a past event
(``messages.py``): opening the store and listing models at start-up, the device sampler (a
one-shot timer re-armed after each sample, so samples never overlap), the sweep (the engine's
child-process runner) and exports. The UI process never imports torch or another engine library.
"""

from __future__ import annotations

import json
import os
import signal
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container, Vertical
from textual.content import Content
from textual.timer import Timer
from textual.widgets import Button, Footer, Input, Static, Tab, Tabs
from textual.worker import Worker, WorkerState

from qbench_tui import messages
from qbench_tui.analysis import model_history, result_key
from qbench_tui.commands import QBenchCommands
from qbench_tui.settings import STARTER_SETUP, AppSettings
from qbench_tui.sweep import SetupError, SweepController, SweepSetup, describe_error
from qbench_tui.system import LocalSystem, SystemProbe
from qbench_tui.themes import DEFAULT_THEME, ThemeFile, load_themes
from qbench_tui.widgets.meters import DeviceMeters
from qbench_tui.widgets.model_browser import ModelBrowser
from qbench_tui.widgets.results import ResultsPane, ResultsTable
from qbench_tui.widgets.sweep_setup import SweepSetupPane

# pane id -> (tab title, the widget that takes focus when the pane is chosen)
PANES: dict[str, tuple[str, str]] = {
    "models": ("1 Models", "#model-list"),
    "setup": ("2 Sweep setup", "#methods"),
    "meters": ("3 Meters", "#device-meters"),
    "results": ("4 Results", "#results-table"),
}

HELP_GROUPS: dict[str, tuple[str, ...]] = {
    "Sweep": ("run_sweep", "cancel_sweep", "starter_sweep", "open_model", "quit"),
    "Results": ("focus_filter", "sort", "reverse_sort", "chart", "compare", "export", "clear_filters"),
    "Panes and help": ("pane('models')", "pane('setup')", "pane('meters')", "pane('results')", "help"),
}


class QBenchApp(App[int]):
    """The app. Build it with :func:`make_app` (tests pass their own store, settings, system)."""

    TITLE = "qbench"
    # The screens' styles load with the app: a stylesheet loaded on first push repaints late.
    CSS_PATH: ClassVar[list[str]] = ["app.tcss", "screens/screens.tcss"]
    COMMANDS = App.COMMANDS | {QBenchCommands}
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
        Binding("slash", "focus_filter", "Filter", tooltip="Filter the results by text (model, method, status…)"),
        Binding("s", "sort", "Sort", show=False, tooltip="Sort the results by a column (clicking a header does too)"),
        Binding("S", "reverse_sort", "Reverse", show=False, tooltip="Reverse the sort order"),
        Binding("g", "chart", "Chart", tooltip="Chart accuracy vs latency with the Pareto frontier"),
        Binding("x", "compare", "Compare", tooltip="Compare the two marked results (space marks a row)"),
        Binding("e", "export", "Export", show=False, tooltip="Export the shown results to CSV or JSON"),
        Binding("ctrl+l", "clear_filters", "Clear filters", show=False, tooltip="Clear every result filter"),
        Binding("1", "pane('models')", "Models", show=False, tooltip="Go to the model browser"),
        Binding("2", "pane('setup')", "Setup", show=False, tooltip="Go to the sweep setup (methods, runtimes…)"),
        Binding("3", "pane('meters')", "Meters", show=False, tooltip="Go to the live device meters"),
        Binding("4", "pane('results')", "Results", show=False, tooltip="Go to the results table"),
    ]

    def __init__(self, store: Any | None = None, db_path: Path | None = None,
                 settings: AppSettings | None = None, system: SystemProbe | None = None,
                 theme_dirs: list[Path] | None = None):
        self.settings = settings or AppSettings()
        self.system: SystemProbe = system or LocalSystem()
        self.store = store
        self.db_path = Path(store.path) if store is not None else db_path
        self.store_error: str | None = None
        self.controller: SweepController | None = None
        self.sweep_pending = False  # between r and the runner's first event
        self.sweep_active = False  # between the first event and the end of the sweep
        self.built = False  # the panes' contents are mounted
        self.loaded = False  # store opened, models listed, history read (tests wait on this)
        self.theme_files: list[ThemeFile] = []
        self.model_options: dict[str, dict[str, Any]] = {}  # per model opened by path (allow_pickle)
        self._theme_dirs = theme_dirs
        self._sampler_timer: Timer | None = None
        self._starting_model = ""
        super().__init__()
        # Themes are registered and chosen before the first compose: switching later restyles
        # every widget (seconds on a loaded machine).
        self._theme_problems = self._register_themes()

    # --- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # A light skeleton paints first (top bar, pane frames, footer); the panes' contents are
        # mounted right after it (see _build), so the first frame never waits for them.
        yield Static("", id="topbar")
        yield Tabs(*(Tab(title, id=f"tab-{pane}") for pane, (title, _) in PANES.items()), id="pane-tabs")
        with Container(id="workspace"):
            for pane, (title, _) in PANES.items():
                with Vertical(id=pane, classes="pane -active" if pane == "models" else "pane") as frame:
                    frame.border_title = title
                    yield Static("loading…", classes="pane-loading")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        for problem in self._theme_problems:
            self.notify(problem, title="theme skipped", severity="warning")
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self._refresh_topbar()
        self.call_after_refresh(self._build)

    async def _build(self) -> None:
        """Mount the panes' contents, then start loading data and sampling devices."""

        contents = {
            "models": ModelBrowser(id="model-browser"),
            "setup": SweepSetupPane(self.system, self.settings.measure_settings(), id="sweep-setup"),
            "meters": DeviceMeters(self.system, id="device-meters"),
            "results": ResultsPane(id="results-pane"),
        }
        for pane, widget in contents.items():
            frame = self.query_one(f"#{pane}")
            await frame.query(".pane-loading").remove()
            await frame.mount(widget)
        self.built = True
        self.query_one(SweepSetupPane).apply_setup(self.settings.last_setup or STARTER_SETUP)
        self._refresh_topbar()
        self._load_startup()
        self._arm_sampler(0.5)  # psutil needs an interval for its first CPU reading
        self.query_one("#model-list").focus()

    @property
    def results_pane(self) -> ResultsPane:
        return self.query_one(ResultsPane)

    @property
    def meters(self) -> DeviceMeters:
        return self.query_one(DeviceMeters)

    @property
    def browser(self) -> ModelBrowser:
        return self.query_one(ModelBrowser)

    @property
    def sweeping(self) -> bool:
        return (self.sweep_pending or self.sweep_active
                or (self.controller is not None and self.controller.running.is_set()))

    @property
    def tabbed(self) -> bool:
        """True when the panes are shown one at a time (small terminals)."""
        return self.screen.has_class("-narrow") or self.screen.has_class("-short")

    def _refresh_topbar(self) -> None:
        path = _short_path(self.db_path) if self.db_path else "no store"
        if self.store_error:
            state = "[$text-error]store unusable[/]"
        elif self.sweeping:
            state = "[b $text-accent]▶ sweep running[/]"
        else:
            state = "[$text-muted]idle[/]"
        runs = len(self.results_pane.runs) if self.loaded else 0
        if not self.built:
            self.query_one("#topbar", Static).update(Content.from_markup(
                "[b $text-primary]qbench[/] [$text-muted]starting…[/]"))
            return
        self.query_one("#topbar", Static).update(Content.from_markup(
            "[b $text-primary]qbench[/] [$text-muted]store[/] $path [$text-muted]· $runs ·[/] " + state,
            path=path, runs=f"{runs} run{'s' if runs != 1 else ''}"))

    # --- themes --------------------------------------------------------------------------------

    def _register_themes(self) -> list[str]:
        self.theme_files, problems = load_themes(self._theme_dirs)
        for theme_file in self.theme_files:
            self.register_theme(theme_file.theme)
        wanted = self.settings.theme if self.settings.theme in self.available_themes else DEFAULT_THEME
        if wanted in self.available_themes:
            self.theme = wanted
        return problems

    def _theme_changed(self, theme: Any) -> None:
        self.settings.theme = theme.name
        self.settings.save()
        if self.loaded:
            self.results_pane.refresh_view()  # table cells carry theme colours

    def set_theme(self, name: str) -> None:
        self.theme = name
        self.notify(f"theme: {name}", timeout=2)

    # --- start-up ------------------------------------------------------------------------------

    @work(thread=True, group="startup", exit_on_error=False)
    def _load_startup(self) -> None:
        """Open the store, list models, read the history; then warm the runner import."""
        store = self.store
        if store is None:
            try:
                from engines.paths import default_db_path
                from engines.store import Store, StoreError

                path = self.db_path or default_db_path()
                self.db_path = path
                try:
                    store = Store(path)
                except StoreError as exc:
                    self.post_message(messages.StoreOpened(None, str(exc)))
                    store = None
            except Exception as exc:  # noqa: BLE001 - any failure becomes a message
                self.post_message(messages.StoreOpened(None, describe_error(exc)))
                store = None
        if store is not None:
            self.post_message(messages.StoreOpened(store))
        try:
            models = self.system.list_models()
            self.post_message(messages.ModelsListed(models))
        except Exception as exc:  # noqa: BLE001 - a broken model plugin must not stop the app
            self.post_message(messages.ModelsListed([], describe_error(exc)))
        results: list[dict[str, Any]] = []
        runs: dict[str, dict[str, Any]] = {}
        if store is not None:
            try:
                runs = {r["id"]: r for r in store.list_runs()}
                results = store.results()
            except Exception as exc:  # noqa: BLE001 - shown as the store's error
                self.post_message(messages.StoreOpened(None, f"reading the store failed: {describe_error(exc)}"))
        self.post_message(messages.HistoryLoaded(results, runs))
        try:  # the first `r` then starts at once (numpy and the runner are already imported)
            import engines.bench.runner  # noqa: F401
        except ImportError:
            pass

    def on_store_opened(self, message: messages.StoreOpened) -> None:
        if message.store is None:
            self.store_error = message.error or "the store could not be opened"
            self.results_pane.query_one("#welcome", Static).update(Content.from_markup(
                "[b $text-error]The result store cannot be used[/]\n$e\n\n"
                "[$text-muted]Models and methods can still be browsed; sweeps need a store. Start qbench "
                "with --db PATH to use another file.[/]", e=self.store_error))
            self.results_pane.query_one("#starter-button").display = False
            self.notify(self.store_error, title="store", severity="error", timeout=10)
        else:
            self.store = message.store
            self.db_path = Path(message.store.path)
            self.controller = SweepController(message.store, self.post_message, self.system.monotonic)
            self.results_pane.set_welcome(_short_path(self.db_path))
        self._refresh_topbar()

    def on_models_listed(self, message: messages.ModelsListed) -> None:
        wanted = (self.settings.last_setup or {}).get("model") or STARTER_SETUP["model"]
        self.browser.set_models(message.models, select=wanted)
        if message.error:
            self.notify(f"listing models failed: {message.error}", severity="error")

    def on_history_loaded(self, message: messages.HistoryLoaded) -> None:
        self.results_pane.set_history(message.results, message.runs)
        if self.store_error:
            self.results_pane.query_one("#results-empty").display = True
            self.results_pane.query_one(ResultsTable).display = False
        self.loaded = True
        self._show_model_history()
        self._refresh_topbar()
        self.refresh_bindings()

    # --- model browser -------------------------------------------------------------------------

    def on_model_browser_model_chosen(self, message: ModelBrowser.ModelChosen) -> None:
        self._show_model_history()

    def _show_model_history(self) -> None:
        spec = self.browser.selected
        if spec is None or not self.loaded:
            return
        history = model_history(self.results_pane.results.values(), spec.name, self.results_pane.runs)
        self.browser.show_details(spec, history)

    def action_open_model(self, error: str | None = None, value: str = "", allow_pickle: bool = False) -> None:
        from qbench_tui.screens.open_model import OpenModelScreen

        def opened(answer: tuple[str, dict] | None) -> None:
            if answer:
                self._resolve_model(*answer)

        self.push_screen(OpenModelScreen(error, value, allow_pickle), opened)

    @work(thread=True, group="open-model", exit_on_error=False)
    def _resolve_model(self, path: str, options: dict[str, Any]) -> None:
        try:
            spec = self.system.resolve_model(os.path.expanduser(path), options or None)
        except Exception as exc:  # noqa: BLE001 - loaders raise many kinds; all are shown
            self.post_message(messages.ModelOpened(path, error=describe_error(exc), options=options))
            return
        self.post_message(messages.ModelOpened(path, spec=spec, options=options))

    def on_model_opened(self, message: messages.ModelOpened) -> None:
        if message.spec is None:
            self.action_open_model(error=message.error, value=message.path,
                                   allow_pickle=bool(message.options.get("allow_pickle")))
            return
        self.model_options[message.spec.name] = dict(message.options)
        self.browser.add_model(message.spec)
        self.notify(f"opened {message.spec.name} ({message.spec.task})", timeout=3)

    def select_model(self, name: str) -> None:
        if self.browser.select(name):
            self.action_pane("models")

    # --- the sweep -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not self.built and action not in ("quit", "help", "command_palette"):
            return None  # the panes are still being mounted (a fraction of a second)
        if action == "cancel_sweep":
            return True if self.sweeping else None  # shown dimmed while idle
        if action == "run_sweep":
            return None if self.sweeping else True
        if action == "starter_sweep":
            # Offered while the store is empty (first launch); hidden afterwards.
            return self.loaded and not self.results_pane.results and not self.sweeping and not self.store_error
        return True

    def action_run_sweep(self) -> None:
        if self.sweeping:
            self.notify("a sweep is already running; c cancels it", severity="warning")
            return
        spec = self.browser.selected
        model = (spec.path or spec.name) if spec is not None else None
        try:
            options = self.model_options.get(spec.name, {}) if spec is not None else {}
            setup = self.query_one(SweepSetupPane).current_setup(model, options)
        except SetupError as exc:
            self.notify(str(exc), title="cannot run yet", severity="error")
            if exc.field:
                self._focus_field(exc.field)
            return
        self.start_sweep(setup)

    def action_starter_sweep(self) -> None:
        if self.sweeping:
            self.notify("a sweep is already running", severity="warning")
            return
        if not self.browser.select(STARTER_SETUP["model"]):
            self.notify(f"the built-in model {STARTER_SETUP['model']} is not available", severity="error")
            return
        self.query_one(SweepSetupPane).apply_setup(STARTER_SETUP)
        self.action_run_sweep()

    def start_sweep(self, setup: SweepSetup | None, resume_run_id: str | None = None) -> None:
        """Start a sweep (or resume one) in a thread worker."""
        if self.store is None or self.controller is None:
            self.notify(self.store_error or "the store is still opening", title="cannot run", severity="error")
            return
        if setup is not None:
            self.settings.last_setup = setup.to_dict()
            self.settings.save()
        self.sweep_pending = True
        self._starting_model = setup.model if setup else ""
        self.meters.sweep_started("", self._starting_model, setup.measurement_count if setup else 0, 0)
        self.results_pane.set_running(True)
        self._refresh_topbar()
        self.refresh_bindings()
        if self.tabbed:
            self.action_pane("meters")
        self._sweep_worker(setup, resume_run_id)

    @work(thread=True, group="sweep", exit_on_error=False)
    def _sweep_worker(self, setup: SweepSetup | None, resume_run_id: str | None) -> None:
        assert self.controller is not None
        self.controller.run(setup, resume_run_id)

    def action_cancel_sweep(self) -> None:
        if not self.sweeping or self.controller is None:
            self.notify("no sweep is running", timeout=2)
            return
        self.controller.cancel()
        self.meters.message = "cancelling: stopping the benchmark process…"
        self.meters.refresh_job()
        self.notify("cancelling the sweep; finished results stay stored", severity="warning", timeout=4)

    def on_sweep_started(self, message: messages.SweepStarted) -> None:
        self.sweep_pending = False
        self.sweep_active = True
        self.results_pane.set_running(True)
        if message.run:
            self.results_pane.add_run(message.run)
        self.meters.sweep_started(message.run_id, message.model, message.total, message.done)
        self._refresh_topbar()
        self.refresh_bindings()

    def on_variant_started(self, message: messages.VariantStarted) -> None:
        self.meters.variant_started(message.method, message.runtime, message.device, message.index,
                                    message.count, message.batch_sizes)

    def on_phase_changed(self, message: messages.PhaseChanged) -> None:
        self.meters.phase_changed(message.phase, message.batch_size)

    def on_latencies_measured(self, message: messages.LatenciesMeasured) -> None:
        self.meters.latencies_measured(message.ms)

    def on_result_recorded(self, message: messages.ResultRecorded) -> None:
        result = message.result
        self.results_pane.add_result(result)
        self.meters.result_recorded()
        if result["status"] == "failed":
            self.notify(f"{result['method']} · {result['runtime']} · {result['device']}: {result.get('error')}",
                        title="variant failed (stored)", severity="error", timeout=8)
        self._show_model_history()
        if len(self.results_pane.results) == 1:
            self.refresh_bindings()  # the starter-sweep key goes once there is a result

    def _sweep_counts(self, run_id: str | None) -> str:
        mine = [r for r in self.results_pane.results.values() if r.get("run_id") == run_id]
        counts = {s: sum(1 for r in mine if r["status"] == s) for s in ("ok", "failed", "unsupported")}
        return f"{counts['ok']} ok · {counts['failed']} failed · {counts['unsupported']} unsupported"

    def on_sweep_finished(self, message: messages.SweepFinished) -> None:
        self.sweep_pending = False
        counts = self._sweep_counts(message.run_id)
        self.meters.sweep_ended("finished", message.elapsed_s, counts)
        self._set_run_status(message.run_id, message.status)
        self.notify(counts, title=f"sweep finished · run {message.run_id}", timeout=6)
        self._sweep_ended()

    def on_sweep_cancelled(self, message: messages.SweepCancelled) -> None:
        self.sweep_pending = False
        stored = self._sweep_counts(message.run_id)
        hint = f"resume from ctrl+p → Resume run {message.run_id}" if message.run_id else ""
        self.meters.sweep_ended("cancelled", message.elapsed_s, f"stored: {stored}. {hint}".strip())
        if message.run_id:
            self._set_run_status(message.run_id, "interrupted")
        self.notify(f"stored: {stored}", title="sweep cancelled", severity="warning", timeout=6)
        self._sweep_ended()

    def on_sweep_failed(self, message: messages.SweepFailed) -> None:
        self.sweep_pending = False
        self.meters.run_id = message.run_id or self.meters.run_id
        self.meters.sweep_ended("failed", None, message.error)
        if message.run_id:
            self._set_run_status(message.run_id, "failed")
        self.notify(message.error, title="sweep failed", severity="error", timeout=10)
        self._sweep_ended()

    def _set_run_status(self, run_id: str, status: str) -> None:
        run = self.results_pane.runs.get(run_id)
        if run is not None:
            run["status"] = status

    def _sweep_ended(self) -> None:
        self.sweep_active = False
        self.results_pane.set_running(False)
        self._refresh_topbar()
        self.refresh_bindings()
        self._show_model_history()
        if self.tabbed and self.results_pane.results:
            self.action_pane("results")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place where an unexpected worker error becomes a message (never a crash)."""
        if event.state != WorkerState.ERROR:
            return
        error = describe_error(event.worker.error) if event.worker.error else "unknown error"
        if event.worker.group == "sweep":
            self.post_message(messages.SweepFailed(self.controller.run_id if self.controller else None, error))
        elif event.worker.group == "sampler":
            self._arm_sampler(self.settings.sample_interval_s * 5)  # keep trying, less often
        else:
            self.notify(error, title=f"{event.worker.group} failed", severity="error", timeout=10)

    # --- device sampling -------------------------------------------------------------------------

    def _arm_sampler(self, delay: float) -> None:
        self._sampler_timer = self.set_timer(delay, self._sample_devices, name="device-sampler")

    def _sample_devices(self) -> None:
        self._sampler_worker()

    @work(thread=True, group="sampler", exit_on_error=False)
    def _sampler_worker(self) -> None:
        self.post_message(messages.DeviceSampled(self.system.sample()))

    def on_device_sampled(self, message: messages.DeviceSampled) -> None:
        self.meters.update_sample(message.sample)
        # Re-armed only now: a slow sample (nvidia-smi, a loaded machine) delays the next one.
        # Between sweeps the meters tick at half the rate: nothing is being measured.
        interval = self.settings.sample_interval_s
        self._arm_sampler(interval if self.sweeping else 2 * interval)

    # --- results -------------------------------------------------------------------------------

    def on_results_pane_result_opened(self, message: ResultsPane.ResultOpened) -> None:
        self.open_result(message.result)

    def open_result(self, result: dict[str, Any]) -> None:
        from qbench_tui.screens.result_detail import ResultDetailScreen

        earlier = [r for r in self.results_pane.results.values()
                   if r is not result and r["status"] == "ok"
                   and all(r.get(k) == result.get(k) for k in ("model", "method", "runtime", "device", "batch_size"))]
        earlier.sort(key=lambda r: r.get("finished_at") or "", reverse=True)
        self.push_screen(ResultDetailScreen(result, self.results_pane.runs.get(result.get("run_id") or ""), earlier))

    def action_focus_filter(self) -> None:
        self.action_pane("results")
        self.results_pane.query_one("#filter-text", Input).focus()

    def action_clear_filters(self) -> None:
        self.results_pane.clear_filters()

    def action_sort(self) -> None:
        from qbench_tui.screens.sort import SortScreen

        pane = self.results_pane

        def chosen(column: str | None) -> None:
            if column:
                pane.set_sort(column)

        self.push_screen(SortScreen(pane.sort_column, pane.sort_reverse), chosen)

    def action_reverse_sort(self) -> None:
        pane = self.results_pane
        if pane.sort_column:
            pane.set_sort(pane.sort_column, not pane.sort_reverse)

    def action_chart(self) -> None:
        from qbench_tui.screens.chart import ParetoChartScreen

        self.push_screen(ParetoChartScreen(self.results_pane.visible))

    def action_compare(self) -> None:
        from qbench_tui.screens.compare import CompareScreen

        pane = self.results_pane
        marked = pane.marked_results()
        if len(marked) == 1:
            cursor = pane.cursor_result()
            if cursor is not None and result_key(cursor) != result_key(marked[0]):
                marked.append(cursor)
        if len(marked) < 2:
            self.notify("mark two results with space (in the results table), then press x",
                        title="compare", severity="warning")
            return
        a, b = marked[:2]
        runs = pane.results.values()
        self.push_screen(CompareScreen(a, b, [r for r in runs if r.get("run_id") == a.get("run_id")],
                                       [r for r in runs if r.get("run_id") == b.get("run_id")]))

    def action_export(self) -> None:
        from qbench_tui.screens.export import ExportScreen

        shown = self.results_pane.visible
        if not shown:
            self.notify("no results to export", severity="warning")
            return
        try:
            from engines.paths import qbench_home

            folder = qbench_home() / "exports"
        except OSError:
            folder = Path.cwd()
        default = folder / f"qbench-results-{datetime.now():%Y%m%d-%H%M%S}.csv"

        def chosen(path: Path | None) -> None:
            if path is not None:
                self._export_worker(path, shown)

        self.push_screen(ExportScreen(default, len(shown)), chosen)

    @work(thread=True, group="export", exit_on_error=False)
    def _export_worker(self, path: Path, results: list[dict[str, Any]]) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix.lower() == ".json":
                from engines.core.schema import public_json

                path.write_text(json.dumps(public_json(results), indent=2) + "\n", encoding="utf-8")
            else:
                from engines.core.schema import results_csv

                rows = [{**r, "run_id": r.get("run_id")} for r in results]
                path.write_text(results_csv(rows), encoding="utf-8")
        except (OSError, ValueError, TypeError) as exc:
            self.post_message(messages.ResultsExported(str(path), 0, describe_error(exc)))
            return
        self.post_message(messages.ResultsExported(str(path), len(results)))

    def on_results_exported(self, message: messages.ResultsExported) -> None:
        if message.error:
            self.notify(message.error, title="export failed", severity="error", timeout=10)
        else:
            self.notify(f"{message.count} result(s) → {message.path}", title="exported", timeout=6)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "starter-button":
            self.action_starter_sweep()

    # --- panes, help, quit ---------------------------------------------------------------------

    def action_pane(self, pane: str) -> None:
        tabs = self.query_one("#pane-tabs", Tabs)
        tabs.active = f"tab-{pane}"
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
        for name in PANES:
            self.query_one(f"#{name}").set_class(name == pane, "-active")

    def _focus_field(self, field: str) -> None:
        widgets = self.query(f"#{field}")
        if not widgets:
            return
        widget = widgets.first()
        pane = next((p for p in PANES if widget.has_ancestor(self.query_one(f"#{p}"))), None) \
            if hasattr(widget, "has_ancestor") else None
        if pane and self.tabbed:
            self.query_one("#pane-tabs", Tabs).active = f"tab-{pane}"
            self._show_pane(pane)
        target = widget if widget.focusable else next(
            (w for w in widget.query("*") if w.focusable), None)
        if target is not None:
            target.focus()
            target.scroll_visible()

    def help_sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        from qbench_tui.screens.chart import ParetoChartScreen
        from qbench_tui.screens.compare import CompareScreen
        from qbench_tui.screens.help import binding_rows

        by_action = {b.action: b for b in self.BINDINGS if isinstance(b, Binding)}
        sections = [(title, binding_rows(self, [by_action[a] for a in actions if a in by_action]))
                    for title, actions in HELP_GROUPS.items()]
        sections[1][1].extend(binding_rows(self, ResultsTable.BINDINGS))
        sections[1][1].extend([("enter", "Open the result under the cursor: every measurement and the environment"),
                               ("click header", "Sort by that column (again: reverse)")])
        sections[2][1].extend([("tab / shift+tab", "Move between fields and panes"),
                               ("ctrl+p", "Command palette: run, cancel, export, themes, models, runs…"),
                               ("ctrl+q", "Quit at once (a running sweep is cancelled first)")])
        sections.append(("Lists and forms", [
            ("↑ ↓ / home end", "Move in a list or table"),
            ("space / enter", "Toggle a method, runtime or device; flip a switch"),
            ("escape", "Leave a text field (then the keys above work again)"),
        ]))
        sections.append(("Chart and compare dialogs", binding_rows(self, ParetoChartScreen.BINDINGS)
                         + binding_rows(self, CompareScreen.BINDINGS)))
        return sections

    def action_help(self) -> None:
        from qbench_tui.screens.help import HelpScreen

        footer = f"store: {self.db_path or '–'} · settings: {self.settings.path or 'not saved'}"
        self.push_screen(HelpScreen(self.help_sections(), footer))

    async def action_quit(self) -> None:
        if not self.sweeping:
            self.exit(0)
            return
        from qbench_tui.screens.confirm import ConfirmScreen

        done = self.meters.done
        question = (f"A sweep is running ({done}/{self.meters.total} measurements done).\n"
                    "Quitting cancels it; the finished results are already stored and the run can be "
                    "resumed later (ctrl+p → Resume run).")

        def answered(yes: bool | None) -> None:
            if yes:
                self.shutdown_sweep()
                self.exit(0)

        self.push_screen(ConfirmScreen("quit qbench?", question, yes="Quit", no="Keep running"), answered)

    def shutdown_sweep(self, timeout: float = 30.0) -> None:
        """Cancel a running sweep and wait for its worker (kills the child process)."""
        if self.controller is not None and self.sweeping:
            self.controller.cancel()
            self.controller.wait(timeout)

    def on_unmount(self) -> None:
        if self.controller is not None:
            self.controller.cancel()

    # --- command palette -------------------------------------------------------------------------

    def palette_commands(self) -> list[tuple[str, str, Any, bool]]:
        """(title, help, callback, shown without a query) for the palette provider."""
        if not self.built:
            return []
        cmds: list[tuple[str, str, Any, bool]] = [
            ("Run sweep", "Run the configured sweep on the chosen model (r)", self.action_run_sweep, True),
            ("Cancel sweep", "Stop the running sweep; finished results stay stored (c)", self.action_cancel_sweep,
             self.sweeping),
            ("Run the starter sweep", "digits-mlp: fp32 vs dynamic int8 on ONNX Runtime, CPU (b)",
             self.action_starter_sweep, not self.results_pane.results),
            ("Export results…", "Write the shown results to CSV or JSON (e)", self.action_export, True),
            ("Open model by path…", "An ONNX, TorchScript/ExportedProgram file or a Hugging Face folder (o)",
             self.action_open_model, True),
            ("Show accuracy vs latency chart", "With the Pareto frontier marked (g)", self.action_chart, True),
            ("Compare marked results", "Side by side with ratios (x; space marks)", self.action_compare, True),
            ("Sort results…", "Choose the column (s)", self.action_sort, False),
            ("Clear result filters", "Show every stored result (ctrl+l)", self.action_clear_filters, False),
            ("Keys and help", "Every key binding (?)", self.action_help, True),
        ]
        for tf in self.theme_files:
            cmds.append((f"Theme: {tf.title}", f"Switch to the {tf.title} theme (remembered)",
                         lambda name=tf.theme.name: self.set_theme(name), True))
        for spec in self.browser.models:
            cmds.append((f"Open model: {spec.name}", f"{spec.task} · {spec.source} · {spec.description}"[:100],
                         lambda name=spec.name: self.select_model(name), False))
        for pane, (title, _) in PANES.items():
            cmds.append((f"Go to {title[2:]}", f"Show the {title[2:].lower()} pane ({title[0]})",
                         lambda p=pane: self.action_pane(p), False))
        runs = sorted(self.results_pane.runs.values(), key=lambda r: r.get("created_at") or "", reverse=True)
        for run in runs[:50]:
            cmds.append((f"Show run {run['id']}", f"{run.get('model')} · {run.get('status')} · {run.get('source')}",
                         lambda rid=run["id"]: self._show_run(rid), False))
            if run.get("status") in ("interrupted", "failed") and run.get("source") != "remote":
                cmds.append((f"Resume run {run['id']}", f"Measure what {run.get('model')}'s run is missing",
                             lambda rid=run["id"]: self.resume_run(rid), True))
        return cmds

    def _show_run(self, run_id: str) -> None:
        self.results_pane.show_run(run_id)
        self.action_pane("results")

    def resume_run(self, run_id: str) -> None:
        if self.sweeping:
            self.notify("a sweep is already running", severity="warning")
            return
        run = self.results_pane.runs.get(run_id) or {}
        self._starting_model = run.get("model", "")
        self.start_sweep(None, resume_run_id=run_id)


def _short_path(path: Path | str | None) -> str:
    if path is None:
        return "–"
    text = str(path)
    home = str(Path.home())
    return "~" + text[len(home):] if text.startswith(home + os.sep) else text


def make_app(store: Any | None = None, settings: AppSettings | None = None, db: Path | None = None,
             system: SystemProbe | None = None, theme_dirs: list[Path] | None = None) -> QBenchApp:
    """Build the app. The CLI passes ``db`` (opened in a worker after the first paint);
    tests pass an open ``store``, their own ``settings`` and, for snapshots, a fixed ``system``."""
    return QBenchApp(store=store, db_path=db, settings=settings, system=system, theme_dirs=theme_dirs)


def run_app(db: Path | None = None) -> int:
    """Entry point of ``qbench`` / ``qbench tui``; returns the exit code."""
    try:
        from engines.paths import settings_path

        settings = AppSettings.load(settings_path())
    except (OSError, ValueError):
        settings = AppSettings()
    app = make_app(settings=settings, db=db)

    def hang_up(signum: int, frame: Any) -> None:
        # The SSH session dropped: stop the sweep (finished results are stored) and leave.
        app.shutdown_sweep(timeout=0)
        app.call_later(app.exit, 130)

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, hang_up)
    try:
        code = app.run()
    finally:
        app.shutdown_sweep()
    return code if isinstance(code, int) else 0
