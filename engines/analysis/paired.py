"""Paired rounds: how two results timed in the same interleaved rounds give one speed-up.

The sweep times every variant in short rounds, interleaved (engines/bench/rounds.py); here a ratio
pairs the two results' rounds by number, so load that lasts seconds cancels out of each pair. The
analysis rules (rules.py: which fp32 a result is compared with) and the side-by-side comparison
(compare.py) read rounds through these two functions only. Plain Python.
"""

from __future__ import annotations

import statistics
from typing import Any


def round_p50s(result: dict[str, Any]) -> dict[int, float]:
    """Round number -> p50 of each of a result's rounds (or its single p50 when it has none).

    All rounds, loaded or not: a ratio pairs two blocks timed moments apart, so load that lasts
    seconds cancels out of it, and the median over the pairs outvotes a block it did not."""
    rounds = result.get("rounds") or []
    if not rounds:
        p50 = (result.get("latency_ms") or {}).get("p50")
        return {0: p50} if p50 else {}
    return {r["round"]: r["latency"]["p50"] for r in rounds if r.get("latency")}


def speedup(baseline: dict[str, Any], variant: dict[str, Any]) -> dict[str, float] | None:
    """How many times faster ``variant`` is than ``baseline``: the median of the per-round ratios.

    Rounds are paired by number (both were timed in the same round, minutes apart at most), so
    a slow stretch of the machine cancels out of each ratio. Falls back to the ratio of the
    medians when the two share no round. Returns {"ratio", "low", "high", "rounds"} or None."""
    base, var = round_p50s(baseline), round_p50s(variant)
    paired = [base[r] / var[r] for r in base if r in var and var[r] > 0]
    if paired:
        return {"ratio": statistics.median(paired), "low": min(paired), "high": max(paired), "rounds": len(paired)}
    b, v = (baseline.get("latency_ms") or {}).get("p50"), (variant.get("latency_ms") or {}).get("p50")
    if b and v:
        return {"ratio": b / v, "low": b / v, "high": b / v, "rounds": 0}
    return None
