"""Ask for a model path (ONNX, TorchScript/ExportedProgram, a Hugging Face folder)."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, Static

from qbench_tui.widgets.checks import TextCheckbox


class OpenModelScreen(ModalScreen[tuple[str, dict] | None]):
    """Dismisses with (path, model options) — the app resolves it in a worker — or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, error: str | None = None, value: str = "", allow_pickle: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.error, self.value, self.allow_pickle = error, value, allow_pickle

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -small", id="open-dialog") as dialog:
            dialog.border_title = "open a model by path"
            dialog.border_subtitle = "enter opens · escape cancels"
            yield Static("An ONNX file, a TorchScript or ExportedProgram file, or a Hugging Face model folder. "
                         "~ is expanded.", classes="hint")
            yield Input(self.value, placeholder="/path/to/model.onnx", id="model-path")
            yield TextCheckbox("allow pickled checkpoints (they run code stored in the file: trusted files only)",
                               self.allow_pickle, id="allow-pickle", compact=True)
            yield Static(Content.from_markup("[$text-error]$e[/]", e=self.error) if self.error else "",
                         id="open-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        path = event.value.strip()
        if path:
            options = {"allow_pickle": True} if self.query_one("#allow-pickle", Checkbox).value else {}
            self.dismiss((path, options))
