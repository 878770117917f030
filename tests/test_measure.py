"""The timing loop and the agreement statistics (pure Python/numpy)."""

from __future__ import annotations

import math
import time

import numpy as np

from engines.bench import measure
from engines.bench.measure import LatencyStats, MeasureSettings, agreement, bootstrap_ratio_ci, measure_latency


class _Clock:
    """The timing loop's clock, advanced only by the timed call: the stopping rule is checked
    exactly, whatever the machine's load (a real clock stretches sleeps under load)."""

    def __init__(self) -> None:
        self.ns = 0

    def perf_counter_ns(self) -> int:
        return self.ns


def _call_taking(clock: _Clock, ms: float, calls: list[int]):
    def call() -> None:
        calls.append(clock.ns)
        clock.ns += int(ms * 1e6)
    return call


def test_stops_only_when_both_minimum_count_and_time_are_reached(monkeypatch):
    clock, calls = _Clock(), []
    monkeypatch.setattr(measure, "time", clock)
    settings = MeasureSettings(warmup_reps=3, warmup_s=0.0, min_reps=20, min_time_s=0.05, max_time_s=5)
    stats = measure_latency(_call_taking(clock, 1.0, calls), settings)
    # 1 ms a call: 20 calls reach the count, 50 reach the time; the loop stops at the later one
    assert stats.samples == 50 and len(calls) == 3 + 50  # warm-up calls are not in the samples
    assert stats.mean == 1.0
    calls.clear()
    stats = measure_latency(_call_taking(clock, 10.0, calls), settings)
    assert stats.samples == 20  # 10 ms a call: the time is reached first, the count decides


def test_max_time_caps_a_slow_variant(monkeypatch):
    clock, calls = _Clock(), []
    monkeypatch.setattr(measure, "time", clock)
    settings = MeasureSettings(warmup_reps=1, warmup_s=0.0, min_reps=10_000, min_time_s=0.0, max_time_s=0.05)
    stats = measure_latency(_call_taking(clock, 10.0, calls), settings)
    assert stats.samples == 5  # 50 ms of 10 ms calls, far short of the 10,000 asked for


def test_the_real_clock_times_a_real_sleep():
    settings = MeasureSettings(warmup_reps=1, warmup_s=0.0, min_reps=3, min_time_s=0.0, max_time_s=5)
    stats = measure_latency(lambda: time.sleep(0.005), settings)
    assert stats.samples == 3 and stats.min >= 5.0  # a sleep lasts at least what it asked (load only adds)


def test_phases_and_live_samples_are_reported():
    phases, bursts = [], []
    settings = MeasureSettings(warmup_reps=1, warmup_s=0.0, min_reps=5, min_time_s=0.0, max_time_s=1)
    stats = measure_latency(lambda: None, settings, on_phase=phases.append, on_samples=bursts.append)
    assert phases == ["warm-up", "measure"]
    assert sum(len(b) for b in bursts) == stats.samples


def test_latency_statistics():
    stats = LatencyStats.from_samples_ns(np.arange(1, 101) * 1_000_000)  # 1..100 ms
    assert stats.p50 == 50.5 and stats.min == 1 and stats.max == 100
    assert math.isclose(stats.iqr, 49.5)
    assert stats.p90 < stats.p99 <= 100
    assert stats.noise_warnings()  # IQR is ~100 % of the median


def test_agreement_of_identical_and_perturbed_outputs():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(100, 10))
    same = agreement(ref, ref.copy())
    assert same["top1"] == 1.0 and same["sqnr_db"] == math.inf and math.isclose(same["cosine"], 1.0)
    noisy = agreement(ref, ref + rng.normal(scale=0.1, size=ref.shape))
    assert 15 < noisy["sqnr_db"] < 25  # noise power 1 % of signal -> 20 dB
    assert noisy["top1"] > 0.8


def test_bootstrap_ratio_interval_contains_the_ratio():
    rng = np.random.default_rng(1)
    base, fast = rng.normal(10, 0.5, 200), rng.normal(5, 0.25, 200)
    ratio, lo, hi = bootstrap_ratio_ci(base, fast)
    assert lo < ratio < hi and 1.8 < ratio < 2.2


def test_interleaved_rounds_sample_every_callable_each_round():
    from engines.bench.measure import measure_interleaved

    order = []
    fns = {name: (lambda n=name: order.append(n)) for name in ("a", "b", "c")}
    settings = MeasureSettings(warmup_reps=0, warmup_s=0.0, min_reps=2, min_time_s=0.0, max_time_s=1)
    samples = measure_interleaved(fns, settings, rounds=3)
    assert {k: len(v) for k, v in samples.items()} == {"a": 6, "b": 6, "c": 6}
    # each round measures all three before the next round starts
    rounds = [order[i * 6:(i + 1) * 6] for i in range(3)]
    assert all(sorted(set(r)) == ["a", "b", "c"] for r in rounds)
