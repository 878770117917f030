"""Repeated timing rounds: how a variant's rounds become one result (speed-ups between variants pair
the rounds in engines/analysis/paired.py).

A sweep with ``--repeat K`` times every variant K times in short blocks, interleaved across the
sweep's variants in a shuffled order, so that a slowdown of the machine lasting seconds hits all
variants alike instead of one. Each round gives its own statistics; the result reports the median
of the rounds' statistics, the spread of their medians, and whether other processes used the CPU
while a round was timed. Plain Python (the CLI and the app use it without numpy).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from typing import Any

from engines.core.schema import LATENCY_KEYS, UNSTABLE_SPREAD

# A round is "under load" when other processes used more than half a core on average while it
# was timed: with the pool sized to the physical cores, that much stolen time shows in the median.
LOAD_THRESHOLD_CORES = 0.5

DEFAULT_REPEAT = 3
"""Three rounds: the fewest that give a median robust to one disturbed round and a spread to judge
it by. The timing time is split across the rounds (not multiplied), and each variant stays loaded
between them, so a sweep with three rounds takes about as long as one with a single block."""


def round_order(keys: Sequence[Any], round_index: int, seed: int = 0) -> list[Any]:
    """The variants' order in one round: a shuffle, reproducible from the round's number."""
    order = list(keys)
    random.Random(seed * 1_000_003 + round_index).shuffle(order)
    return order


def under_load(round_: dict[str, Any]) -> bool:
    other = round_.get("other_cpu")
    return other is not None and other > LOAD_THRESHOLD_CORES


def spread(values: Sequence[float]) -> float | None:
    """(max - min) / median; None with fewer than two values."""
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return None
    mid = statistics.median(values)
    return (max(values) - min(values)) / mid if mid > 0 else None


def quiet_rounds(rounds: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rounds measured without a busy neighbour, when at least two were (a median and a
    spread need two); otherwise all of them (and the result is flagged ``under-load``)."""
    quiet = [r for r in rounds if not under_load(r)]
    return quiet if len(quiet) >= 2 else list(rounds)


def combine(rounds: Sequence[dict[str, Any]]) -> tuple[dict[str, float], float | None, list[str]]:
    """(latency stats, spread, flags) of a variant's rounds at one batch size.

    Each latency statistic is the median of the rounds' values (``p50`` is the median of the
    medians); ``samples`` is their sum. Rounds under load are left out when quiet ones exist."""
    used = quiet_rounds(rounds)
    latency: dict[str, float] = {}
    for key in LATENCY_KEYS:
        values = [r["latency"][key] for r in used if r.get("latency") and r["latency"].get(key) is not None]
        if values:
            latency[key] = sum(values) if key == "samples" else statistics.median(values)
    if "samples" in latency:
        latency["samples"] = int(latency["samples"])
    s = spread([r["latency"]["p50"] for r in used if r.get("latency")])
    flags = []
    if s is not None and s > UNSTABLE_SPREAD:
        flags.append("unstable")
    if all(under_load(r) for r in used):
        flags.append("under-load")
    return latency, s, flags
