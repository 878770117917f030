"""The results pane's side of MLflow: the queue of results waiting to be sent (sent after each
sweep and at start-up), registering the result under the cursor, the registry, the URI setting.

Every MLflow call is a child process (:class:`~qbench_tui.controllers.tracking.TrackingController`)
run from a thread worker of the pane (the app never imports MLflow); each answer comes back to
the pane as a message (``TrackingSynced``, ``ModelRegistered``). ``TrackingSynced`` goes on to
the screen, whose top bar shows the queue (:meth:`ResultsTracking.line`).
"""

from __future__ import annotations

from typing import Any

from qbench_tui import messages
from qbench_tui.commands import PaletteCommand
from qbench_tui.controllers.tracking import TrackingController, queue_text


class ResultsTracking:
    """Owned by the results pane (``pane.tracking``); its workers and messages are the pane's."""

    def __init__(self, pane: Any, controller: TrackingController | None):  # pane: the ResultsPane
        self.pane = pane
        self.controller = controller
        self.store: Any | None = None  # the store whose queue is sent (given by sync)
        self.queue: list[dict[str, Any]] = []  # what is still queued for MLflow, per URI
        self.busy = False  # a sync worker runs
        self.registered_versions: list[dict[str, Any]] = []  # this session's, newest last

    # --- the queue ---------------------------------------------------------------------------------

    def line(self) -> str | None:
        """The top bar's line: results waiting for MLflow (and why); None when nothing waits."""
        return queue_text(self.queue)

    def sync(self, store: Any | None = None) -> None:
        """Send what is queued for MLflow, in the background (after a sweep, at start-up)."""
        if store is not None:
            self.store = store
        if self.controller is None or self.store is None or self.busy:
            return
        self.busy = True
        self.pane.run_worker(self._sync_job, name="tracking", group="tracking", thread=True, exit_on_error=False)

    def _sync_job(self) -> None:
        assert self.controller is not None
        store, post = self.store, self.pane.post_message
        try:
            queue = self.controller.queue(store)
            if not queue:
                post(messages.TrackingSynced([]))
                return
            post(messages.TrackingSynced(queue))  # shown while the sender runs
            summary = self.controller.drain(store)
            errors = summary.get("errors") or {}
            error = summary.get("error") or next(iter(errors.values()), None)
            post(messages.TrackingSynced(self.controller.queue(store), summary.get("sent", 0), error))
        finally:
            self.busy = False

    def synced(self, message: messages.TrackingSynced) -> None:
        self.queue = message.queue
        if message.sent:
            self.pane.notify(f"{message.sent} result(s) logged to MLflow", timeout=3)
        if message.error and message.queue:
            self.pane.notify(f"{queue_text(message.queue)}: {message.error}", title="MLflow", severity="warning",
                             timeout=8)

    # --- register, registry, the URI ----------------------------------------------------------------

    def register_result(self) -> None:
        """Register the result under the cursor as an MLflow model version (asks for its name)."""
        from engines.tracking.fields import model_name
        from qbench_tui.screens.tracking import RegisterScreen

        result = self.pane.cursor_result()
        if result is None or result.get("status") != "ok" or result.get("id") is None:
            self.pane.notify("move the cursor to a measured (ok) result first", severity="warning", timeout=4)
            return

        def chosen(answer: tuple[str, str] | None) -> None:
            if answer is not None:
                self.pane.notify(f"registering result {result['id']} in MLflow…", timeout=3)
                self.pane.run_worker(lambda: self._register_job(result["id"], *answer), name="register",
                                     group="tracking-register", thread=True, exit_on_error=False)

        self.pane.app.push_screen(RegisterScreen(result, model_name(result["model"])), chosen)

    def _register_job(self, result_id: int, name: str, alias: str) -> None:
        assert self.controller is not None
        answer = self.controller.register(self.pane.store, result_id, name or None, alias or None)
        error = answer.get("error")
        self.pane.post_message(messages.ModelRegistered(result_id, None if error else answer, error))

    def registered(self, message: messages.ModelRegistered) -> None:
        if message.error or message.version is None:
            self.pane.notify(message.error or "no answer", title="register failed", severity="error", timeout=10)
            return
        v = message.version
        self.registered_versions.append(v)
        alias = f" @{v['alias']}" if v.get("alias") else ""
        self.pane.notify(f"{v['name']} version {v['version']}{alias} (result {message.result_id})",
                         title="registered in MLflow", timeout=6)

    def show_registry(self) -> None:
        from qbench_tui.screens.tracking import RegistryScreen

        self.pane.app.push_screen(RegistryScreen(self.controller))

    def choose_uri(self, error: str | None = None) -> None:
        """Ask for the MLflow tracking URI (again, with ``error``, when the answer is not one)."""
        from qbench_tui.screens.tracking import TrackingUriScreen

        assert self.controller is not None
        controller = self.controller

        def chosen(value: str | None) -> None:
            if value is None:
                return
            try:
                uri = controller.set_uri(value)
            except ValueError as exc:
                self.choose_uri(str(exc))
                return
            self.pane.notify(f"MLflow tracking: {uri or 'off'}", timeout=4)

        self.pane.app.push_screen(TrackingUriScreen(controller.settings.tracking_uri, controller.uri, error), chosen)

    def commands(self) -> list[PaletteCommand]:
        """The palette's MLflow entries."""
        if self.controller is None:
            return []
        line = self.line()
        return [
            PaletteCommand("MLflow registry", "Registered model versions with their figures; compare two",
                           self.show_registry, True),
            PaletteCommand("Register result in MLflow…", "The result under the cursor, as a model version with its "
                           "quantization metadata", self.register_result, True),
            PaletteCommand("MLflow tracking URI…", f"Where sweeps are logged (now: {self.controller.uri or 'off'})",
                           self.choose_uri, False),
            PaletteCommand("Send queued results to MLflow", line or "nothing is queued", self.sync, bool(line)),
        ]
