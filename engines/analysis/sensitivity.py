"""Layer sensitivity and the mixed-precision search, independent of the runtime.

A runtime's mixed pass supplies the layers and one function, ``trial(quantized) -> outputs``, that
realises the model with exactly that set of layers quantized and runs it on the calibration rows;
this module ranks the layers (one layer at a time, or by weight SQNR) and finds the smallest prefix
of the ranking to keep in float that meets the accuracy budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engines.core.errors import UnsupportedVariant
from engines.methods.mixed import PIN_PRECISIONS

KEEP_PIN = PIN_PRECISIONS[0]  # a layer pinned to float (the other pin, "quant", forces quantization)


def sqnr_db(reference: np.ndarray, value: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (inf for an exact match)."""
    ref = reference.astype(np.float64).ravel()
    noise = float(np.sum((ref - value.astype(np.float64).ravel()) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def fake_quantize_weight(weight: np.ndarray, bits: int, group: int | None) -> np.ndarray:
    """Symmetric round-to-nearest along the input axis (axis 1 of an [out, in] weight):
    one scale per row (``group`` None) or per ``group`` consecutive inputs."""
    w = weight.astype(np.float64).reshape(weight.shape[0], -1)
    g = w.shape[1] if not group or w.shape[1] % group else group
    blocks = w.reshape(w.shape[0], -1, g)
    qmax = 2 ** (bits - 1) - 1
    scale = np.abs(blocks).max(axis=-1, keepdims=True) / qmax
    scale[scale == 0] = 1.0
    return (np.clip(np.round(blocks / scale), -qmax - 1, qmax) * scale).reshape(weight.shape)


@dataclass
class Scores:
    agreement: float  # top-1 agreement with fp32 (cosine for embeddings)
    accuracy: float | None  # task accuracy on the calibration labels, where there are labels
    output_sqnr_db: float


def score(task: str, outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray | None) -> Scores:
    if task in ("classification", "causal-lm"):
        agreement = float(np.mean(outputs.argmax(-1) == reference.argmax(-1)))
        accuracy = float(np.mean(outputs.argmax(-1) == labels)) if labels is not None else None
    else:
        a = outputs.reshape(len(outputs), -1).astype(np.float64)
        b = reference.reshape(len(reference), -1).astype(np.float64)
        denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        agreement = float(np.mean(np.sum(a * b, axis=1) / np.where(denom == 0, 1.0, denom)))
        accuracy = None
    return Scores(agreement, accuracy, sqnr_db(reference, outputs))


@dataclass(frozen=True)
class Budget:
    max_accuracy_drop: float  # points
    min_agreement: float
    reference_accuracy: float | None

    def met(self, s: Scores) -> bool:
        if self.reference_accuracy is not None and s.accuracy is not None:
            return (self.reference_accuracy - s.accuracy) * 100 <= self.max_accuracy_drop + 1e-9
        return s.agreement >= self.min_agreement

    def describe(self) -> str:
        if self.reference_accuracy is not None:
            return f"≤ {self.max_accuracy_drop:g} accuracy points below fp32 ({self.reference_accuracy:.4f})"
        return f"agreement with fp32 ≥ {self.min_agreement:g}"


@dataclass
class LayerSensitivity:
    layer: str
    params: int
    weight_sqnr_db: float
    output_sqnr_db: float | None = None  # the model's output with only this layer quantized
    agreement: float | None = None
    accuracy_drop: float | None = None  # points

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def measure_sensitivity(layers: dict[str, int], weight_sqnr: dict[str, float], trial: Callable[[set[str]], np.ndarray],
                        task: str, reference: np.ndarray, labels: np.ndarray | None, one_at_a_time: bool,
                        emit: Callable[..., None] = lambda **kw: None) -> list[LayerSensitivity]:
    """Each layer's sensitivity, most sensitive first."""
    ref_acc = score(task, reference, reference, labels).accuracy
    rows = []
    for i, (layer, params) in enumerate(layers.items()):
        row = LayerSensitivity(layer, params, weight_sqnr[layer])
        if one_at_a_time:
            s = score(task, trial({layer}), reference, labels)
            row.output_sqnr_db, row.agreement = s.output_sqnr_db, s.agreement
            if ref_acc is not None and s.accuracy is not None:
                row.accuracy_drop = (ref_acc - s.accuracy) * 100
            emit(step="sensitivity", layer=layer, done=i + 1, of=len(layers))
        rows.append(row)
    key = (lambda r: r.output_sqnr_db) if one_at_a_time else (lambda r: r.weight_sqnr_db)
    return sorted(rows, key=key)


def plan_mixed(ranking: list[LayerSensitivity], trial: Callable[[set[str]], np.ndarray], task: str,
               reference: np.ndarray, labels: np.ndarray | None, budget_args: dict[str, float],
               max_kept_fraction: float, pins: dict[str, str], emit: Callable[..., None] = lambda **kw: None
               ) -> dict[str, Any]:
    """The smallest prefix of ``ranking`` (after the pins) to keep in float meeting the budget.

    Binary search on the prefix length (the budget's metric is close to monotone in it), then the
    chosen set is measured again; raises UnsupportedVariant when the budget needs more kept layers
    than ``max_kept_fraction`` allows, or cannot be met at all."""
    ref = score(task, reference, reference, labels)
    kind = budget_args.get("kind", "auto")
    if kind == "accuracy" and ref.accuracy is None:
        raise UnsupportedVariant("mixed: an accuracy budget needs labelled calibration rows and this model has none; "
                                 "use budget=agreement")
    budget = Budget(budget_args["max_accuracy_drop"], budget_args["min_agreement"],
                    None if kind == "agreement" else ref.accuracy)
    layers = [r.layer for r in ranking]
    unknown = sorted(set(pins) - set(layers))
    if unknown:
        raise UnsupportedVariant(f"pinned layer(s) {', '.join(unknown)} not found; layers: {', '.join(layers[:12])}"
                                 + (" …" if len(layers) > 12 else ""))
    forced = [layer for layer in layers if pins.get(layer) == KEEP_PIN]
    free = [layer for layer in layers if layer not in pins]
    trials: list[dict[str, Any]] = []
    cache: dict[int, Scores] = {}

    def evaluate(k: int) -> Scores:
        if k not in cache:
            kept = set(forced) | set(free[:k])
            t0 = time.perf_counter()
            cache[k] = score(task, trial(set(layers) - kept), reference, labels)
            trials.append({"kept": len(kept), **asdict(cache[k]), "seconds": time.perf_counter() - t0})
            emit(step="mixed-search", kept=len(kept), agreement=cache[k].agreement, accuracy=cache[k].accuracy)
        return cache[k]

    if budget.met(evaluate(0)):
        k = 0
    elif not budget.met(evaluate(len(free))):
        raise UnsupportedVariant(
            f"mixed: budget {budget.describe()} cannot be met even with all {len(free)} unpinned layers in float "
            f"(agreement {cache[len(free)].agreement:.4f}); the pinned-quantized layers lose too much")
    else:
        lo, hi = 0, len(free)  # budget fails at lo, holds at hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if budget.met(evaluate(mid)) else (mid, hi)
        k = hi
    kept = forced + free[:k]
    limit = math.floor(max_kept_fraction * len(layers))
    if len(kept) > limit:
        raise UnsupportedVariant(
            f"mixed: budget {budget.describe()} needs {len(kept)} of {len(layers)} layers kept in float, more than "
            f"max_kept_fraction={max_kept_fraction:g} allows ({limit}); relax the budget or allow more float layers")
    final = cache[k]
    return {
        "budget": budget.describe(), "kept": kept, "quantized": [layer for layer in layers if layer not in kept],
        "pins": pins, "reference": asdict(ref), "scores": asdict(final), "trials": trials,
        "plan": {layer: (KEEP_PIN if layer in kept else PIN_PRECISIONS[1]) for layer in layers},
    }


def mixed_metrics(ranking: list[LayerSensitivity], plan: dict[str, Any], base: str) -> dict[str, Any]:
    """What the result stores: the per-layer sensitivity and the plan (layer → precision)."""
    clean = {k: v for k, v in plan.items() if k != "plan"}
    return {
        "sensitivity": [r.to_dict() for r in ranking],
        "mixed_plan": {layer: (base if p == "quant" else p) for layer, p in plan["plan"].items()},
        "mixed_search": _finite(clean),
    }


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value
