"""Live device meters: per-core CPU, memory (system, benchmark process, app), accelerators,
the running job and its phase, sweep progress, and a trace of the latest call latencies.

Values arrive by message (the sampler and the sweep run in workers); this pane only keeps the
latest reading and bounded histories, and redraws from them.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Label, ProgressBar, Sparkline, Static
from textual.worker import Worker, WorkerState

from engines.core.events import PHASES
from engines.devices.sampling import DeviceSample
from qbench_tui import messages
from qbench_tui.analysis import fmt_duration, fmt_num
from qbench_tui.widgets.readout import set_text

LATENCY_HISTORY = 240  # calls kept for the trace
CPU_HISTORY = 120  # samples (two minutes at 1 Hz)
# The job readout, the phase strip and the latency trace change several times a second while a
# sweep measures (its rounds alternate warm-up and measure, each sends latencies). A change after
# QUIET_S without a redraw of its part is drawn at once; the next ones with the next device sample
# (about 1 Hz), in the frame the meters are drawn in anyway, or after QUIET_S if no sample comes.
# A frame of their own for each was the app's main cost while a sweep ran.
QUIET_S = 1.5


class _Job:
    """The job readout (wraps on narrow panes, so it keeps its layout pass; while a sweep runs it
    does not shrink, and it is as tall from the start as its longest variant: see set_text)."""

    def __init__(self, widget: Static, running: bool, reserve: Content | None):
        self.widget = widget
        self.running = running
        self.reserve = reserve

    def update(self, content: Content) -> None:
        set_text(self.widget, content, fixed_height=False, keep_height=self.running,  # a few times per variant
                 reserve=self.reserve if self.running else None)


def running_lines(model: str, run: str, variant: Content) -> Content:
    """The job readout while a sweep runs: the run, then the variant."""
    return Content("\n").join([Content.from_markup("[b $text-accent]▶ running[/] $model · run $run",
                                                    model=model, run=run), variant])


def variant_line(i: int, n: int, label: str, batch_size: int | None) -> Content:
    bs = f" · bs {batch_size}" if batch_size else ""
    return Content.from_markup("variant $i/$n [b]$v[/]$bs", i=str(i), n=str(n), v=label, bs=bs)


# The phase strip while a sweep runs: room for a pass's progress line under it from the start.
PHASES_RESERVE = Content(" › ".join([f" {PHASES[0]} ", *PHASES[1:]]) + "\n·")
RUN_ID_SAMPLE = "20260101-000000-0000"  # as long as a run id (the readout shows "…" until it is known)


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
    """The meters pane. It samples the devices itself (a one-shot timer re-armed after each
    sample, so samples never overlap); the ``sweep_*`` methods are called by the screen."""

    def __init__(self, system: Any, interval_s: float = 1.0, sweeping: Any = None, **kwargs: Any):
        """``interval_s``: seconds between samples while a sweep runs (twice that between sweeps);
        ``sweeping``: a callable saying whether a sweep is under way (None: never)."""
        super().__init__(**kwargs)
        self.system = system
        self.interval_s = interval_s
        self._sweeping = sweeping or (lambda: False)
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
        self._pending: set[str] = set()  # parts changed, not drawn yet: "job", "trace"
        self._drawn_at: dict[str, float] = {}
        self._redraw_timer: Timer | None = None
        self._job_reserve: Content | None = None  # the job readout's longest text in this sweep

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

    def arm_sampler(self, delay: float) -> None:
        self.set_timer(delay, self._sampler_worker, name="device-sampler")

    @work(thread=True, group="sampler", exit_on_error=False)
    def _sampler_worker(self) -> None:
        self.post_message(messages.DeviceSampled(self.system.sample()))

    def on_device_sampled(self, message: messages.DeviceSampled) -> None:
        if message.sample is None:  # the start-up thread's first reading failed: keep trying, less often
            self.arm_sampler(self.interval_s * 5)
            return
        self.update_sample(message.sample)
        # Re-armed only now: a slow sample (nvidia-smi, a loaded machine) delays the next one.
        # Between sweeps the meters tick at half the rate: nothing is being measured.
        self.arm_sampler(self.interval_s if self._sweeping() else 2 * self.interval_s)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "sampler" and event.state == WorkerState.ERROR:
            event.stop()  # a failed sample is not the user's news: keep trying, less often
            self.arm_sampler(self.interval_s * 5)

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
        if self._pending:  # what changed since the last sample, in this frame
            self._redraw_pending()

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

    def sweep_started(self, run_id: str, model: str, total: int, done: int, labels: list[str] | None = None,
                      batch_sizes: list[int] | None = None) -> None:
        """``labels`` (``method · runtime · device``) and ``batch_sizes``, when known, size the job
        readout for the whole sweep at once (None: as given before, for this sweep)."""
        if labels is not None:
            longest = max(labels, key=len, default="")
            self._job_reserve = running_lines(model, RUN_ID_SAMPLE, variant_line(
                len(labels), len(labels), longest, max(batch_sizes or [0])))
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

    def sweep_planned(self, setup: Any | None, model: str = "") -> None:
        """A sweep is starting (a ``SweepSetup``; None: ``model``'s run resumed), before the
        worker's first event: the readout sized for every variant of the set-up at once."""
        if setup is None:
            self.sweep_started("", model, 0, 0, [], [])
            return
        labels = [" · ".join(v) for v in itertools.product(setup.methods, setup.runtimes, setup.devices)]
        self.sweep_started("", setup.model, setup.measurement_count, 0, labels, list(setup.batch_sizes))

    def cancelling(self) -> None:
        self.message = "cancelling: stopping the benchmark process…"
        self.refresh_job()

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
            self._redraw_soon("trace")
        self._redraw_soon("job")  # every phase passed shows as done in the strip, whenever drawn

    def latencies_measured(self, ms: list[float]) -> None:
        self.latencies.extend(ms)
        self._redraw_soon("trace")

    def _redraw_soon(self, part: str) -> None:
        """Draw ``part`` now after a quiet spell, else with the next sample (see QUIET_S)."""
        self._pending.add(part)
        if time.monotonic() - self._drawn_at.get(part, float("-inf")) >= QUIET_S:
            self._redraw_pending()
        elif self._redraw_timer is None:
            self._redraw_timer = self.set_timer(QUIET_S, self._redraw_pending, name="meters-redraw")

    def _redraw_pending(self) -> None:
        if self._redraw_timer is not None:
            self._redraw_timer.stop()
            self._redraw_timer = None
        parts, self._pending = self._pending, set()
        if "job" in parts:
            self.refresh_job()
        if "trace" in parts:
            self._draw_trace()

    def _draw_trace(self) -> None:
        self._pending.discard("trace")
        self._drawn_at["trace"] = time.monotonic()
        self.query_one("#latency-spark", Sparkline).data = list(self.latencies)
        self._latency_title()

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
        self._draw_trace()
        self.state, self.message = state, message
        if elapsed_s is not None:
            self.elapsed_s = elapsed_s
        self.phase = None
        self.refresh_job()

    # --- drawing -----------------------------------------------------------------------------

    def refresh_job(self) -> None:
        self._pending.discard("job")  # drawn now with the latest state
        self._drawn_at["job"] = time.monotonic()
        job = _Job(self.query_one("#job", Static), self.state == "running", self._job_reserve)
        if self.state == "idle":
            job.update(Content.from_markup("[$text-muted]idle · [b]r[/b] runs the configured sweep[/]"))
        elif self.state == "running":
            if self.variant:
                variant = variant_line(*self.variant_index, " · ".join(self.variant), self.batch_size)
            else:
                variant = Content.from_markup("[$text-muted]starting the first variant…[/]")
            job.update(running_lines(self.model, self.run_id or "…", variant))
        else:
            style = {"finished": "$text-success", "cancelled": "$text-warning", "failed": "$text-error"}[self.state]
            symbol = {"finished": "✓", "cancelled": "■", "failed": "✗"}[self.state]
            lines = [Content.from_markup(f"[b {style}]$s $state[/] $model · run $run", s=symbol, state=self.state,
                                         model=self.model or "–", run=self.run_id or "–")]
            if self.message:
                lines.append(Content.from_markup(f"[{style}]$m[/]", m=self.message))
            job.update(Content("\n").join(lines))
        running = self.state == "running"
        set_text(self.query_one("#phases", Static), self._phase_strip(), fixed_height=False,
                 keep_height=running, reserve=PHASES_RESERVE if running else None)
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
