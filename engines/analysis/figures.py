"""Figures in words: a number with its unit (and its interval), for the app, the CLI and reports.

Plain strings, no UI library. ``fmt_num`` is the project's one number format (adaptive precision);
``figure`` adds the unit; ``metric`` names the unit of a stored ``metrics`` entry from its key
and formats what it holds (a ratio with its interval, a breakdown, a plain number).
"""

from __future__ import annotations

import math
from typing import Any

FRACTION = "fraction"  # a share in [0, 1], shown as a percentage


def fmt_num(value: Any, digits: int | None = None) -> str:
    """Readable number: adaptive precision, "–" for missing, "∞" for an exact match's SQNR."""
    if value is None:
        return "–"
    if isinstance(value, float) and math.isnan(value):
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if digits is not None:
        return f"{value:,.{digits}f}"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def figure(value: Any, unit: str) -> str:
    """``value`` with its unit: "0.065 ms", "97.8 %" (a fraction), "×1.88" (a ratio), "–" when missing."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return "–" if value is None else str(value)
    if unit == FRACTION:
        return f"{value:.1%}".replace("%", " %") if math.isfinite(value) else fmt_num(value)
    if unit == "×":
        return f"×{value:.2f}" if math.isfinite(value) else "–"
    return f"{fmt_num(value)} {unit}".rstrip()


def interval(low: float | None, high: float | None, unit: str, rounds: int | None = None) -> str:
    """"×1.87–×1.90 over 6 rounds" (empty when there is no interval)."""
    if low is None or high is None:
        return ""
    span = f"{figure(low, unit)}–{figure(high, unit)}"
    return f"{span} over {rounds} rounds" if rounds else span


# Unit of a metrics entry by its key's ending; the first match wins.
_UNIT_BY_SUFFIX = (("_ms", "ms"), ("_mb", "MB"), ("_gb", "GB"), ("_s", "s"), ("_db", "dB"), ("_cores", "cores"),
                   ("_pct", "%"), ("_per_s", "/s"), ("_bits", "bits"))
_UNIT_BY_KEY = {"speedup_vs_fp32": "×", "top5_agreement": FRACTION, "reference_accuracy": FRACTION,
                "cosine": "", "other_cpu_cores": "cores of other processes"}


def metric_unit(key: str) -> str:
    if key in _UNIT_BY_KEY:
        return _UNIT_BY_KEY[key]
    if key.endswith(("_agreement", "_accuracy", "_share", "_fraction")):
        return FRACTION
    return next((unit for suffix, unit in _UNIT_BY_SUFFIX if key.endswith(suffix)), "")


def metric(key: str, value: Any) -> str:
    """A stored metric in words, its unit from its key: {"ratio", "low", "high", "rounds"} becomes
    "×1.88 (×1.87–×1.90 over 6 rounds)", a dict of numbers "name value unit, …"."""
    unit = metric_unit(key)
    if isinstance(value, dict):
        if "ratio" in value:
            span = interval(value.get("low"), value.get("high"), "×", value.get("rounds"))
            return figure(value["ratio"], "×") + (f" ({span})" if span else "")
        return ", ".join(f"{k} {metric(k if metric_unit(k) else key, v)}" for k, v in value.items()) or "–"
    if isinstance(value, (list, tuple)):
        return ", ".join(metric(key, v) for v in value) or "–"
    if value is None:
        return "– (not measured here)"
    return figure(value, unit)
