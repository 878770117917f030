"""The main screen's side of the sweep: the keys that start and cancel it, what the panes show
as the worker reports, and quitting while a sweep runs.

Each ending handler first hands its message to the controller's state machine
(:meth:`SweepController.observe`); a stale message (a second ending) changes nothing on screen.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from engines.core.schema import display_label
from qbench_tui import messages
from qbench_tui.controllers.sweep import SetupError, SweepController, SweepSetup, SweepStateError
from qbench_tui.settings import STARTER_SETUP, AppSettings
from qbench_tui.widgets.sweep_setup import SweepSetupPane

RESULTS_FLUSH_S = 0.3  # results announced within this are shown in one refresh

if TYPE_CHECKING:
    from qbench_tui.widgets.meters import DeviceMeters
    from qbench_tui.widgets.model_browser import ModelBrowser
    from qbench_tui.widgets.results import ResultsPane


class SweepReactions:
    """Mixed into :class:`~qbench_tui.screens.main.MainScreen`, which provides the panes."""

    sweep: SweepController
    settings: AppSettings
    _pending_results: list[dict[str, Any]]  # results announced, not yet shown (flush_results)
    _results_timer: Any | None
    store: Any | None
    store_error: str | None
    model_options: dict[str, dict[str, Any]]
    if TYPE_CHECKING:  # what MainScreen (a Screen) provides
        meters: DeviceMeters
        results_pane: ResultsPane
        browser: ModelBrowser
        tabbed: bool
        sweeping: bool

        def notify(self, message: str, **kwargs: Any) -> None: ...
        def query_one(self, selector: Any, expect_type: Any = None) -> Any: ...
        def run_worker(self, work: Any, **kwargs: Any) -> Any: ...
        def _focus_field(self, field: str) -> None: ...
        def refresh_topbar(self) -> None: ...
        def sync_tracking(self) -> None: ...
        def refresh_bindings(self) -> None: ...
        def show_model_history(self, background: bool = False) -> None: ...
        def action_pane(self, pane: str) -> None: ...
        @property
        def app(self) -> Any: ...

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

    def resume_run(self, run_id: str) -> None:
        run = self.results_pane.runs.get(run_id) or {}
        self.start_sweep(None, resume_run_id=run_id, model=run.get("model", ""))

    def start_sweep(self, setup: SweepSetup | None, resume_run_id: str | None = None, model: str = "") -> None:
        """Start a sweep (or resume one) in a thread worker."""
        if self.store is None:
            self.notify(self.store_error or "the store is still opening", title="cannot run", severity="error")
            return
        try:
            self.sweep.start(setup, resume_run_id)
        except SweepStateError as exc:
            self.notify(str(exc), title="cannot run", severity="warning")
            return
        self._choose_device = setup.choose_device if setup is not None else False
        if setup is not None:
            self.settings.last_setup = setup.to_dict()
            self.settings.save()
        labels = ([" · ".join(v) for v in itertools.product(setup.methods, setup.runtimes, setup.devices)]
                  if setup is not None else [])
        self.meters.sweep_started("", setup.model if setup else model, setup.measurement_count if setup else 0, 0,
                                  labels, list(setup.batch_sizes) if setup else [])
        self.results_pane.set_running(True)
        self.refresh_topbar()
        self.refresh_bindings()
        if self.tabbed:
            self.action_pane("meters")

    def _spawn_sweep(self, job: Any) -> None:
        self.run_worker(job, name="sweep", group="sweep", thread=True, exit_on_error=False)

    def action_cancel_sweep(self) -> None:
        if not self.sweep.cancel():
            self.notify("no sweep is running", timeout=2)
            return
        self.meters.message = "cancelling: stopping the benchmark process…"
        self.meters.refresh_job()
        self.notify("cancelling the sweep; finished results stay stored", severity="warning", timeout=4)


    # --- what the worker reports ---------------------------------------------------------------

    def on_sweep_waiting(self, message: messages.SweepWaiting) -> None:
        if message.holder is None:
            self.notify("the machine is free: measuring", timeout=3)
            return
        from engines.bench.lock import describe_holder

        self.notify(f"another sweep is measuring on this machine: {describe_holder(message.holder)}; "
                    "this one starts when it ends", title="waiting", severity="warning", timeout=15)

    def on_sweep_started(self, message: messages.SweepStarted) -> None:
        if not self.sweep.observe(message):
            return
        self.results_pane.set_running(True)
        if message.run:
            self.results_pane.add_run(message.run)
        self.meters.sweep_started(message.run_id, message.model, message.total, message.done)
        self.refresh_topbar()
        self.refresh_bindings()

    def on_variant_started(self, message: messages.VariantStarted) -> None:
        self.meters.variant_started(message.label, message.runtime, message.device, message.index,
                                    message.count, message.batch_sizes)

    def on_phase_changed(self, message: messages.PhaseChanged) -> None:
        self.meters.phase_changed(message.phase, message.batch_size, message.detail)

    def on_latencies_measured(self, message: messages.LatenciesMeasured) -> None:
        self.meters.latencies_measured(message.ms)

    def on_result_recorded(self, message: messages.ResultRecorded) -> None:
        # The count moves at once (text only); the table, the model's history and the failure
        # toasts are refreshed once per RESULTS_FLUSH_S for however many results came in it: a
        # burst of results (unsupported variants end at once) would otherwise re-read the store
        # and lay out the screen once per result.
        self.meters.result_recorded()
        self._pending_results.append(message.result)
        if self._results_timer is None:
            self._results_timer = self.set_timer(RESULTS_FLUSH_S, self.flush_results, name="results-flush")

    def flush_results(self) -> None:
        """Show the results that arrived since the last flush (also called when a sweep ends)."""
        if self._results_timer is not None:
            self._results_timer.stop()
            self._results_timer = None
        batch, self._pending_results = self._pending_results, []
        if not batch:
            return
        had_results = bool(self.results_pane.total)
        self.results_pane.add_results(batch)
        failed = [r for r in batch if r["status"] == "failed"]
        if failed:  # one toast for the burst, a line per failed variant
            self.notify("\n".join(f"{display_label(r)} · {r['runtime']} · {r['device']}: {r.get('error')}"
                                  for r in failed),
                        title="variant failed (stored)" if len(failed) == 1 else f"{len(failed)} variants failed (stored)",
                        severity="error", timeout=8)
        self.show_model_history(background=True)
        if not had_results and self.results_pane.total:
            self.refresh_bindings()  # the starter-sweep key goes once there is a result

    def _sweep_counts(self, run_id: str | None) -> str:
        mine = self.results_pane.run_results(run_id)
        counts = {s: sum(1 for r in mine if r["status"] == s) for s in ("ok", "failed", "unsupported")}
        return f"{counts['ok']} ok · {counts['failed']} failed · {counts['unsupported']} unsupported"

    def on_sweep_finished(self, message: messages.SweepFinished) -> None:
        if not self.sweep.observe(message):
            return
        self.flush_results()  # every result is in the table before the counts are read
        counts = self._sweep_counts(message.run_id)
        self.meters.sweep_ended("finished", message.elapsed_s, counts)
        self._set_run_status(message.run_id, message.status)
        self.notify(counts, title=f"sweep finished · run {message.run_id}", timeout=6)
        if getattr(self, "_choose_device", False):  # devices "auto" or several: which one suits the model
            self.show_device_choice(message.run_id)
        self._sweep_ended()

    def show_device_choice(self, run_id: str, objective: str = "latency") -> dict[str, Any] | None:
        """Rank the run's devices (engines.analysis.device_choice, as ``qbench run --devices auto``)
        and show the best with its evidence under the results."""
        from engines.analysis.device_choice import choose_device

        results = self.results_pane.run_results(run_id)
        if not results:
            return None
        choice = choose_device(results, objective)
        self.results_pane.show_device_choice(results[0]["model"], choice)
        return choice

    def on_sweep_cancelled(self, message: messages.SweepCancelled) -> None:
        if not self.sweep.observe(message):
            return
        self.flush_results()  # every result is in the table before the counts are read
        stored = self._sweep_counts(message.run_id)
        hint = f"resume from ctrl+p → Resume run {message.run_id}" if message.run_id else ""
        self.meters.sweep_ended("cancelled", message.elapsed_s, f"stored: {stored}. {hint}".strip())
        if message.run_id:
            self._set_run_status(message.run_id, "interrupted")
        self.notify(f"stored: {stored}", title="sweep cancelled", severity="warning", timeout=6)
        self._sweep_ended()

    def on_sweep_failed(self, message: messages.SweepFailed) -> None:
        if not self.sweep.observe(message):
            return
        self.flush_results()  # every result is in the table before the counts are read
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
        self.results_pane.set_running(False)
        self.sync_tracking()  # the sweep's logs go to MLflow now, from a child process
        self.refresh_topbar()
        self.refresh_bindings()
        self.show_model_history(background=True)
        if self.tabbed and self.results_pane.total:
            self.action_pane("results")

    # --- quitting ------------------------------------------------------------------------------

    def action_quit(self) -> None:
        """Quit at once when idle; while a sweep runs, ask first (quitting cancels it)."""
        if not self.sweeping:
            self.app.exit(0)
            return
        from qbench_tui.screens.confirm import ConfirmScreen

        question = (f"A sweep is running ({self.meters.done}/{self.meters.total} measurements done).\n"
                    "Quitting cancels it; the finished results are already stored and the run can be "
                    "resumed later (ctrl+p → Resume run).")

        def answered(yes: bool | None) -> None:
            if yes:
                self.sweep.shutdown()
                self.app.exit(0)

        self.app.push_screen(ConfirmScreen("quit qbench?", question, yes="Quit", no="Keep running"), answered)
