"""The main screen's side of MLflow: sending the queue after each sweep and at start-up, the
status bar's queue line, registering the result under the cursor, the registry, the URI setting.

Every MLflow call is a child process run from a thread worker (the app never imports MLflow);
each answer comes back as a message (``TrackingSynced``, ``ModelRegistered``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qbench_tui import messages
from qbench_tui.commands import PaletteCommand
from qbench_tui.controllers.tracking import TrackingController, queue_text

if TYPE_CHECKING:
    from qbench_tui.widgets.results import ResultsPane


class TrackingReactions:
    """Mixed into :class:`~qbench_tui.screens.main.MainScreen`."""

    tracking: TrackingController
    tracking_queue: list[dict[str, Any]]
    store: Any | None
    _tracking_busy: bool = False
    if TYPE_CHECKING:
        results_pane: ResultsPane

        def notify(self, message: str, **kwargs: Any) -> None: ...
        def run_worker(self, work: Any, **kwargs: Any) -> Any: ...
        def post_message(self, message: Any) -> bool: ...
        def refresh_topbar(self) -> None: ...
        @property
        def app(self) -> Any: ...

    # --- the queue ---------------------------------------------------------------------------------

    def tracking_line(self) -> str | None:
        return queue_text(getattr(self, "tracking_queue", []))

    def sync_tracking(self) -> None:
        """Send what is queued for MLflow, in the background (after a sweep, at start-up)."""
        if self.store is None or self._tracking_busy:
            return
        self._tracking_busy = True
        self.run_worker(self._sync_job, name="tracking", group="tracking", thread=True, exit_on_error=False)

    def _sync_job(self) -> None:
        try:
            queue = self.tracking.queue(self.store)
            if not queue:
                self.post_message(messages.TrackingSynced([]))
                return
            self.post_message(messages.TrackingSynced(queue))  # shown while the sender runs
            summary = self.tracking.drain(self.store)
            errors = summary.get("errors") or {}
            error = summary.get("error") or next(iter(errors.values()), None)
            self.post_message(messages.TrackingSynced(self.tracking.queue(self.store), summary.get("sent", 0), error))
        finally:
            self._tracking_busy = False

    def on_tracking_synced(self, message: messages.TrackingSynced) -> None:
        self.tracking_queue = message.queue
        self.refresh_topbar()
        if message.sent:
            self.notify(f"{message.sent} result(s) logged to MLflow", timeout=3)
        if message.error and message.queue:
            self.notify(f"{queue_text(message.queue)}: {message.error}", title="MLflow", severity="warning",
                        timeout=8)

    # --- register, registry, the URI ----------------------------------------------------------------

    def action_register_result(self) -> None:
        from engines.tracking.fields import model_name
        from qbench_tui.screens.tracking import RegisterScreen

        result = self.results_pane.cursor_result()
        if result is None or result.get("status") != "ok" or result.get("id") is None:
            self.notify("move the cursor to a measured (ok) result first", severity="warning", timeout=4)
            return

        def chosen(answer: tuple[str, str] | None) -> None:
            if answer is not None:
                self.notify(f"registering result {result['id']} in MLflow…", timeout=3)
                self.run_worker(lambda: self._register_job(result["id"], *answer), name="register",
                                group="tracking-register", thread=True, exit_on_error=False)

        self.app.push_screen(RegisterScreen(result, model_name(result["model"])), chosen)

    def _register_job(self, result_id: int, name: str, alias: str) -> None:
        answer = self.tracking.register(self.store, result_id, name or None, alias or None)
        error = answer.get("error")
        self.post_message(messages.ModelRegistered(result_id, None if error else answer, error))

    def on_model_registered(self, message: messages.ModelRegistered) -> None:
        if message.error or message.version is None:
            self.notify(message.error or "no answer", title="register failed", severity="error", timeout=10)
            return
        v = message.version
        self.registered_versions = [*getattr(self, "registered_versions", []), v]  # this session's, newest last
        alias = f" @{v['alias']}" if v.get("alias") else ""
        self.notify(f"{v['name']} version {v['version']}{alias} (result {message.result_id})",
                    title="registered in MLflow", timeout=6)

    def action_registry(self) -> None:
        from qbench_tui.screens.tracking import RegistryScreen

        self.app.push_screen(RegistryScreen(self.tracking))

    def action_tracking_uri(self, error: str | None = None) -> None:
        from qbench_tui.screens.tracking import TrackingUriScreen

        def chosen(value: str | None) -> None:
            if value is None:
                return
            try:
                uri = self.tracking.set_uri(value)
            except ValueError as exc:
                self.action_tracking_uri(str(exc))
                return
            self.notify(f"MLflow tracking: {uri or 'off'}", timeout=4)

        settings = self.tracking.settings
        self.app.push_screen(TrackingUriScreen(settings.tracking_uri, self.tracking.uri, error), chosen)

    def tracking_commands(self) -> list[PaletteCommand]:
        queued = bool(self.tracking_line())
        return [
            PaletteCommand("MLflow registry", "Registered model versions with their figures; compare two",
                           self.action_registry, True),
            PaletteCommand("Register result in MLflow…", "The result under the cursor, as a model version with its "
                           "quantization metadata", self.action_register_result, True),
            PaletteCommand("MLflow tracking URI…", f"Where sweeps are logged (now: {self.tracking.uri or 'off'})",
                           self.action_tracking_uri, False),
            PaletteCommand("Send queued results to MLflow", self.tracking_line() or "nothing is queued",
                           self.sync_tracking, queued),
        ]
