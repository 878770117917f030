"""Timing and agreement statistics, in plain Python and numpy (no engine imports).

The latency loop times every call on its own (``perf_counter_ns`` around one inference), which
keeps the tail percentiles; ``bench/harness_overhead.py`` measures what the loop itself costs by
timing a no-op through :func:`measure_latency`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class MeasureSettings:
    """When to stop: both ``min_reps`` and ``min_time_s`` must be reached (or ``max_time_s``).

    ``repeat`` splits the timing into that many rounds, interleaved with the sweep's other
    variants (engines.bench.rounds); the time and repetitions above are the whole budget, shared
    by the rounds, so more rounds cost little more than one block."""

    warmup_reps: int = 10
    warmup_s: float = 0.2
    min_reps: int = 30
    min_time_s: float = 1.0
    max_time_s: float = 20.0
    max_reps: int = 1_000_000
    repeat: int = 3  # engines.bench.rounds.DEFAULT_REPEAT, which says why

    def __post_init__(self) -> None:
        if self.min_reps < 1 or self.min_time_s < 0 or self.max_time_s < self.min_time_s:
            raise ValueError("need min_reps >= 1 and 0 <= min_time_s <= max_time_s")
        if not 1 <= self.repeat <= 100:
            raise ValueError("repeat must be between 1 and 100")

    def for_round(self, first: bool) -> MeasureSettings:
        """One round's share: the budget divided by ``repeat``; a full warm-up before the first
        round only (later ones re-warm caches the other variants used for a tenth of it)."""
        k = self.repeat
        return MeasureSettings(
            warmup_reps=self.warmup_reps if first else max(1, self.warmup_reps // 5),
            warmup_s=self.warmup_s if first else self.warmup_s / 10,
            min_reps=max(1, -(-self.min_reps // k)), min_time_s=self.min_time_s / k,
            max_time_s=self.max_time_s / k, max_reps=self.max_reps, repeat=1,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency in milliseconds."""

    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    iqr: float
    min: float
    max: float
    samples: int

    @classmethod
    def from_samples_ns(cls, samples_ns: list[int] | np.ndarray) -> LatencyStats:
        import numpy as np

        ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
        p25, p50, p75, p90, p99 = np.percentile(ms, [25, 50, 75, 90, 99])
        return cls(
            p50=float(p50), p90=float(p90), p99=float(p99), mean=float(ms.mean()),
            std=float(ms.std(ddof=1)) if len(ms) > 1 else 0.0, iqr=float(p75 - p25),
            min=float(ms.min()), max=float(ms.max()), samples=len(ms),
        )

    def noise_warnings(self) -> list[str]:
        """pyperf-style red flags: the figures are not to be trusted without a second look."""
        warnings = []
        if self.p50 > 0 and self.iqr / self.p50 > 0.10:
            warnings.append(f"noisy: IQR is {self.iqr / self.p50:.0%} of the median")
        if self.samples < 100:
            warnings.append(f"p99 from only {self.samples} samples")
        return warnings

    def to_dict(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items()}


def measure_latency(
    fn: Callable[[], Any],
    settings: MeasureSettings,
    on_phase: Callable[[str], None] | None = None,
    on_samples: Callable[[list[float]], None] | None = None,
    report_every_s: float = 0.25,
    keep_samples_ns: list[int] | None = None,
) -> LatencyStats:
    """Warm up, then time ``fn`` call by call until the stopping rule holds.

    ``on_samples`` receives the latest latencies (ms) every ``report_every_s`` for live traces;
    it runs between timed calls, never inside one. ``keep_samples_ns`` receives every raw
    sample (for bootstrap intervals in benchmark scripts).
    """
    clock = time.perf_counter_ns
    if on_phase:
        on_phase("warm-up")
    start = clock()
    reps = 0
    while reps < settings.warmup_reps or (clock() - start) < settings.warmup_s * 1e9:
        fn()
        reps += 1
        if (clock() - start) > settings.max_time_s * 1e9:
            break
    if on_phase:
        on_phase("measure")
    samples: list[int] = []
    pending: list[float] = []
    min_ns, max_ns = settings.min_time_s * 1e9, settings.max_time_s * 1e9
    begin = last_report = clock()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        samples.append(t1 - t0)
        elapsed = t1 - begin
        if on_samples is not None:
            pending.append((t1 - t0) / 1e6)
            if t1 - last_report > report_every_s * 1e9:
                on_samples(pending)
                pending = []
                last_report = clock()
        if len(samples) >= settings.max_reps or elapsed >= max_ns:
            break
        if len(samples) >= settings.min_reps and elapsed >= min_ns:
            break
    if on_samples is not None and pending:
        on_samples(pending)
    if keep_samples_ns is not None:
        keep_samples_ns.extend(samples)
    return LatencyStats.from_samples_ns(samples)


def measure_interleaved(
    fns: dict[Any, Callable[[], Any]], settings: MeasureSettings, rounds: int
) -> dict[Any, list[int]]:
    """Raw samples (ns) of several callables measured in interleaved rounds, shuffled each round
    with a fixed seed, so that slow drift of a shared machine hits every variant alike."""
    import random

    samples: dict[Any, list[int]] = {key: [] for key in fns}
    keys = list(fns)
    for round_index in range(rounds):
        random.Random(round_index).shuffle(keys)
        for key in keys:
            measure_latency(fns[key], settings, keep_samples_ns=samples[key])
    return samples


# --- agreement with the float reference -------------------------------------------------------


def sqnr_db(reference: np.ndarray, output: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when identical)."""
    import numpy as np

    ref = reference.astype(np.float64).ravel()
    noise = ref - output.astype(np.float64).ravel()
    noise_power = float(np.sum(noise * noise))
    if noise_power == 0.0:
        return math.inf
    return 10.0 * math.log10(float(np.sum(ref * ref)) / noise_power)


def mean_cosine(reference: np.ndarray, output: np.ndarray) -> float:
    """Mean over samples of the cosine similarity between output vectors."""
    import numpy as np

    a = reference.reshape(len(reference), -1).astype(np.float64)
    b = output.reshape(len(output), -1).astype(np.float64)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    denom[denom == 0] = 1.0
    return float(np.mean(np.sum(a * b, axis=1) / denom))


def top1_agreement(reference: np.ndarray, output: np.ndarray) -> float:
    import numpy as np

    return float(np.mean(reference.argmax(axis=-1) == output.argmax(axis=-1)))


def agreement(reference: np.ndarray, output: np.ndarray) -> dict[str, float]:
    return {
        "top1": top1_agreement(reference, output),
        "sqnr_db": sqnr_db(reference, output),
        "cosine": mean_cosine(reference, output),
    }


def bootstrap_ratio_ci(
    baseline_ms: np.ndarray, variant_ms: np.ndarray, n: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """Speedup (median baseline / median variant) with a 95 % bootstrap interval."""
    import numpy as np

    rng = np.random.default_rng(seed)
    a, b = np.asarray(baseline_ms), np.asarray(variant_ms)
    ratio = float(np.median(a) / np.median(b))
    ia = rng.integers(0, len(a), size=(n, len(a)))
    ib = rng.integers(0, len(b), size=(n, len(b)))
    boots = np.median(a[ia], axis=1) / np.median(b[ib], axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return ratio, float(lo), float(hi)
