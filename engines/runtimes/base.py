"""What passes exchange (an :class:`Artifact`) and what a runtime opens it as (a :class:`Session`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.core.errors import UnsupportedVariant  # noqa: F401 - raised by runtimes and passes

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Artifact:
    path: Path  # a file or a directory
    notes: list[str] = field(default_factory=list)
    # In-memory artifacts (a torch module) travel here; ``path`` then holds their saved form, for
    # the size. Quantizing in memory is part of such a variant's cold start (the worker adds it).
    payload: Any = None
    format: str = ""  # an engines.passes.Format value
    facts: dict[str, Any] = field(default_factory=dict)  # what passes learnt: op counts, plans, …
    # Figures the variant's result records in its ``metrics`` (op counts, compressed ops, the
    # share of work per compute unit), whether or not the runtime can then run it here.
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        if self.path.is_dir():
            return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        total = self.path.stat().st_size
        # ONNX external data files live beside the model
        data = self.path.with_name(self.path.name + ".data")
        return total + (data.stat().st_size if data.exists() else 0)


class Session:
    """A loaded variant. ``run`` returns the main output as float32 numpy; ``bind`` returns a
    zero-argument callable that runs one inference on pre-converted inputs (what gets timed)."""

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def bind(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        raise NotImplementedError

    def device_memory_mb(self) -> float | None:
        """The framework's own device memory high-water mark since :meth:`reset_device_peak`, where it has one."""
        return None

    def reset_device_peak(self) -> None:
        """Start the device memory peak afresh: called just before the timed calls."""

    def live_device_mb(self) -> float | None:
        """The device memory now (MB) where the resident set does not show it (Metal): the watchdog's."""
        return None

    def kv_decoder(self) -> tuple[Any, str | None]:
        """Causal LMs: ``(decoder, None)`` for generation with a KV cache (see
        :mod:`engines.bench.decode`), or ``(None, reason)``."""
        return None, "this runtime has no KV-cache path in qbench yet"

