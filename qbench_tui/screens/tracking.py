"""MLflow from the app: the tracking URI, registering a result, the registry with its compare view.

Nothing here imports MLflow: the registry is read by a child process
(:class:`~qbench_tui.controllers.tracking.TrackingController`) in a thread worker.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static

from engines.core.schema import display_label


class TrackingUriScreen(ModalScreen[str | None]):
    """Dismisses with the new setting ('' for the default, 'off', a URI) or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, value: str, in_force: str | None, error: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.value, self.in_force, self.error = value, in_force, error

    def compose(self) -> ComposeResult:
        env = os.environ.get("MLFLOW_TRACKING_URI")
        with Vertical(classes="dialog -small", id="tracking-uri-dialog") as dialog:
            dialog.border_title = "MLflow tracking URI"
            dialog.border_subtitle = "enter saves · escape cancels"
            yield Static("Every sweep is logged here after it ends. Empty: the embedded store in qbench's state "
                         "folder; 'off': no tracking; or a server, http://host:5000.", classes="hint")
            yield Input(self.value, placeholder="(default) sqlite:///…/mlflow.db", id="tracking-uri")
            note = f"in force: {self.in_force or 'off'}"
            if env:
                note += f" — $MLFLOW_TRACKING_URI={env} takes precedence over this setting"
            yield Static(note, classes="hint", id="tracking-in-force")
            yield Static(Content.from_markup("[$text-error]$e[/]", e=self.error) if self.error else "",
                         id="tracking-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())


class RegisterScreen(ModalScreen[tuple[str, str] | None]):
    """Asks for the registered model's name and an alias; dismisses with (name, alias) or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, result: dict[str, Any], default_name: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.result, self.default_name = result, default_name

    def compose(self) -> ComposeResult:
        r = self.result
        with Vertical(classes="dialog -small", id="register-dialog") as dialog:
            dialog.border_title = "register in MLflow"
            dialog.border_subtitle = "enter registers · escape cancels"
            yield Static(f"result {r.get('id')}: {r['model']} · {display_label(r)} · {r['runtime']} · {r['device']} "
                         f"· batch {r['batch_size']}", classes="hint")
            yield Input(placeholder=f"model name (default {self.default_name})", id="register-name")
            yield Input(placeholder="alias, e.g. best-cpu (optional)", id="register-alias")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "register-name":
            self.query_one("#register-alias", Input).focus()
            return
        name = self.query_one("#register-name", Input).value.strip()
        self.dismiss((name, self.query_one("#register-alias", Input).value.strip()))


class RegistryScreen(ModalScreen[None]):
    """The registered versions of every model (across experiments), with their figures; two marked
    versions open the compare view."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss", "Close"),
        Binding("space", "mark", "Mark"),
        Binding("x", "compare", "Compare marked"),
        Binding("ctrl+r", "reload", "Reload"),
    ]
    COLUMNS = ("model", "ver", "aliases", "variant", "bits", "runtime", "device", "p50 ms", "speedup", "accuracy")

    def __init__(self, tracking: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.tracking = tracking
        self.versions: list[dict[str, Any]] = []
        self.marked: list[str] = []
        self.loaded = False  # tests wait on this

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -tall", id="registry-dialog") as dialog:
            dialog.border_title = "MLflow registry"
            dialog.border_subtitle = "space marks · x compares two · ctrl+r reloads · escape closes"
            yield Static("reading the registry…", classes="hint", id="registry-status")
            table: DataTable = DataTable(id="registry-table", cursor_type="row", zebra_stripes=True)
            table.add_columns(" ", *self.COLUMNS)
            yield table

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.loaded = False
        self._read()

    @work(thread=True, group="registry", exit_on_error=False)
    def _read(self) -> None:
        answer = self.tracking.registry()
        self.app.call_from_thread(self._show, answer)

    def _show(self, answer: dict[str, Any]) -> None:
        status = self.query_one("#registry-status", Static)
        table = self.query_one("#registry-table", DataTable)
        table.clear()
        self.versions = answer.get("versions") or []
        if answer.get("error"):
            status.update(Content.from_markup("[$text-error]$e[/]", e=answer["error"]))
        else:
            status.update(f"{len(self.versions)} version(s) · {answer.get('uri')}")
        for v in self.versions:
            t = v["tags"]
            speedup = t.get("bench.speedup_vs_fp32")
            table.add_row("", v["name"], v["version"], ",".join(v["aliases"]), t.get("quant.label", "–"),
                          t.get("quant.bits", "–"), t.get("bench.runtime", "–"), t.get("bench.device", "–"),
                          t.get("bench.latency_p50_ms", "–"), f"×{float(speedup):.2f}" if speedup else "–",
                          t.get("bench.accuracy", "–"), key=self._key(v))
        self.marked = [k for k in self.marked if any(self._key(v) == k for v in self.versions)]
        self.loaded = True

    @staticmethod
    def _key(v: dict[str, Any]) -> str:
        return f"{v['name']}/{v['version']}"

    def action_mark(self) -> None:
        table = self.query_one("#registry-table", DataTable)
        if not table.row_count:
            return
        key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        if key in self.marked:
            self.marked.remove(key)
        else:
            self.marked = [*self.marked, key][-2:]
        for v in self.versions:
            table.update_cell(self._key(v), table.ordered_columns[0].key, "●" if self._key(v) in self.marked else "")

    def action_compare(self) -> None:
        from engines.tracking.fields import version_as_result
        from qbench_tui.screens.compare import CompareScreen

        chosen = [v for k in self.marked for v in self.versions if self._key(v) == k]
        if len(chosen) != 2:
            self.notify("mark two versions with space, then x", severity="warning", timeout=3)
            return
        self.app.push_screen(CompareScreen(*(version_as_result(v) for v in chosen)))
