"""App-level messages, each named as an event that has happened.

Workers (the sweep, the device sampler, start-up loading) post these to the app from their
threads; ``post_message`` is thread-safe. High-rate ones (device samples, phases) collapse with
``can_replace`` so a busy moment never queues stale readings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from engines.devices.sampling import DeviceSample


@dataclass
class StoreOpened(Message):
    """The result store is open (``store`` set) or could not be opened (``error`` set)."""

    store: Any | None
    error: str | None = None
    path: str | None = None  # the database file, opened or not


@dataclass
class ModelsListed(Message):
    """The model zoo was listed (built-in and discovered models)."""

    models: list[Any]
    error: str | None = None


@dataclass
class HistoryLoaded(Message):
    """The stored runs and the first page of the results view (``None``: no store)."""

    view: Any | None  # qbench_tui.history.ResultsView
    runs: dict[str, dict[str, Any]]
    model: str | None = None  # the model the browser selects at start-up…
    model_summary: dict[str, Any] | None = None  # …and its history (Store.model_summary), read here too


@dataclass
class ModelHistoryRead(Message):
    """A model's history (Store.model_summary) read in the background while a sweep stores results."""

    key: tuple[str, int, int]  # model, results in the store, runs: when it was asked
    summary: dict[str, Any]
    asked: int  # which read this answers (only the latest is shown)


@dataclass
class ModelOpened(Message):
    """A model given by path was resolved (``spec``) or refused (``error``)."""

    path: str
    spec: Any | None = None
    error: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # model options it was opened with


@dataclass
class SweepWaiting(Message):
    """Another sweep holds the machine's measurement lock; this one waits (``holder`` names it:
    pid, run_id, source), or has it now (``holder`` None)."""

    run_id: str
    holder: dict[str, Any] | None


@dataclass
class SweepStarted(Message):
    run_id: str
    model: str
    total: int
    done: int
    resumed: bool
    run: dict[str, Any] = field(default_factory=dict)  # the stored run row (request, environment)


@dataclass
class VariantStarted(Message):
    """The runner moved to the next variant; ``label`` names its recipe (e.g. ``int4(g128)``)."""

    run_id: str
    label: str
    runtime: str
    device: str
    index: int
    count: int
    batch_sizes: list[int]


@dataclass
class PhaseChanged(Message):
    """The running variant entered a phase (load, quantize, cold-start, accuracy, warm-up, measure)."""

    run_id: str
    phase: str
    batch_size: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. QAT's epoch, loss and accuracy

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PhaseChanged)


@dataclass
class LatenciesMeasured(Message):
    """A burst of per-call latencies (ms) from the measuring loop (about four a second)."""

    run_id: str
    ms: list[float]


@dataclass
class ResultRecorded(Message):
    """One measurement finished (ok, failed or unsupported) and is stored."""

    run_id: str
    result: dict[str, Any]


@dataclass
class SweepFinished(Message):
    run_id: str
    status: str
    elapsed_s: float


@dataclass
class SweepCancelled(Message):
    run_id: str | None
    elapsed_s: float


@dataclass
class SweepFailed(Message):
    """The sweep could not start or the engine raised; the message says why."""

    run_id: str | None
    error: str


@dataclass
class DeviceSampled(Message):
    sample: DeviceSample | None  # None: the reading failed (``error``)
    error: str | None = None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DeviceSampled)


@dataclass
class ResultsExported(Message):
    path: str
    count: int
    error: str | None = None


@dataclass
class TrackingSynced(Message):
    """The sender ran (or the queue was read): what is still queued for MLflow, per URI, and any
    error the drain met (``qbench_tui.controllers.tracking``)."""

    queue: list[dict[str, Any]]
    sent: int = 0
    error: str | None = None


@dataclass
class ModelRegistered(Message):
    """``register`` answered: the new model version (``version``) or why not (``error``)."""

    result_id: int
    version: dict[str, Any] | None = None
    error: str | None = None
