"""Watch a served model from the app: its live latency and error rate against the deployment
baseline, alerts, the canary, and the re-optimization to make.

Each poll is a one-shot thread worker (HTTP with the standard library, and the store) re-armed by a
timer when it ends, so polls never overlap and a slow server never blocks the interface. The
canary loads the model (numpy, torch): it runs in a child process (``python -m engines.ops.canary``),
and the suggested sweep as a ``qbench run`` of its own that stores into the same database.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Sparkline, Static
from textual.worker import Worker, WorkerState

HISTORY = 120  # windows kept for the sparkline


class MonitorScreen(ModalScreen[None]):
    """URL in, watch on ctrl+w; alerts and the suggestion show as they come."""

    DEFAULT_CSS = """
    #monitor-bar { align-horizontal: left; margin-top: 0; }
    #monitor-url { width: 1fr; }
    #monitor-status { height: auto; margin-top: 1; }
    #monitor-spark { height: 3; margin-top: 1; }
    #monitor-alerts { color: $text-error; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("ctrl+w", "toggle_watch", "Watch / stop", priority=True),
        Binding("ctrl+k", "canary", "Canary", priority=True),
        Binding("ctrl+s", "start_sweep", "Start suggested sweep", priority=True),
    ]

    @dataclass
    class Polled(Message):
        report: dict[str, Any]

    @dataclass
    class Started(Message):
        start: dict[str, Any]

    @dataclass
    class CanaryFinished(Message):
        report: dict[str, Any]

    def __init__(self, db_path: Path | None, url: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        from engines.ops.config import load_ops_config

        try:
            self.config = load_ops_config()
            self.config_error = None
        except ValueError as exc:
            from engines.ops.config import OpsConfig

            self.config, self.config_error = OpsConfig(), str(exc)
        self.db_path = db_path
        self.initial_url = url or f"http://{self.config.serve_host}:{self.config.serve_port}"
        self.session: Any = None
        self._store: Any = None
        self.watching = False
        self.latencies: deque[float] = deque(maxlen=HISTORY)
        self.alerts: list[str] = []
        self.suggestion: dict[str, Any] | None = None
        self.last_report: dict[str, Any] | None = None
        self.canary_text = ""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -tall", id="monitor-dialog") as dialog:
            dialog.border_title = "monitor a served model"
            dialog.border_subtitle = "ctrl+w watch/stop · ctrl+k canary · ctrl+s suggested sweep · escape closes"
            with Horizontal(classes="buttons", id="monitor-bar"):
                yield Input(self.initial_url, placeholder="http://127.0.0.1:8000", id="monitor-url")
                yield Button("Watch", id="monitor-watch", variant="primary")
                yield Button("Canary", id="monitor-canary")
            yield Static(self._status_text(), id="monitor-status")
            yield Sparkline([], summary_function=max, id="monitor-spark")
            with VerticalScroll():
                yield Static("", id="monitor-alerts")
            with Horizontal(classes="buttons"):
                yield Button("Start suggested sweep", id="monitor-sweep", disabled=True)

    def on_mount(self) -> None:
        if self.config_error:
            self.notify(self.config_error, title="ops settings", severity="warning")

    # --- actions --------------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        {"monitor-watch": self.action_toggle_watch, "monitor-canary": self.action_canary,
         "monitor-sweep": self.action_start_sweep}.get(event.button.id or "", lambda: None)()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if not self.watching:
            self.action_toggle_watch()

    def action_toggle_watch(self) -> None:
        if self.watching:
            self.watching = False
            self._refresh()
            return
        url = self.query_one("#monitor-url", Input).value.strip()
        if not url.startswith(("http://", "https://")):
            self.notify(f"{url!r} is not an http(s) URL", title="monitor", severity="error")
            return
        if self.db_path is None:
            self.notify("no result store: the monitor needs one for baselines", severity="error")
            return
        self.watching = True
        self.latencies.clear()
        self.alerts, self.suggestion, self.last_report = [], None, None
        self._refresh()
        self._start_worker(url)

    @work(thread=True, group="monitor", exit_on_error=False)
    def _start_worker(self, url: str) -> None:
        from engines.ops.monitor import Thresholds
        from engines.ops.session import MonitorSession
        from engines.store import Store

        if self._store is None:
            self._store = Store(self.db_path)
        self.session = MonitorSession(url, self._store, Thresholds.from_config(self.config))
        self.post_message(self.Started(self.session.start()))

    @work(thread=True, group="monitor", exit_on_error=False)
    def _poll_worker(self) -> None:
        self.post_message(self.Polled(self.session.poll()))

    def _arm(self) -> None:
        if self.watching:
            self.set_timer(self.config.monitor_interval_s, self._poll_if_watching, name="monitor-poll")

    def _poll_if_watching(self) -> None:
        if self.watching and self.session is not None:
            self._poll_worker()

    def on_monitor_screen_started(self, message: Started) -> None:
        self.last_report = {"state": "collecting", "window": {}, "baseline": message.start.get("baseline"),
                            "result_id": message.start.get("result_id"), "alerts": []}
        self._refresh()
        self._arm()

    def on_monitor_screen_polled(self, message: Polled) -> None:
        report = message.report
        self.last_report = report
        mean = (report.get("window") or {}).get("latency_mean_ms")
        if report["state"] != "collecting" and mean is not None:
            self.latencies.append(mean)
        for alert in report.get("alerts") or []:
            self.alerts.append(f"ALERT {alert['kind']}: {alert['message']}")
            self.notify(alert["message"], title=f"monitor: {alert['kind']} alert", severity="error", timeout=8)
        if report.get("suggestion"):
            self.suggestion = report["suggestion"]
        self._refresh()
        self._arm()  # re-armed only now: polls never overlap

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.group in ("monitor", "canary"):
            error = str(event.worker.error)
            if event.worker.group == "monitor":
                self.watching = False
                self.alerts.append(f"stopped: {error}")
            self.notify(error, title=f"{event.worker.group} failed", severity="error", timeout=8)
            self._refresh()

    def action_canary(self) -> None:
        if self.session is None or self.session.result_id is None or self.db_path is None:
            self.notify("watch a served qbench model first (its result is read from its model info)",
                        title="canary", severity="warning")
            return
        self.canary_text = "canary: posting the held-out rows…"
        self._refresh()
        self._canary_worker(self.session.url, self.session.result_id)

    @work(thread=True, group="canary", exit_on_error=False)
    def _canary_worker(self, url: str, result_id: int) -> None:
        argv = [sys.executable, "-m", "engines.ops.canary", url, str(result_id), str(self.db_path),
                str(self.config.canary_rows), str(self.config.canary_tolerance)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        try:
            report = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            report = {"alert": True, "text": f"canary failed: {(proc.stderr or proc.stdout).strip()[-300:]}"}
        self.post_message(self.CanaryFinished(report))

    def on_monitor_screen_canary_finished(self, message: CanaryFinished) -> None:
        self.canary_text = message.report.get("text", "")
        if message.report.get("alert"):
            self.notify(self.canary_text, title="canary alert", severity="error", timeout=8)
        self._refresh()

    def action_start_sweep(self) -> None:
        if not self.suggestion or self.db_path is None:
            self.notify("no suggestion yet: it comes with an alert", title="monitor", severity="warning")
            return
        argv = [sys.executable, "-m", "qbench_tui", *self.suggestion["sweep"]["argv"], "--db", str(self.db_path)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        self.notify(f"started (pid {proc.pid}): {self.suggestion['sweep']['command']}; its results land in the "
                    "store", title="re-optimization sweep", timeout=8)

    def on_unmount(self) -> None:
        self.watching = False
        if self._store is not None:
            self._store.close()

    # --- rendering ------------------------------------------------------------------------------

    def _status_text(self) -> Content:
        if not self.watching and self.last_report is None:
            return Content.from_markup("[$text-muted]Enter the service's URL (`qbench serve RESULT_ID` prints it) "
                                       "and press Watch. Alerts need $n requests per window.[/]",
                                       n=str(self.config.monitor_min_requests))
        report = self.last_report or {}
        state = report.get("state", "starting")
        style = {"alert": "$text-error", "ok": "$text-success", "baseline": "$text-accent"}.get(state, "$text-muted")
        served = self.session.result if self.session is not None else None
        what = (f"result {served['id']} · {served['model']} · {served.get('label')} · {served['runtime']} · "
                f"{served['device']}" if served else f"result {report.get('result_id') or 'unknown'}")
        lines = [Content.from_markup(f"[b {style}]$s[/] $w", s=state if self.watching else f"{state} (stopped)",
                                     w=what),
                 Content.from_markup("baseline  $b", b=_fmt(report.get("baseline"))),
                 Content.from_markup("window    $w", w=_fmt(report.get("window")))]
        if self.canary_text:
            lines.append(Content(self.canary_text))
        return Content("\n").join(lines)

    def _refresh(self) -> None:
        self.query_one("#monitor-status", Static).update(self._status_text())
        self.query_one("#monitor-spark", Sparkline).data = list(self.latencies)
        text = "\n".join(self.alerts[-20:])
        if self.suggestion:
            text += ("\n\n" if text else "") + self.suggestion["text"]
        self.query_one("#monitor-alerts", Static).update(Content(text))
        self.query_one("#monitor-watch", Button).label = "Stop" if self.watching else "Watch"
        self.query_one("#monitor-sweep", Button).disabled = not (self.suggestion and not self.suggestion["better"])


def _fmt(w: dict[str, Any] | None) -> str:
    if not w or not w.get("requests"):
        return "–"
    parts = [f"{w['requests']} requests"]
    if w.get("latency_mean_ms") is not None:
        parts.append(f"mean {w['latency_mean_ms']:.2f} ms")
    if w.get("latency_p95_ms") is not None:
        parts.append(f"p95 {w['latency_p95_ms']:.2f} ms")
    parts.append(f"errors {w.get('error_rate') or 0.0:.1%}")
    return " · ".join(parts)
