"""The timing loop and the agreement statistics (pure Python/numpy)."""

from __future__ import annotations

import math
import time

import numpy as np

from engines.bench.measure import LatencyStats, MeasureSettings, agreement, bootstrap_ratio_ci, measure_latency


def test_stops_only_when_both_minimum_count_and_time_are_reached():
    settings = MeasureSettings(warmup_reps=3, warmup_s=0.0, min_reps=20, min_time_s=0.05, max_time_s=5)
    calls = []
    stats = measure_latency(lambda: calls.append(time.sleep(0.001)), settings)
    assert stats.samples >= 20
    assert sum(1 for _ in calls) >= 23  # warm-up calls are not in the samples
    assert stats.samples * stats.mean >= 50 * 0.9  # about min_time_s of measured time, in ms


def test_max_time_caps_a_slow_variant():
    settings = MeasureSettings(warmup_reps=1, warmup_s=0.0, min_reps=10_000, min_time_s=0.0, max_time_s=0.05)
    stats = measure_latency(lambda: time.sleep(0.01), settings)
    assert 1 <= stats.samples < 20


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
