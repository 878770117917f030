"""What a loaded model offers the runtimes and the measurement code.

Every model, whatever its source, becomes a :class:`LoadedModel`: an fp32 torch module that
returns one tensor (wrappers make it so), its inputs described by name, and the data sets the
measurement needs (held-out, calibration) as dicts of numpy arrays with the batch on axis 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TASKS = ("classification", "embedding", "causal-lm", "generic")


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int | str, ...]  # str = a symbolic (dynamic) axis such as "batch"
    dtype: str  # numpy dtype name


@dataclass
class TrainingData:
    """What the model was trained on, for methods that fine-tune (quantization-aware training).

    ``inputs`` are model inputs (batch on axis 0); ``labels`` the targets its loss compares the
    output with: class ids (classification) or next-token ids per position (causal LMs)."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.labels)


@dataclass
class LoadedModel:
    name: str
    task: str
    module: Any  # torch.nn.Module in eval mode returning one tensor; None for ONNX-only models
    inputs: list[InputSpec]
    output_name: str
    eval_inputs: dict[str, np.ndarray]
    eval_labels: np.ndarray | None = None
    calibration_inputs: dict[str, np.ndarray] | None = None
    onnx_source: Path | None = None  # set when the model *is* an ONNX file
    params: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # Symbolic axes of the main output (the batch, and e.g. the sequence of a causal LM's logits).
    output_axes: dict[int, str] = field(default_factory=lambda: {0: "batch"})
    # A model whose graph fixes the batch (an ONNX file or exported program with batch 1) runs its
    # held-out and calibration sets in batches of exactly this size; other batch sizes cannot run.
    fixed_batch: int | None = None
    # The training set (built-in models); None where the model came without one.
    training_data: TrainingData | None = None
    calibration_labels: np.ndarray | None = None  # labels of the calibration rows, where known
    # Causal LMs: the fp32 decode-step graph with past keys / values (engines.models.kv_cache),
    # when the model came from the ONNX export cache; its layout is in details["kv_cache"].
    kv_onnx: Path | None = None

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    def example_inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        """The first ``batch_size`` held-out rows (tiled when the set is smaller)."""
        if self.fixed_batch is not None and batch_size != self.fixed_batch:
            from engines.core.errors import UnsupportedVariant

            raise UnsupportedVariant(
                f"the model's graph fixes the batch size at {self.fixed_batch}; batch size "
                f"{batch_size} cannot run"
            )
        return take_rows(self.eval_inputs, 0, batch_size)

    def calibration_batches(self, samples: int, batch_size: int = 32) -> list[dict[str, np.ndarray]]:
        """Up to ``samples`` calibration rows in batches of one size (ONNX Runtime's histogram
        calibrators, Entropy and Percentile, cannot stack batches of different sizes): at most
        ``batch_size`` rows each, dropping fewer rows than there are batches."""
        data = self.calibration_inputs or self.eval_inputs
        total = min(samples, rows(data))
        if self.fixed_batch:  # whole batches of the graph's own size
            batch_size = self.fixed_batch
            total = max(self.fixed_batch, total - total % self.fixed_batch)
        elif total == 0:
            return []
        else:
            count = -(-total // batch_size)
            batch_size = total // count
            total = batch_size * count
        return [take_rows(data, start, batch_size) for start in range(0, total, batch_size)]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes = {
            spec.name: {i: d for i, d in enumerate(spec.shape) if isinstance(d, str)}
            for spec in self.inputs
        }
        axes[self.output_name] = dict(self.output_axes)
        return axes


def rows(data: dict[str, np.ndarray]) -> int:
    return len(next(iter(data.values())))


def take_rows(data: dict[str, np.ndarray], start: int, count: int) -> dict[str, np.ndarray]:
    n = rows(data)
    if start + count <= n:
        return {k: np.ascontiguousarray(v[start : start + count]) for k, v in data.items()}
    index = np.arange(start, start + count) % n
    return {k: np.ascontiguousarray(v[index]) for k, v in data.items()}


def iter_batches(data: dict[str, np.ndarray], batch_size: int):
    n = rows(data)
    for start in range(0, n, batch_size):
        yield {k: v[start : start + batch_size] for k, v in data.items()}


EVAL_BATCH = 256  # rows per call when a whole held-out set goes through a session


def run_outputs(session, data: dict[str, np.ndarray], batch_size: int = EVAL_BATCH) -> np.ndarray:
    """A session's outputs on ``data``, ``batch_size`` rows at a time (any object with ``run(batch)``)."""
    return np.concatenate([session.run(batch) for batch in iter_batches(data, batch_size)])
