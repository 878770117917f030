"""Export the shown results to CSV or JSON: the dialog, and the writer the screen's worker calls."""

from __future__ import annotations

import json
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


def export_folder() -> Path:
    """Where exports go by default: ``$QBENCH_HOME/exports`` (the working folder if that fails)."""
    try:
        from engines.paths import qbench_home

        return qbench_home() / "exports"
    except OSError:
        return Path.cwd()


def write_results(path: Path, results: list[dict[str, Any]]) -> None:
    """Write ``results`` as JSON (a ``.json`` name) or CSV, with the schema's own writers."""
    from engines.core.schema import public_json, results_csv

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(public_json(results), indent=2) + "\n", encoding="utf-8")
    else:
        rows = [{**r, "run_id": r.get("run_id")} for r in results]
        path.write_text(results_csv(rows), encoding="utf-8")
