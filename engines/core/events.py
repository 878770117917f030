"""The phases of a variant and the typed events that travel worker → runner → UI.

The worker writes plain JSON lines (``{"event": "phase", ...}``); the runner turns them, and
its own milestones, into the dataclasses below and hands them to its listener (the CLI's
progress display, the app's sweep controller). Plain Python: the UI process imports this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The order in which a variant's child goes through its work (the app's phase strip shows it);
# some tasks add phases of their own after these (causal LMs: "generate").
PHASES = ("load", "quantize", "cold-start", "accuracy", "warm-up", "measure")
TASK_PHASES = ("generate",)


@dataclass(frozen=True)
class VariantInfo:
    """What the UI needs to name a variant while it runs."""

    method: str
    label: str
    recipe_id: str
    runtime: str
    device: str


@dataclass(frozen=True)
class SweepEvent:
    run_id: str


@dataclass(frozen=True)
class RunStarted(SweepEvent):
    model: str
    total: int  # measurements (variants × batch sizes) in the whole run
    done: int  # already stored (a resumed run)
    resumed: bool


@dataclass(frozen=True)
class VariantStarted(SweepEvent):
    variant: VariantInfo
    index: int
    count: int
    batch_sizes: tuple[int, ...]


@dataclass(frozen=True)
class PhaseChanged(SweepEvent):
    phase: str
    batch_size: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. QAT's epoch and loss


@dataclass(frozen=True)
class LatenciesMeasured(SweepEvent):
    ms: tuple[float, ...]


@dataclass(frozen=True)
class ResultRecorded(SweepEvent):
    result: dict[str, Any]  # engines.core.schema.Result.to_dict()


@dataclass(frozen=True)
class WaitingForMachine(SweepEvent):
    """Another sweep is measuring on this machine; this one waits for it (engines.bench.lock).
    ``holder`` names it (pid, run_id, source, since); sent again with ``holder=None`` once this
    sweep has the machine."""

    holder: dict[str, Any] | None


@dataclass(frozen=True)
class RunFinished(SweepEvent):
    status: str  # finished, interrupted, failed
