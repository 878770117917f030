"""``qbench run``'s progress: live on a terminal, plain lines when piped.

A variant can measure for a minute; on a terminal a Rich live display shows what is happening
meanwhile (done / total, the variant and its phase, elapsed time and the time left), with a
line per finished result printed above it. Piped, or with ``--json -`` (the results go to
stdout), the output is one plain line per event, so logs and parsers see no cursor movement.
"""

from __future__ import annotations

import time
from typing import Any

from engines.core import events
from engines.core.schema import display_label, local_host

STATUS_COLOURS = {"ok": "green", "failed": "red", "unsupported": "yellow", "interrupted": "magenta"}


def make_progress(console: Any, plain: bool = False) -> SweepProgress:
    """The listener for the runner: live where ``console`` is a terminal (and not ``plain``)."""
    if console.is_terminal and not plain and not console.is_dumb_terminal:
        return LiveProgress(console)
    return SweepProgress(console)


def result_line(r: dict[str, Any]) -> str:
    colour = STATUS_COLOURS.get(r["status"], "white")
    detail = f"p50 {r['latency_ms']['p50']:.3f} ms" if r.get("latency_ms") else (r.get("error") or "")
    if r.get("memory_mb") is not None:
        detail += f", {r['memory_mb']:.0f} MB"
    if r.get("flags"):
        detail += f" [yellow]{' '.join(r['flags'])}[/]"
    label = display_label(r)
    if r.get("host") and r["host"] != local_host():  # measured by a fleet worker
        label += f" @ {r['host']}"
    return (f"  [{colour}]{r['status']:<11}[/] {label:<13} {r['runtime']:<12} "
            f"{r['device']:<5} bs={r['batch_size']:<4} {detail}")


def waiting_line(event: Any) -> str:
    """One sweep measures at a time per machine (engines.bench.lock): say for whom this one waits."""
    from engines.bench.lock import describe_holder

    if event.holder is not None:
        return (f"[yellow]waiting[/]: another sweep is measuring on this machine: "
                f"{describe_holder(event.holder)}; this one starts when it ends")
    return "[green]the machine is free[/]: measuring"


class SweepProgress:
    """Plain progress: a line when the run starts and one per finished result."""

    def __init__(self, console: Any):
        self.console = console
        self.run_id: str | None = None  # the run under way (what an interrupt tells the user to resume)

    def __call__(self, event: Any) -> None:
        if isinstance(event, events.WaitingForMachine):
            self.console.print(waiting_line(event))
        elif isinstance(event, events.RunStarted):
            self.run_id = event.run_id
            verb = "resuming" if event.resumed else "run"
            self.console.print(f"[bold]{verb} {event.run_id}[/]: {event.model}, "
                               f"{event.total} measurements ({event.done} already done)")
        elif isinstance(event, events.ResultRecorded):
            self.console.print(result_line(event.result))

    def close(self) -> None:
        """Stop any live display (the plain one has none)."""


class LiveProgress(SweepProgress):
    """A Rich progress bar for the run, redrawn four times a second while a variant measures."""

    def __init__(self, console: Any):
        super().__init__(console)
        self._progress: Any = None
        self._task: Any = None
        self._variant = ""
        self._phase = ""
        self._done_here = 0  # results this process measured (a resumed run's earlier ones excluded)
        self._started = 0.0

    def __call__(self, event: Any) -> None:
        if isinstance(event, (events.RunStarted, events.WaitingForMachine)):
            super().__call__(event)
            if isinstance(event, events.RunStarted):
                self._start(event.total, event.done)
        elif self._progress is None:
            return
        elif isinstance(event, events.VariantStarted):
            v = event.variant
            self._variant = f"{event.index + 1}/{event.count} {v.label} · {v.runtime} · {v.device}"
            self._phase = ""
            self._update()
        elif isinstance(event, events.PhaseChanged):
            bs = f" bs {event.batch_size}" if event.batch_size else ""
            self._phase = f"{event.phase}{bs}"
            self._update()
        elif isinstance(event, events.ResultRecorded):
            self._done_here += 1
            self._progress.console.print(result_line(event.result))
            self._progress.advance(self._task)
            self._update()
        elif isinstance(event, events.RunFinished):
            self.close()

    def _start(self, total: int, done: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._started = time.monotonic()
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[eta]}", style="progress.remaining"),
            console=self.console, refresh_per_second=4, transient=True,
        )
        self._task = self._progress.add_task("starting…", total=max(total, 1), completed=done, eta="")
        self._progress.start()

    def _update(self) -> None:
        task = self._progress.tasks[0]
        remaining = task.total - task.completed if task.total is not None else 0
        eta = ""
        if self._done_here and remaining > 0:
            per_result = (time.monotonic() - self._started) / self._done_here
            eta = f"~{_duration(per_result * remaining)} left"
        description = f"variant {self._variant}" + (f" · [bold]{self._phase}[/]" if self._phase else "")
        self._progress.update(self._task, description=description, eta=eta)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds // 60 % 60:02d}"
