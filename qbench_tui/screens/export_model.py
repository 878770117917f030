"""Export the selected variant as a model file (ONNX, TFLite, Core ML, MLX), validated, with templates.

The export runs ``qbench export … --json`` as a child process (the app never imports torch or a
converter); a thread worker waits on its pipes, shows its progress lines as they come and ends
with the validation's status, or the child's one-line error. Escape while it runs stops it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, RadioButton, RadioSet, Static

FORMATS = (("onnx", "ONNX  (ONNX Runtime; FastAPI + Triton templates)"),
           ("tflite", "TFLite  (LiteRT; Python + Kotlin templates)"),
           ("coreml", "Core ML  (.mlpackage; Swift + Python; predicts on macOS only)"),
           ("mlx", "MLX  (safetensors + model.json; Python template)"),
           ("gguf", "GGUF  (llama.cpp; causal LMs: F16, Q8_0, Q4)"))


def default_out(result: dict[str, Any], fmt: str) -> Path:
    from qbench_tui.screens.export import export_folder

    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", result.get("label") or result.get("method") or "variant")
    return export_folder() / f"{result.get('model', 'model')}-{label}-{result.get('id')}-{fmt}"


def export_command(result_id: int, fmt: str, out: Path, db: Path | None) -> list[str]:
    """The child's command line: this interpreter running the CLI of this very checkout."""
    args = [sys.executable, "-m", "qbench_tui"]
    if db is not None:
        args += ["--db", str(db)]
    return args + ["export", str(result_id), "--format", fmt, "--out", str(out), "--json"]


class ExportModelScreen(ModalScreen[None]):
    """Choose a format and a folder; the export's progress and outcome show in the dialog."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close / stop")]
    DEFAULT_CSS = """
    ExportModelScreen #export-log { height: auto; max-height: 12; color: $text-muted; }
    ExportModelScreen #export-status { height: auto; margin-top: 1; }
    ExportModelScreen RadioSet { width: 100%; }
    """

    class Progress(Message):
        def __init__(self, line: str) -> None:
            super().__init__()
            self.line = line

    class Finished(Message):
        def __init__(self, report: dict[str, Any] | None, error: str | None) -> None:
            super().__init__()
            self.report, self.error = report, error

    def __init__(self, result: dict[str, Any], db_path: Path | None, **kwargs: Any):
        super().__init__(**kwargs)
        self.result, self.db_path = result, db_path
        self.fmt = "onnx"
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []

    def compose(self) -> ComposeResult:
        r = self.result
        with Vertical(classes="dialog", id="export-model-dialog") as dialog:
            dialog.border_title = f"export result {r.get('id')} as a model"
            dialog.border_subtitle = "enter exports · escape closes (stops a running export)"
            yield Static(f"{r.get('model')} · {r.get('label') or r.get('method')} · measured on {r.get('runtime')} / "
                         f"{r.get('device')}. The file is rebuilt for the format, loaded by its own runtime and "
                         "re-measured on the held-out data; deploy/ gets runnable templates.", classes="hint")
            with RadioSet(id="export-format"):
                for i, (name, title) in enumerate(FORMATS):
                    yield RadioButton(title, value=i == 0, name=name)
            yield Input(str(default_out(r, self.fmt)), id="export-out")
            with Horizontal(classes="buttons"):
                yield Button("Export", id="export-run", variant="primary", compact=True)
            yield Static("", id="export-log")
            yield Static("", id="export-status")

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        old = str(default_out(self.result, self.fmt))
        self.fmt = event.pressed.name or "onnx"
        out = self.query_one("#export-out", Input)
        if out.value == old:  # still the default: follow the format
            out.value = str(default_out(self.result, self.fmt))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export-run":
            self.start()

    def start(self) -> None:
        if self.proc is not None:
            return
        raw = self.query_one("#export-out", Input).value.strip()
        if not raw:
            self.query_one("#export-status", Static).update("give an output folder")
            return
        self.lines = []
        self.query_one("#export-log", Static).update("")
        self.query_one("#export-status", Static).update(f"exporting to {self.fmt}…")
        self.query_one("#export-run", Button).disabled = True
        self._run(export_command(int(self.result["id"]), self.fmt, Path(raw).expanduser(), self.db_path))

    @work(thread=True, group="export-model", exit_on_error=False)
    def _run(self, command: list[str]) -> None:
        import qbench_tui

        root = str(Path(qbench_tui.__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        try:
            self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                         env=env, start_new_session=True)
        except OSError as exc:
            self.post_message(self.Finished(None, f"cannot start the export: {exc}"))
            return
        stderr_tail: list[str] = []
        assert self.proc.stderr is not None and self.proc.stdout is not None
        for line in self.proc.stderr:  # progress lines, then warnings the libraries print
            line = line.rstrip()
            if line.startswith("  ") or line.startswith("qbench: error:"):
                self.post_message(self.Progress(line.strip()))
            if line.strip():
                stderr_tail = (stderr_tail + [line.strip()])[-3:]
        out = self.proc.stdout.read()
        code = self.proc.wait()
        self.proc = None
        if code in (0, 1):
            try:
                self.post_message(self.Finished(json.loads(out), None))
                return
            except json.JSONDecodeError:
                pass
        if code < 0:
            self.post_message(self.Finished(None, "export stopped"))
            return
        error = next((t for t in reversed(stderr_tail) if t.startswith("qbench: error:")), None)
        self.post_message(self.Finished(None, (error or (stderr_tail[-1] if stderr_tail else f"exit code {code}"))
                                        .removeprefix("qbench: error: ")))

    def on_export_model_screen_progress(self, message: Progress) -> None:
        self.lines = (self.lines + [message.line])[-8:]
        self.query_one("#export-log", Static).update("\n".join(self.lines))

    def on_export_model_screen_finished(self, message: Finished) -> None:
        self.query_one("#export-run", Button).disabled = False
        status = self.query_one("#export-status", Static)
        if message.error:
            status.update(f"[b]export failed[/b]: {message.error}")
            self.notify(message.error, title="export failed", severity="error", timeout=10)
            return
        report = message.report or {}
        v = report.get("validation") or {}
        where = Path(report.get("out_dir", "")) / report.get("file", "")
        status.update(f"[b]{where}[/b] ({report.get('size_mb', 0):.3f} MB)\n{v.get('status', '')}\n"
                      f"templates: {', '.join(report.get('deploy') or {})} in {Path(report.get('out_dir', '')) / 'deploy'}")
        self.notify(f"{where}: {v.get('status', '')}", title="model exported", timeout=8)

    def action_close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
            self.query_one("#export-status", Static).update("stopping…")
            return
        self.dismiss(None)
