"""Live device meters: per-core CPU, memory (system, benchmark process, app), accelerators,
the running job and its phase, sweep progress, and a trace of the latest call latencies.

Values arrive by message (the sampler and the sweep run in workers); this pane only keeps the
latest reading and bounded histories, and redraws from them.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Label, ProgressBar, Sparkline, Static

from engines.core.events import PHASES
from engines.devices.sampling import DeviceSample
from qbench_tui.analysis import fmt_duration, fmt_num
from qbench_tui.widgets.readout import set_text

LATENCY_HISTORY = 240  # calls kept for the trace
CPU_HISTORY = 120  # samples (two minutes at 1 Hz)
TRACE_REDRAW_S = 0.5
JOB_REDRAW_S = 0.25  # the job readout and the phase strip, during a burst of phase changes


class _Job:
    """The job readout (wraps on narrow panes, so it keeps its layout pass; while a sweep runs it
    does not shrink: see set_text)."""

    def __init__(self, widget: Static, running: bool):
        self.widget = widget
        self.running = running

    def update(self, content: Content) -> None:
        set_text(self.widget, content, fixed_height=False, keep_height=self.running)  # a few times per variant


def level_style(percent: float) -> str:
    """Theme variable for a load level: green, then amber above 60 %, red above 85 %."""
    return "$success" if percent < 60 else "$warning" if percent < 85 else "$error"


def bar(percent: float, width: int) -> Content:
    """A horizontal bar in theme colours (eighth blocks for a smooth edge)."""
    percent = max(0.0, min(100.0, percent))
    eighths = round(percent / 100 * width * 8)
    full, part = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[part].strip() if part else ""
    filled = "█" * full + partial
    empty = "·" * max(0, width - len(filled))
    return Content.from_markup(f"[{level_style(percent)}]$f[/][$text-muted]$e[/]", f=filled, e=empty)


class MeterRows(Widget):
    """Labelled bars, laid out in columns when there are many (a 24-core machine stays compact)."""

    DEFAULT_CSS = "MeterRows { height: auto; }"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.rows: list[tuple[str, float, str]] = []  # (label, percent, text after the bar)

    def set_rows(self, rows: list[tuple[str, float, str]]) -> None:
        changed_height = len(rows) != len(self.rows)
        self.rows = rows
        self.refresh(layout=changed_height)

    def _columns(self, width: int) -> int:
        if len(self.rows) <= 8:
            return 1
        return max(1, min(4, width // 28))

    def get_content_height(self, container: Any, viewport: Any, width: int) -> int:
        cols = self._columns(width)
        return max(1, -(-len(self.rows) // cols))

    def render(self) -> Content:
        if not self.rows:
            return Content.from_markup("[$text-muted]waiting for the first sample…[/]")
        width = self.size.width or 40
        cols = self._columns(width)
        col_w = width // cols
        label_w = max(len(r[0]) for r in self.rows)
        text_w = max(len(r[2]) for r in self.rows)
        bar_w = max(4, col_w - label_w - text_w - 3)
        per_col = -(-len(self.rows) // cols)
        lines = []
        for line_no in range(per_col):
            parts = []
            for col in range(cols):
                i = col * per_col + line_no
                if i >= len(self.rows):
                    break
                label, percent, text = self.rows[i]
                parts.append(Content.from_markup("[$text-muted]$l[/] ", l=label.ljust(label_w)))
                parts.append(bar(percent, bar_w))
                parts.append(Content(" " + text.rjust(text_w) + (" " if col < cols - 1 else "")))
            lines.append(Content("").join(parts))
        return Content("\n").join(lines)


class DeviceMeters(VerticalScroll):
    """The meters pane. ``update_sample`` and the ``sweep_*`` methods are called by the app."""

    def __init__(self, system: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.system = system
        self.sample: DeviceSample | None = None
        self.latencies: deque[float] = deque(maxlen=LATENCY_HISTORY)
        self.cpu_history: deque[float] = deque(maxlen=CPU_HISTORY)
        self.bench_peak_mb = 0.0
        # The sweep as far as the meters know it.
        self.state = "idle"  # idle | running | finished | cancelled | failed
        self.run_id: str | None = None
        self.model = ""
        self.variant: tuple[str, str, str] | None = None
        self.variant_index = (0, 0)
        self.batch_sizes: list[int] = []
        self.phase: str | None = None
        self.phase_detail: dict = {}  # the running pass's progress (QAT epochs, sensitivity)
        self.batch_size: int | None = None
        self.done = 0
        self.total = 0
        self.started_at: float | None = None
        self.elapsed_s = 0.0
        self.message = ""
        self._trace_dirty = False
        self._trace_timer: Timer | None = None
        self._job_timer: Timer | None = None
        self._job_drawn_at = float("-inf")

    def compose(self) -> ComposeResult:
        yield Static("", id="job")
        yield Static("", id="phases")
        yield ProgressBar(total=1, show_eta=False, show_percentage=True, id="sweep-progress")
        yield Static("", id="progress-text")
        yield Static("", id="latency-text", classes="section-title")
        yield Sparkline([], summary_function=max, id="latency-spark")
        yield Static("CPU", id="cpu-title", classes="section-title")
        yield MeterRows(id="cores")
        yield Sparkline([], summary_function=max, id="cpu-spark")
        yield Label("Memory", classes="section-title")
        yield MeterRows(id="memory")
        yield Label("Accelerators", classes="section-title")
        yield Static("", id="accelerators")

    def on_mount(self) -> None:
        self.refresh_job()
        self._latency_title()

    # --- device samples ----------------------------------------------------------------------

    def update_sample(self, sample: DeviceSample) -> None:
        self.sample = sample
        self.cpu_history.append(sample.cpu_total)
        self.query_one("#cores", MeterRows).set_rows(
            [(f"cpu{i}", p, f"{p:3.0f}%") for i, p in enumerate(sample.per_cpu)])
        self.query_one("#cpu-spark", Sparkline).data = list(self.cpu_history)
        set_text(self.query_one("#cpu-title", Static), Content.from_markup(
            "CPU [$text-muted]· $t% on average[/]", t=f"{sample.cpu_total:.0f}"))
        self._memory_rows()
        set_text(self.query_one("#accelerators", Static), self._accelerators(sample), fixed_height=False)
        if self.state == "running" and self.started_at is not None:
            self.elapsed_s = self.system.monotonic() - self.started_at
            self._refresh_progress_text()

    def _memory_rows(self) -> None:
        sample = self.sample
        if sample is None:
            return
        mem_pct = 100 * sample.memory_used_mb / sample.memory_total_mb if sample.memory_total_mb else 0
        rows = [("system", mem_pct, f"{sample.memory_used_mb / 1024:.1f}/{sample.memory_total_mb / 1024:.1f} GiB")]
        if sample.bench_rss_mb is not None:
            self.bench_peak_mb = max(self.bench_peak_mb, sample.bench_rss_mb)
            rows.append(("bench", 100 * sample.bench_rss_mb / sample.memory_total_mb,
                         f"{sample.bench_rss_mb:.0f} MiB · {sample.bench_cpu or 0:.0f}% cpu"))
        elif self.state == "running":  # before and between the variants' processes: the row stays (no layout)
            rows.append(("bench", 0.0, "no process"))
        rows.append(("app", 100 * sample.app_rss_mb / sample.memory_total_mb, f"{sample.app_rss_mb:.0f} MiB"))
        self.query_one("#memory", MeterRows).set_rows(rows)

    def _accelerators(self, sample: DeviceSample) -> Content:
        present = [a for a in sample.accelerators if a.present]
        lines = []
        for acc in present:
            parts = [f"{acc.name} {acc.title}"]
            if acc.utilisation is not None:
                parts.append(f"{acc.utilisation:.0f}% busy")
            if acc.memory_used_mb is not None and acc.memory_total_mb:
                parts.append(f"{acc.memory_used_mb / 1024:.1f}/{acc.memory_total_mb / 1024:.1f} GiB")
            if acc.power_w is not None:
                parts.append(f"{acc.power_w:.0f} W")
            if len(parts) == 1:
                parts.append(acc.detail)
            lines.append(Content.from_markup("[$text-success]●[/] $t", t=" · ".join(parts)))
        if not present:
            lines.append(Content.from_markup("[$text-muted]none present: CPU only on this machine[/]"))
        for acc in sample.accelerators:
            if not acc.present:
                lines.append(Content.from_markup("[$text-muted]○ $n: $d[/]", n=acc.name, d=acc.detail))
        return Content("\n").join(lines)

    # --- the sweep ---------------------------------------------------------------------------

    def sweep_started(self, run_id: str, model: str, total: int, done: int) -> None:
        self.state, self.run_id, self.model = "running", run_id, model
        self.total, self.done = total, done
        self.variant, self.phase, self.batch_size, self.message = None, None, None, ""
        self.started_at, self.elapsed_s = self.system.monotonic(), 0.0
        self.latencies.clear()
        self.bench_peak_mb = 0.0
        self.query_one("#latency-spark", Sparkline).data = []
        self._latency_title()
        self.refresh_job()
        self._memory_rows()  # the bench row, shown from the start (laid out with the job readout)

    def variant_started(self, method: str, runtime: str, device: str, index: int, count: int,
                        batch_sizes: list[int]) -> None:
        self.variant = (method, runtime, device)
        self.variant_index = (index + 1, count)
        self.batch_sizes = batch_sizes
        self.phase, self.batch_size = None, None
        self.refresh_job()

    def phase_changed(self, phase: str, batch_size: int | None, detail: dict | None = None) -> None:
        self.phase, self.batch_size = phase, batch_size
        self.phase_detail = detail or {}
        if phase == "warm-up":
            self.latencies.clear()  # the trace shows one batch size at a time
            self.query_one("#latency-spark", Sparkline).data = []
            self._latency_title()
        # Phases and their progress come in bursts (a pass's steps, each batch size's warm-up and
        # measure): the readout is redrawn at once, then at most every JOB_REDRAW_S with the
        # latest state (half of the app's frames while a sweep ran were phase changes).
        if self._job_timer is None:
            wait = self._job_drawn_at + JOB_REDRAW_S - time.monotonic()
            if wait <= 0:
                self.refresh_job()
            else:
                self._job_timer = self.set_timer(wait, self.refresh_job, name="job-redraw")

    def latencies_measured(self, ms: list[float]) -> None:
        # Bursts arrive about four times a second; the trace is redrawn at most twice a second
        # (each redraw is a compositor pass, the app's main cost while a sweep runs).
        self.latencies.extend(ms)
        self._trace_dirty = True
        if self._trace_timer is None:
            self._draw_trace()
            self._trace_timer = self.set_interval(TRACE_REDRAW_S, self._draw_trace, name="latency-trace")

    def _draw_trace(self) -> None:
        if not self._trace_dirty:
            return
        self._trace_dirty = False
        self.query_one("#latency-spark", Sparkline).data = list(self.latencies)
        self._latency_title()

    def _stop_trace(self) -> None:
        if self._trace_timer is not None:
            self._trace_timer.stop()
            self._trace_timer = None
        self._draw_trace()

    def _latency_title(self) -> None:
        title = self.query_one("#latency-text", Static)
        if not self.latencies:
            set_text(title, Content.from_markup("Latency per call [$text-muted]· none yet[/]"))
            return
        ordered = sorted(self.latencies)
        set_text(title, Content.from_markup(
            "Latency p50 [b]$p50[/] ms [$text-muted]· $lo–$hi · last $n[/]",
            n=str(len(ordered)), p50=fmt_num(ordered[len(ordered) // 2]), lo=fmt_num(ordered[0]),
            hi=fmt_num(ordered[-1])))

    def result_recorded(self) -> None:
        self.done = min(self.total, self.done + 1)
        self._refresh_progress_text()

    def sweep_ended(self, state: str, elapsed_s: float | None = None, message: str = "") -> None:
        self._stop_trace()
        self.state, self.message = state, message
        if elapsed_s is not None:
            self.elapsed_s = elapsed_s
        self.phase = None
        self.refresh_job()

    # --- drawing -----------------------------------------------------------------------------

    def refresh_job(self) -> None:
        if self._job_timer is not None:  # drawn now with the latest state
            self._job_timer.stop()
            self._job_timer = None
        self._job_drawn_at = time.monotonic()
        job = _Job(self.query_one("#job", Static), self.state == "running")
        if self.state == "idle":
            job.update(Content.from_markup("[$text-muted]idle · [b]r[/b] runs the configured sweep[/]"))
        elif self.state == "running":
            lines = [Content.from_markup("[b $text-accent]▶ running[/] $model · run $run",
                                         model=self.model, run=self.run_id or "…")]
            if self.variant:
                i, n = self.variant_index
                bs = f" · bs {self.batch_size}" if self.batch_size else ""
                lines.append(Content.from_markup("variant $i/$n [b]$v[/]$bs", i=str(i), n=str(n),
                                                 v=" · ".join(self.variant), bs=bs))
            else:
                lines.append(Content.from_markup("[$text-muted]starting the first variant…[/]"))
            job.update(Content("\n").join(lines))
        else:
            style = {"finished": "$text-success", "cancelled": "$text-warning", "failed": "$text-error"}[self.state]
            symbol = {"finished": "✓", "cancelled": "■", "failed": "✗"}[self.state]
            lines = [Content.from_markup(f"[b {style}]$s $state[/] $model · run $run", s=symbol, state=self.state,
                                         model=self.model or "–", run=self.run_id or "–")]
            if self.message:
                lines.append(Content.from_markup(f"[{style}]$m[/]", m=self.message))
            job.update(Content("\n").join(lines))
        set_text(self.query_one("#phases", Static), self._phase_strip(), fixed_height=False,
                 keep_height=self.state == "running")
        self._refresh_progress_text()

    def _phase_strip(self) -> Content:
        if self.state != "running" or self.phase is None:
            return Content.from_markup("[$text-muted]$p[/]", p=" › ".join(PHASES))
        current = PHASES.index(self.phase) if self.phase in PHASES else -1
        parts = []
        for i, name in enumerate(PHASES):
            if i < current:
                parts.append(Content.from_markup("[$text-success]$n[/]", n=name))
            elif i == current:
                parts.append(Content.from_markup("[b reverse $text-accent] $n [/]", n=name))
            else:
                parts.append(Content.from_markup("[$text-muted]$n[/]", n=name))
        strip = Content.from_markup("[$text-muted] › [/]").join(parts)
        if not self.phase_detail:
            return strip
        return strip + Content.from_markup("\n[$text-muted]$d[/]", d=phase_detail_text(self.phase_detail))

    def _refresh_progress_text(self) -> None:
        progress = self.query_one("#sweep-progress", ProgressBar)
        progress.update(total=max(1, self.total), progress=self.done)
        text = self.query_one("#progress-text", Static)
        if self.total == 0:
            set_text(text, Content.from_markup("[$text-muted]no sweep yet[/]"))
            return
        eta = ""
        if self.state == "running" and 0 < self.done < self.total and self.elapsed_s > 0:
            eta = f" · ~{fmt_duration(self.elapsed_s / self.done * (self.total - self.done))} left"
        set_text(text, Content.from_markup("$d/$t done · $e$eta", d=str(self.done), t=str(self.total),
                                        e=fmt_duration(self.elapsed_s), eta=eta))


def phase_detail_text(detail: dict) -> str:
    """A pass's progress in a few words: ``qat epoch 2/3 · loss 0.0123 · accuracy 0.966``."""
    parts = [str(detail.get("step", ""))]
    if "epoch" in detail:
        parts[0] += f" epoch {detail['epoch']}/{detail.get('epochs', '?')}"
    if "done" in detail:
        parts[0] += f" {detail['done']}/{detail.get('of', '?')} {detail.get('layer', '')}"
    for key in ("loss", "accuracy", "agreement", "kept"):
        value = detail.get(key)
        if value is not None:
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return " · ".join(p for p in parts if p)
