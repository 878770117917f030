"""Two results side by side: each figure of A and B with its unit, B/A and, for the latency, the
interval of that ratio over the timing rounds; and, for two runs, every variant they share.

The app's compare dialog and ``qbench compare A B`` both show this (the same rows, ratios and
intervals); ``comparison`` is the JSON form.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engines.analysis.figures import FRACTION, figure, interval
from engines.analysis.paired import round_p50s
from engines.core.schema import display_label, variant_key

Result = dict[str, Any]


def _lat(key: str) -> Callable[[Result], Any]:
    return lambda r: (r.get("latency_ms") or {}).get(key)


def _agr(key: str) -> Callable[[Result], Any]:
    return lambda r: (r.get("agreement") or {}).get(key)


@dataclass(frozen=True)
class CompareRow:
    label: str
    a: float | None
    b: float | None
    lower_is_better: bool | None  # None: neither direction is "better"
    unit: str = ""
    low: float | None = None  # the interval of B/A over the timing rounds, where there is one
    high: float | None = None
    rounds: int = 0

    @property
    def ratio(self) -> float | None:
        if self.a is None or self.b is None or self.a == 0:
            return None
        if any(isinstance(v, float) and not math.isfinite(v) for v in (self.a, self.b)):
            return None
        return self.b / self.a

    @property
    def verdict(self) -> str:
        """"better", "worse" or "" for B against A (within 2 % counts as the same)."""
        ratio = self.ratio
        if ratio is None or self.lower_is_better is None or abs(ratio - 1) < 0.02:
            return ""
        improved = ratio < 1 if self.lower_is_better else ratio > 1
        return "better" if improved else "worse"

    def text(self) -> tuple[str, str, str]:
        """(A, B, B/A with its interval) in words, units on each."""
        ratio = figure(self.ratio, "×") if self.ratio is not None else "–"
        span = interval(self.low, self.high, "×", self.rounds or None)
        return figure(self.a, self.unit), figure(self.b, self.unit), ratio + (f" ({span})" if span else "")


COMPARE_METRICS: tuple[tuple[str, Callable[[Result], Any], bool | None, str], ...] = (
    ("latency p50", _lat("p50"), True, "ms"),
    ("latency p90", _lat("p90"), True, "ms"),
    ("latency p99", _lat("p99"), True, "ms"),
    ("latency mean", _lat("mean"), True, "ms"),
    ("latency IQR", _lat("iqr"), True, "ms"),
    ("samples", _lat("samples"), None, "calls"),
    ("throughput", lambda r: r.get("throughput_per_s"), False, "items/s"),
    ("cold start", lambda r: r.get("load_s"), True, "s"),
    ("quantize", lambda r: r.get("quantize_s"), True, "s"),
    ("memory", lambda r: r.get("memory_mb"), True, "MB"),
    ("process peak RSS", lambda r: r.get("peak_rss_mb"), True, "MB"),
    ("size on disk", lambda r: r.get("size_mb"), True, "MB"),
    ("accuracy", lambda r: r.get("accuracy"), False, FRACTION),
    ("top-1 agreement", _agr("top1"), False, FRACTION),
    ("SQNR", _agr("sqnr_db"), False, "dB"),
    ("cosine", _agr("cosine"), False, ""),
)


def p50_interval(a: Result, b: Result) -> tuple[float, float, int] | None:
    """The interval of B's p50 over A's across the timing rounds: rounds of one run are paired by
    number (timed moments apart); for two runs, the widest ratio of any round of B to any of A."""
    ra, rb = round_p50s(a), round_p50s(b)
    if len(ra) < 2 and len(rb) < 2:
        return None
    if a.get("run_id") == b.get("run_id") and (paired := [rb[k] / ra[k] for k in ra if k in rb and ra[k]]):
        return min(paired), max(paired), len(paired)
    if not ra or not rb or min(ra.values()) <= 0:
        return None
    return min(rb.values()) / max(ra.values()), max(rb.values()) / min(ra.values()), min(len(ra), len(rb))


def compare(a: Result, b: Result) -> list[CompareRow]:
    rows = [CompareRow(label, get(a), get(b), lower, unit) for label, get, lower, unit in COMPARE_METRICS]
    if (span := p50_interval(a, b)) is not None:
        rows[0] = CompareRow(*[getattr(rows[0], f) for f in ("label", "a", "b", "lower_is_better", "unit")],
                             low=span[0], high=span[1], rounds=span[2])
    return rows


def faster(a: Result, b: Result) -> tuple[str, float] | None:
    """("A" or "B", how many times faster) at the median, or None without both p50s."""
    pa, pb = _lat("p50")(a), _lat("p50")(b)
    if not pa or not pb:
        return None
    return ("B", pa / pb) if pb < pa else ("A", pb / pa)


def match_runs(run_a: Sequence[Result], run_b: Sequence[Result]) -> list[tuple[Result | None, Result | None]]:
    """Pairs of the same model × variant × batch size in two runs (None where one run lacks it)."""
    def key(r: Result) -> tuple:
        return (r["model"], *variant_key(r))

    by_a = {key(r): r for r in run_a}
    by_b = {key(r): r for r in run_b}
    keys = list(by_a) + [k for k in by_b if k not in by_a]
    return [(by_a.get(k), by_b.get(k)) for k in keys]


def describe(r: Result) -> dict[str, Any]:
    """Which result: id, run, model and variant."""
    return {"id": r.get("id"), "run_id": r.get("run_id"), "host": r.get("host"), "model": r["model"],
            "label": display_label(r), "runtime": r["runtime"], "device": r["device"],
            "batch_size": r["batch_size"], "status": r["status"]}


def comparison(a: Result, b: Result, run_a: Sequence[Result] = (), run_b: Sequence[Result] = ()) -> dict[str, Any]:
    """The comparison as JSON: each metric with its unit, A, B, B/A, its interval and the verdict."""
    metrics = [{"metric": row.label, "unit": row.unit, "a": row.a, "b": row.b, "ratio_b_over_a": row.ratio,
                "ratio_low": row.low, "ratio_high": row.high, "rounds": row.rounds or None,
                "lower_is_better": row.lower_is_better, "verdict": row.verdict or None}
               for row in compare(a, b) if row.a is not None or row.b is not None]
    out: dict[str, Any] = {"a": describe(a), "b": describe(b), "metrics": metrics}
    if (fast := faster(a, b)) is not None:
        out["faster"] = {"which": fast[0], "times": fast[1], "at": "p50"}
    if run_a and run_b and a.get("run_id") != b.get("run_id"):
        out["runs"] = [{"variant": describe(ra or rb)["label"], "runtime": (ra or rb)["runtime"],
                        "device": (ra or rb)["device"], "batch_size": (ra or rb)["batch_size"],
                        "a_p50_ms": _lat("p50")(ra) if ra else None, "b_p50_ms": _lat("p50")(rb) if rb else None,
                        "a_accuracy": ra.get("accuracy") if ra else None,
                        "b_accuracy": rb.get("accuracy") if rb else None}
                       for ra, rb in match_runs(run_a, run_b) if (ra or rb) is not None]
    return out
