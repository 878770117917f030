"""Pull a model from the Hugging Face Hub into the HF cache, from the model browser (key ``p``).

The download runs in a child process (``python -m engines.models.pull ORG/NAME``, which prints
one JSON event per line), waited on by a thread worker: the UI never imports huggingface_hub.
Offline, the child's one line (what is already cached) is shown in the dialog.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, ProgressBar, Static


def pull_command(repo_id: str) -> list[str]:
    return [sys.executable, "-m", "engines.models.pull", repo_id]


class PullModelScreen(ModalScreen[str | None]):
    """Dismisses with the pulled ``ORG/NAME`` (now in the cache), or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, value: str = "", **kwargs: Any):
        super().__init__(**kwargs)
        self.value = value
        self._process: subprocess.Popen | None = None
        self._busy = False  # a pull is under way (until its done / error event)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -small", id="pull-dialog") as dialog:
            dialog.border_title = "pull a model from the Hugging Face Hub"
            dialog.border_subtitle = "enter downloads · escape cancels"
            yield Static("ORG/NAME of a Hub model (e.g. google/vit-base-patch16-224). It goes to your HF cache "
                         "and shows under Hugging Face cache.", classes="hint")
            yield Input(self.value, placeholder="org/name", id="pull-repo")
            yield ProgressBar(total=None, show_eta=False, id="pull-progress")
            yield Static("", id="pull-status")

    def on_mount(self) -> None:
        self.query_one("#pull-progress", ProgressBar).display = False

    def on_input_submitted(self, event: Input.Submitted) -> None:
        repo_id = event.value.strip()
        if repo_id and not self._busy:
            self._busy = True
            self.query_one("#pull-progress", ProgressBar).display = True
            self._status(f"pulling {repo_id}…")
            self._pull(repo_id)

    def _status(self, text: str, error: bool = False) -> None:
        self.query_one("#pull-status", Static).update(
            Content.from_markup("[$text-error]$t[/]" if error else "[$text-muted]$t[/]", t=text))

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "progress":
            bar = self.query_one("#pull-progress", ProgressBar)
            bar.update(total=event.get("total") or None, progress=event.get("done") or 0)
            self._status(f"{event.get('what') or 'downloading'} {event.get('done')}/{event.get('total') or '?'}")
        elif kind == "done":
            self._busy = False
            self.dismiss(event["repo_id"])
        elif kind == "error":
            self._busy = False
            self.query_one("#pull-progress", ProgressBar).display = False
            self._status(event.get("message") or "the pull failed", error=True)

    @work(thread=True, group="pull-model", exit_on_error=False)
    def _pull(self, repo_id: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._process = process = subprocess.Popen(pull_command(repo_id), stdout=subprocess.PIPE,
                                                   stderr=subprocess.DEVNULL, text=True, env=env)
        ended = False
        assert process.stdout is not None
        for line in process.stdout:  # blocks on the pipe: no busy wait
            try:
                event = json.loads(line)
            except ValueError:
                continue
            ended = ended or event.get("event") in ("done", "error")
            self.app.call_from_thread(self._event, event)
        code = process.wait()
        self._process = None
        if not ended:
            self.app.call_from_thread(self._event, {"event": "error",
                                                    "message": f"the pull ended without a result (exit {code})"})

    def action_cancel(self) -> None:
        if self._process is not None:
            self._process.terminate()
        self.dismiss(None)
