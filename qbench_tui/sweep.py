"""Drives the engine's sweep runner from a Textual thread worker.

The runner blocks and reports plain-dict events from its thread; :class:`SweepController`
turns each into an app message (``messages.py``) and every way a sweep can end — finished,
cancelled, an engine error — into one final message. Nothing raised here reaches Textual.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from textual.message import Message

from qbench_tui import messages


class SetupError(ValueError):
    """The sweep set-up in the UI is incomplete or invalid; ``field`` names the culprit."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class SweepSetup:
    """What the configurator holds: plain data, validated by the engine's SweepRequest."""

    model: str
    methods: tuple[str, ...]
    runtimes: tuple[str, ...]
    devices: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    threads: int | None = None
    measure: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)  # seq_len, allow_pickle

    @property
    def variant_count(self) -> int:
        return len(self.methods) * len(self.runtimes) * len(self.devices)

    @property
    def measurement_count(self) -> int:
        return self.variant_count * len(self.batch_sizes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("methods", "runtimes", "devices", "batch_sizes"):
            data[key] = list(data[key])
        return data


def build_request(setup: SweepSetup):
    """The engine's SweepRequest (imports engines.bench.runner: call it off the UI thread)."""
    from engines.bench.measure import MeasureSettings
    from engines.bench.runner import SweepRequest

    measure = MeasureSettings(**setup.measure) if setup.measure else MeasureSettings()
    extra = {"model_options": setup.model_options} if setup.model_options else {}
    return SweepRequest(
        model=setup.model, methods=setup.methods, runtimes=setup.runtimes, devices=setup.devices,
        batch_sizes=setup.batch_sizes, configs=setup.configs, threads=setup.threads, measure=measure,
        **extra,
    )


class SweepController:
    """Owns the cancel flag and the one sweep that may run at a time."""

    def __init__(self, store: Any, post: Callable[[Message], Any], clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.post = post
        self.clock = clock
        self.cancel_event = threading.Event()
        self.running = threading.Event()
        self.run_id: str | None = None
        self._started = 0.0

    # Called from the UI thread ---------------------------------------------------------------

    def cancel(self) -> None:
        self.cancel_event.set()

    def wait(self, timeout: float) -> bool:
        """Block until no sweep runs (used at exit, after cancel); True when it ended."""
        deadline = time.monotonic() + timeout
        while self.running.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.running.is_set()

    # Called from the worker thread -----------------------------------------------------------

    def run(self, setup: SweepSetup | None = None, resume_run_id: str | None = None) -> None:
        """Run (or resume) a sweep to its end; every outcome is posted, nothing is raised."""
        self.cancel_event.clear()
        self.running.set()
        self.run_id = resume_run_id
        self._started = self.clock()
        try:
            from engines.bench.runner import SweepInterrupted, SweepRunner

            runner = SweepRunner(self.store, self._on_event, self.cancel_event, source="tui")
            try:
                if resume_run_id:
                    outcome = runner.resume(resume_run_id)
                else:
                    assert setup is not None
                    outcome = runner.run(build_request(setup))
            except SweepInterrupted:
                self.post(messages.SweepCancelled(self.run_id, self.clock() - self._started))
                return
            self.post(messages.SweepFinished(outcome.run_id, outcome.status, self.clock() - self._started))
        except Exception as exc:  # noqa: BLE001 - an engine error must end as a message, never as a crash
            self.post(messages.SweepFailed(self.run_id, describe_error(exc)))
        finally:
            self.running.clear()

    def _on_event(self, event: Any) -> None:
        from engines.core import events

        run_id = event.run_id or self.run_id or ""
        if isinstance(event, events.RunStarted):
            self.run_id = run_id
            try:
                run = self.store.get_run(run_id) or {}
            except Exception:  # noqa: BLE001 - the row is a nicety for the detail view; never fatal
                run = {}
            self.post(messages.SweepStarted(run_id, event.model, event.total, event.done, event.resumed, run))
        elif isinstance(event, events.VariantStarted):
            v = event.variant
            self.post(messages.VariantStarted(run_id, v.label, v.runtime, v.device, event.index, event.count,
                                              list(event.batch_sizes)))
        elif isinstance(event, events.PhaseChanged):
            self.post(messages.PhaseChanged(run_id, event.phase, event.batch_size))
        elif isinstance(event, events.LatenciesMeasured):
            self.post(messages.LatenciesMeasured(run_id, list(event.ms)))
        elif isinstance(event, events.ResultRecorded):
            self.post(messages.ResultRecorded(run_id, {**event.result, "run_id": run_id}))
        # RunFinished is reported once the runner returns (with the elapsed time).


def describe_error(exc: BaseException) -> str:
    """One readable line: the exception's own message, its type only when it has none."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    if isinstance(exc, (ValueError, KeyError, FileNotFoundError)):
        return text
    return f"{type(exc).__name__}: {text}"
