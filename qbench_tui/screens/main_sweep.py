"""The sweep across the main screen's panes: the keys that start, cancel and quit it, and the
worker's messages, each handed to the panes it concerns.

A sweep reads two panes (the model chosen in the browser, the set-up) and is shown by the two
others (the meters its progress, the results pane its results as they are stored), so it belongs
to no one pane: :class:`SweepCoordinator` is owned by the screen (``screen.coordinator``), which
routes the worker's messages to it (``MainScreen.route_sweep_message``). Each ending first hands its
message to the controller's state machine (:meth:`SweepController.observe`); a stale message (a
second ending) changes nothing on screen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qbench_tui import messages
from qbench_tui.controllers.sweep import SetupError, SweepSetup, SweepStateError
from qbench_tui.settings import STARTER_SETUP

if TYPE_CHECKING:
    from textual.message import Message


class SweepCoordinator:
    """What a sweep does to each pane of ``screen``; owns no widget."""

    def __init__(self, screen: Any):  # the MainScreen (not imported: it imports this module)
        self.screen = screen
        self.choose_device = False  # the running sweep ranks its devices when it ends (devices auto)

    # --- the keys ------------------------------------------------------------------------------

    def run(self) -> None:
        """Run the set-up's sweep on the model chosen in the browser."""
        screen = self.screen
        if screen.sweeping:
            screen.notify("a sweep is already running; c cancels it", severity="warning")
            return
        spec = screen.browser.selected
        model = (spec.path or spec.name) if spec is not None else None
        try:
            options = screen.browser.model_options.get(spec.name, {}) if spec is not None else {}
            setup = screen.setup_pane.current_setup(model, options)
        except SetupError as exc:
            screen.notify(str(exc), title="cannot run yet", severity="error")
            if exc.field:
                screen.focus_field(exc.field)
            return
        self.start(setup)

    def starter(self) -> None:
        screen = self.screen
        if screen.sweeping:
            screen.notify("a sweep is already running", severity="warning")
            return
        if not screen.browser.select(STARTER_SETUP["model"]):
            screen.notify(f"the built-in model {STARTER_SETUP['model']} is not available", severity="error")
            return
        screen.setup_pane.apply_setup(STARTER_SETUP)
        self.run()

    def spawn(self, job: Any) -> None:
        """Run the controller's job in a thread worker of the screen (whose handler turns an
        unexpected error into ``SweepFailed``)."""
        self.screen.run_worker(job, name="sweep", group="sweep", thread=True, exit_on_error=False)

    def resume(self, run_id: str) -> None:
        run = self.screen.results_pane.runs.get(run_id) or {}
        self.start(None, resume_run_id=run_id, model=run.get("model", ""))

    def start(self, setup: SweepSetup | None, resume_run_id: str | None = None, model: str = "") -> None:
        """Start a sweep (or resume one) in a thread worker."""
        screen = self.screen
        if screen.store is None:
            screen.notify(screen.store_error or "the store is still opening", title="cannot run", severity="error")
            return
        try:
            screen.sweep.start(setup, resume_run_id)
        except SweepStateError as exc:
            screen.notify(str(exc), title="cannot run", severity="warning")
            return
        self.choose_device = setup.choose_device if setup is not None else False
        if setup is not None:
            screen.settings.last_setup = setup.to_dict()
            screen.settings.save()
        screen.meters.sweep_planned(setup, model)
        screen.results_pane.set_running(True)
        screen.refresh_topbar()
        screen.refresh_bindings()
        if screen.tabbed:
            screen.action_pane("meters")

    def cancel(self) -> None:
        screen = self.screen
        if not screen.sweep.cancel():
            screen.notify("no sweep is running", timeout=2)
            return
        screen.meters.cancelling()
        screen.notify("cancelling the sweep; finished results stay stored", severity="warning", timeout=4)

    def quit(self) -> None:
        """Quit at once when idle; while a sweep runs, ask first (quitting cancels it)."""
        screen = self.screen
        if not screen.sweeping:
            screen.app.exit(0)
            return
        from qbench_tui.screens.confirm import ConfirmScreen

        question = (f"A sweep is running ({screen.meters.done}/{screen.meters.total} measurements done).\n"
                    "Quitting cancels it; the finished results are already stored and the run can be "
                    "resumed later (ctrl+p → Resume run).")

        def answered(yes: bool | None) -> None:
            if yes:
                screen.sweep.shutdown()
                screen.app.exit(0)

        screen.app.push_screen(ConfirmScreen("quit qbench?", question, yes="Quit", no="Keep running"), answered)

    # --- what the worker reports ---------------------------------------------------------------

    def route(self, message: Message) -> None:
        """Hand one of the worker's messages to the panes it concerns."""
        getattr(self, message.handler_name)(message)

    def on_sweep_waiting(self, message: messages.SweepWaiting) -> None:
        if message.holder is None:
            self.screen.notify("the machine is free: measuring", timeout=3)
            return
        from engines.bench.lock import describe_holder

        self.screen.notify(f"another sweep is measuring on this machine: {describe_holder(message.holder)}; "
                           "this one starts when it ends", title="waiting", severity="warning", timeout=15)

    def on_sweep_started(self, message: messages.SweepStarted) -> None:
        screen = self.screen
        if not screen.sweep.observe(message):
            return
        screen.results_pane.set_running(True)
        if message.run:
            screen.results_pane.add_run(message.run)
        screen.meters.sweep_started(message.run_id, message.model, message.total, message.done)
        screen.refresh_topbar()
        screen.refresh_bindings()

    # The variant, its phases and its latencies concern the meters only.
    def on_variant_started(self, message: messages.VariantStarted) -> None:
        self.screen.meters.variant_started(message.label, message.runtime, message.device, message.index,
                                           message.count, message.batch_sizes)

    def on_phase_changed(self, message: messages.PhaseChanged) -> None:
        self.screen.meters.phase_changed(message.phase, message.batch_size, message.detail)

    def on_latencies_measured(self, message: messages.LatenciesMeasured) -> None:
        self.screen.meters.latencies_measured(message.ms)

    def on_result_recorded(self, message: messages.ResultRecorded) -> None:
        # The count moves at once (text only); the table follows with the others of its burst.
        self.screen.meters.result_recorded()
        self.screen.results_pane.feed.result_recorded(message.result)

    def on_sweep_finished(self, message: messages.SweepFinished) -> None:
        screen = self.screen
        if not screen.sweep.observe(message):
            return
        feed = screen.results_pane.feed
        feed.flush()  # every result is in the table before the counts are read
        counts = feed.counts(message.run_id)
        screen.meters.sweep_ended("finished", message.elapsed_s, counts)
        feed.set_run_status(message.run_id, message.status)
        screen.notify(counts, title=f"sweep finished · run {message.run_id}", timeout=6)
        if self.choose_device:  # devices "auto" or several: which one suits the model
            feed.rank_devices(message.run_id)
        self._ended()

    def on_sweep_cancelled(self, message: messages.SweepCancelled) -> None:
        screen = self.screen
        if not screen.sweep.observe(message):
            return
        feed = screen.results_pane.feed
        feed.flush()  # every result is in the table before the counts are read
        stored = feed.counts(message.run_id)
        hint = f"resume from ctrl+p → Resume run {message.run_id}" if message.run_id else ""
        screen.meters.sweep_ended("cancelled", message.elapsed_s, f"stored: {stored}. {hint}".strip())
        if message.run_id:
            feed.set_run_status(message.run_id, "interrupted")
        screen.notify(f"stored: {stored}", title="sweep cancelled", severity="warning", timeout=6)
        self._ended()

    def on_sweep_failed(self, message: messages.SweepFailed) -> None:
        screen = self.screen
        if not screen.sweep.observe(message):
            return
        feed = screen.results_pane.feed
        feed.flush()  # every result is in the table before the counts are read
        screen.meters.run_id = message.run_id or screen.meters.run_id
        screen.meters.sweep_ended("failed", None, message.error)
        if message.run_id:
            feed.set_run_status(message.run_id, "failed")
        screen.notify(message.error, title="sweep failed", severity="error", timeout=10)
        self._ended()

    def _ended(self) -> None:
        screen = self.screen
        screen.results_pane.set_running(False)
        screen.results_pane.tracking.sync(screen.store)  # the sweep's logs go to MLflow now, from a child process
        screen.refresh_topbar()
        screen.refresh_bindings()
        screen.browser.show_history(background=True)
        if screen.tabbed and screen.results_pane.total:
            screen.action_pane("results")

