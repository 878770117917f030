"""Pure functions over public result dicts: table columns, filtering, sorting, the Pareto
frontier and side-by-side comparison. No Textual here, so all of it is unit-tested directly.

A result's identity and name come from the schema (``engines.core.schema``): ``variant_key``
(recipe × runtime × device × batch size), ``result_key`` (the run plus that) and
``display_label`` (the recipe's short name, e.g. ``int4(g128)``; the method for older results).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from engines.analysis import rules
from engines.analysis.figures import fmt_num
from engines.core.schema import display_label, result_key, variant_key

Result = dict[str, Any]
# Re-exported: the UI imports them from here.
__all__ = ["display_label", "fmt_num", "result_key", "variant_key"]


# --- numbers --------------------------------------------------------------------------------


def fmt_ratio(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"×{value:.2f}"


def fmt_params(n: int | None) -> str:
    if not n:
        return "–"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def fmt_time(iso: str | None) -> str:
    """Stored UTC timestamp as local "YYYY-MM-DD HH:MM"."""
    if not iso:
        return "–"
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds // 60 % 60:02d}"


# --- fields of a result -----------------------------------------------------------------------


def latency(r: Result, key: str = "p50") -> float | None:
    return (r.get("latency_ms") or {}).get(key)


def agreement(r: Result, key: str) -> float | None:
    return (r.get("agreement") or {}).get(key)


def quality(r: Result) -> float | None:
    """The task accuracy where labels exist, else agreement with the float reference
    (:func:`engines.analysis.rules.quality`, the frontier's quality axis in every view)."""
    return rules.quality(r)


def dispersion(r: Result) -> float | None:
    """IQR as a fraction of the median: how noisy the measurement was."""
    p50, iqr = latency(r, "p50"), latency(r, "iqr")
    return iqr / p50 if p50 and iqr is not None else None


def variant_label(r: Result) -> str:
    """The variant in words: recipe label · runtime · device · batch size."""
    return f"{display_label(r)} · {r['runtime']} · {r['device']} · bs {r['batch_size']}"


def _against_fp32(results: Iterable[Result], get: Callable[[Result], float | None],
                  ratio: Callable[[float, float], float]) -> dict[str, float]:
    """``ratio(fp32's value, the result's value)`` for each ok result whose run measured fp32 on
    the same host, runtime, device and batch size (:func:`engines.analysis.rules.fp32_reference`)."""
    results = list(results)
    refs = rules.references(results)
    out = {}
    for r in results:
        ref = refs[id(r)]
        base, own = (get(ref), get(r)) if ref is not None else (None, None)
        if base and own and r["status"] == "ok":
            out[result_key(r)] = ratio(base, own)
    return out


def speedups(results: Iterable[Result]) -> dict[str, float]:
    """p50 speed-up of each ok result over fp32 in the same run, host, runtime, device and batch
    size: the shared rule (:func:`engines.analysis.rules.speedup`, the median of per-round ratios
    where the variant was measured in rounds beside fp32)."""
    results = list(results)
    refs = rules.references(results)
    out = {}
    for r in results:
        s = rules.speedup(refs[id(r)], r) if r["status"] == "ok" else None
        if s:
            out[result_key(r)] = s["ratio"]
    return out


def size_ratios(results: Iterable[Result]) -> dict[str, float]:
    """Size on disk of each ok result as a fraction of fp32's in the same run, runtime, device and
    batch size (0.25: a quarter of the float model)."""
    return _against_fp32(results, lambda r: r.get("size_mb"), lambda base, own: own / base)


# --- table columns --------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    value: Callable[[Result, dict[str, Any]], Any]  # (result, context) -> sortable value
    text: Callable[[Result, dict[str, Any]], str]
    numeric: bool = False
    width: int | None = None
    # Narrow tables keep the columns of the lowest priority numbers (1: always shown), and shorten
    # an identifier column with a ``shrink`` width to it before dropping anything.
    priority: int = 5
    shrink: int | None = None


def _ctx_speedup(r: Result, ctx: dict[str, Any]) -> float | None:
    return ctx.get("speedups", {}).get(result_key(r))


def _run_time(r: Result, ctx: dict[str, Any]) -> str:
    run = ctx.get("runs", {}).get(r.get("run_id")) or {}
    return run.get("created_at") or r.get("started_at") or ""


def _clip(text: str, width: int) -> str:
    """At most ``width`` characters, an ellipsis saying that the rest is in the detail."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _note(r: Result) -> str:
    if r.get("error"):
        return str(r["error"])
    flags = [f.upper() for f in r.get("flags") or []]  # unstable, under-load, simulated: read first
    return "; ".join(flags + list(r.get("notes") or []))


def _num_col(key: str, label: str, get: Callable[[Result], Any], digits: int | None = None,
             priority: int = 5) -> Column:
    return Column(key, label, lambda r, c: get(r), lambda r, c: fmt_num(get(r), digits), numeric=True,
                  priority=priority)


def fmt_id(r: Result) -> str:
    """The stored result's id (what export, serve and version take); "–" for one not stored yet."""
    return "–" if r.get("id") is None else str(r["id"])


COLUMNS: tuple[Column, ...] = (
    Column("id", "id", lambda r, c: r.get("id"), lambda r, c: fmt_id(r), numeric=True, priority=2),
    Column("when", "when", _run_time, lambda r, c: fmt_time(_run_time(r, c))[5:], width=11, priority=6),
    Column("model", "model", lambda r, c: r["model"], lambda r, c: r["model"], priority=2, shrink=8),
    Column("method", "method", lambda r, c: display_label(r), lambda r, c: display_label(r), priority=1, shrink=12),
    Column("runtime", "runtime", lambda r, c: r["runtime"], lambda r, c: r["runtime"], priority=4, shrink=4),
    Column("device", "dev", lambda r, c: r["device"], lambda r, c: r["device"], priority=3, shrink=4),
    _num_col("batch_size", "bs", lambda r: r["batch_size"], priority=4),
    Column("status", "status", lambda r, c: r["status"], lambda r, c: r["status"], priority=2),
    _num_col("p50", "p50 ms", lambda r: latency(r, "p50"), priority=1),
    _num_col("p99", "p99 ms", lambda r: latency(r, "p99"), priority=3),
    Column("iqr", "IQR", lambda r, c: dispersion(r),
           lambda r, c: "–" if dispersion(r) is None else f"{dispersion(r):.0%}", numeric=True, priority=5),
    Column("speedup", "vs fp32", _ctx_speedup, lambda r, c: fmt_ratio(_ctx_speedup(r, c)), numeric=True, priority=1),
    _num_col("throughput", "items/s", lambda r: r.get("throughput_per_s"), 0, priority=4),
    _num_col("size", "MB", lambda r: r.get("size_mb"), priority=2),
    _num_col("accuracy", "acc", lambda r: r.get("accuracy"), 3, priority=1),
    _num_col("top1", "top1", lambda r: agreement(r, "top1"), 3, priority=4),
    _num_col("sqnr", "SQNR", lambda r: agreement(r, "sqnr_db"), 1, priority=5),
    _num_col("load", "load s", lambda r: r.get("load_s"), priority=6),
    # The variant's own memory; the process peak is a detail.
    _num_col("rss", "mem MB", lambda r: r.get("memory_mb"), 0, priority=5),
    Column("note", "note", lambda r, c: _note(r), lambda r, c: _clip(_note(r), 80), priority=4, shrink=16),
)
COLUMN_BY_KEY = {c.key: c for c in COLUMNS}
# Shown after "dev" once the store holds results from more than one machine (a fleet).
HOST_COLUMN = Column("host", "host", lambda r, c: r.get("host") or "", lambda r, c: r.get("host") or "", priority=3,
                     shrink=8)


# --- filter and sort ------------------------------------------------------------------------

FILTER_FIELDS = ("model", "method", "runtime", "device", "status")


@dataclass(frozen=True)
class ResultFilter:
    """Which results the table shows. ``None`` means any; ``text`` matches any visible field."""

    text: str = ""
    model: str | None = None
    method: str | None = None
    runtime: str | None = None
    device: str | None = None
    status: str | None = None
    run_id: str | None = None

    def with_(self, **changes: Any) -> ResultFilter:
        return replace(self, **changes)

    @property
    def active(self) -> bool:
        return bool(self.text) or any(getattr(self, f) for f in (*FILTER_FIELDS, "run_id"))

    def matches(self, r: Result) -> bool:
        for name in FILTER_FIELDS:
            wanted = getattr(self, name)
            if wanted is not None and r.get(name) != wanted:
                return False
        if self.run_id is not None and r.get("run_id") != self.run_id:
            return False
        if self.text:
            haystack = " ".join(
                str(v) for v in (r.get("run_id"), r["model"], display_label(r), r["method"], r["runtime"],
                                 r["device"], r["status"], r.get("host") or "", r.get("error") or "", " ".join(r.get("notes") or []),
                                 f"bs{r['batch_size']}")
            ).lower()
            return all(word in haystack for word in self.text.lower().split())
        return True


def filter_results(results: Iterable[Result], flt: ResultFilter) -> list[Result]:
    return [r for r in results if flt.matches(r)]


def sort_results(results: Sequence[Result], column: str | None, reverse: bool = False,
                 context: dict[str, Any] | None = None) -> list[Result]:
    """Stable sort by a column; missing values always go last, whatever the direction."""
    if column is None:
        return list(results)
    col = COLUMN_BY_KEY[column]
    ctx = context or {}
    present = [r for r in results if col.value(r, ctx) is not None]
    missing = [r for r in results if col.value(r, ctx) is None]
    present.sort(key=lambda r: col.value(r, ctx), reverse=reverse)
    return present + missing


# --- Pareto frontier ------------------------------------------------------------------------


def pareto_frontier(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower x (cost) and higher y (quality), in order
    of increasing x (:func:`engines.analysis.rules.pareto`)."""
    return rules.pareto(points)


def chart_models(results: Sequence[Result]) -> list[str]:
    """The models a chart can show (one at a time: a frontier never mixes models)."""
    return sorted({str(r["model"]) for r in results if r.get("model") is not None})


def frontier_results(results: Sequence[Result], x: str = "p50", model: str | None = None
                     ) -> tuple[list[Result], list[Result]]:
    """(plotted ok results with both values, the frontier among them) for latency or size: of
    ``model`` when given, else each model's frontier (:func:`engines.analysis.rules.frontier`).
    Export validations are not plotted (they are not variants of a sweep)."""
    def xval(r: Result) -> float | None:
        return latency(r, "p50") if x == "p50" else r.get("size_mb")

    plotted = [r for r in results if r["status"] == "ok" and xval(r) is not None and quality(r) is not None
               and not rules.is_validation(r) and (model is None or r.get("model") == model)]
    return plotted, rules.frontier(plotted, xval)


# --- comparison: engines.analysis.compare (the CLI's `compare` shows the same) -----------------

_COMPARE_NAMES = ("COMPARE_METRICS", "CompareRow", "compare", "match_runs")


def __getattr__(name: str) -> Any:
    """The comparison's names, imported when first asked for (not on the way to the first frame)."""
    if name in _COMPARE_NAMES:
        from engines.analysis import compare as comparison

        return getattr(comparison, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- a model's history ----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelHistory:
    runs: int
    measurements: int
    last_run: str | None
    best: list[Result]  # the fastest ok result per variant (recipe × runtime × device × batch size)


def model_history(results: Iterable[Result], model: str, runs: dict[str, dict[str, Any]]) -> ModelHistory:
    mine = [r for r in results if r["model"] == model]
    run_ids = {r.get("run_id") for r in mine}
    times = [runs.get(rid, {}).get("created_at") for rid in run_ids]
    best: dict[tuple, Result] = {}
    for r in mine:
        if r["status"] != "ok" or latency(r) is None:
            continue
        k = variant_key(r)
        if k not in best or latency(r) < latency(best[k]):  # type: ignore[operator]
            best[k] = r
    ordered = sorted(best.values(), key=lambda r: latency(r) or 0.0)
    return ModelHistory(len(run_ids), len(mine), max((t for t in times if t), default=None), ordered)
