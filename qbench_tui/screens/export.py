"""Export the shown results to CSV or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static


class ExportScreen(ModalScreen[Path | None]):
    """Dismisses with the chosen path; the suffix (.csv or .json) picks the format."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, default_path: Path, count: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.default_path, self.count = default_path, count

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -small", id="export-dialog") as dialog:
            dialog.border_title = f"export {self.count} result(s)"
            dialog.border_subtitle = "enter exports · escape cancels"
            yield Static("The results the table shows (filters apply). A name ending in .json writes "
                         "JSON, anything else CSV.", classes="hint")
            yield Input(str(self.default_path), id="export-path")
            yield Static("", id="export-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Export", id="export", variant="primary", compact=True)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._finish(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self._finish(self.query_one("#export-path", Input).value)

    def _finish(self, raw: str) -> None:
        raw = raw.strip()
        if not raw:
            self.query_one("#export-error", Static).update("give a file name")
            return
        self.dismiss(Path(raw).expanduser())
