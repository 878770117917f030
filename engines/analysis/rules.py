"""The analysis rules, defined once: which result is the float reference, which fp32 result a
variant is compared with, its speed-up (with an interval), the quality bars, and the Pareto walk.

Every view calls these: the sweep's runner (the paired speed-up it stores), the tracking sender,
``recommend``, ``insights``, the device choice, the report, export (``pick_best`` and the
validation's verdict), the store's frontier query and the app (its speed-up column and its Pareto
star). Plain dicts in (``Result.to_dict()`` rows); nothing heavy is imported (the app imports it).

Which results a view pools is explicit: a speed-up compares two results of one run unless the
caller asks for ``across_runs`` (then the newest fp32 of the same model, host, runtime, device and
batch size stands in, and the speed-up says ``same_run: False``); export validations are never a
reference nor part of a model's frontier (:func:`is_validation`); a frontier is per model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from engines.analysis.paired import speedup as paired_speedup
from engines.core.schema import UNSTABLE_SPREAD

Result = dict[str, Any]

QUALITY_BARS: dict[str, float] = {"top1": 0.99, "cosine": 0.98}
"""What "keeps the model's answers" means, for every view (recommend's default budget, the device
choice, export's ``pick_best`` and its validation verdict):

* top-1 agreement with fp32 ≥ 0.99: at most one answer in a hundred changes, the same as the
  default accuracy budget of one point (so a variant that keeps quality by one view keeps it by
  all). 0.95, the device choice's old bar, let one answer in twenty change.
* cosine ≥ 0.98 for embeddings (whose top-1 is a retrieval neighbour): what int8 reaches on
  MiniLM with ONNX Runtime, with its neighbours unchanged; 0.99 refused that standard variant.
"""

COSINE_TASKS = ("embedding", "generic")  # tasks judged by cosine (no classes to agree on)


# --- the reference ------------------------------------------------------------------------------

_reference_names: tuple[int, frozenset[str]] = (-1, frozenset())


def reference_methods() -> frozenset[str]:
    """Names of the registered methods that transform nothing (the float reference), read from
    each method's spec (``register_method(..., is_reference=True)``)."""
    global _reference_names
    from engines.methods import registry

    if registry._METHODS and _reference_names[0] == len(registry._METHODS):
        return _reference_names[1]
    methods = registry.all_methods()
    names = frozenset(name for name, spec in methods.items() if spec.is_reference)
    _reference_names = (len(registry._METHODS), names)
    return names


def is_reference(r: Result) -> bool:
    """The result measures the float model itself: every step of its recipe transforms nothing."""
    steps = r.get("recipe") or [{"method": r.get("method")}]
    names = reference_methods()
    return bool(steps) and all(step.get("method") in names for step in steps)


def is_validation(r: Result) -> bool:
    """An export's validation (stored as a result of its own): never a reference, never `latest`,
    never part of a model's frontier or a device's evidence."""
    return "export" in (r.get("metrics") or {})


def measured(results: Iterable[Result]) -> list[Result]:
    """The results a sweep measured (export validations left out)."""
    return [r for r in results if not is_validation(r)]


def reference_key(r: Result) -> tuple[Any, ...]:
    """What a variant and its fp32 reference share: model, host, runtime, device and batch size."""
    return (r.get("model"), r.get("host"), r.get("runtime"), r.get("device"), r.get("batch_size"))


def _newest(results: Iterable[Result]) -> Result:
    return max(results, key=lambda f: (f.get("finished_at") or "", f.get("id") or 0))


def fp32_reference(r: Result, candidates: Iterable[Result], *, across_runs: bool = False) -> Result | None:
    """The ok reference result ``r`` is compared with: the same :func:`reference_key`, of the same
    run; with ``across_runs``, the newest of any run when its own run has none."""
    key = reference_key(r)
    same = [f for f in candidates if f.get("status") == "ok" and reference_key(f) == key and is_reference(f)
            and not is_validation(f)]
    own = [f for f in same if f.get("run_id") == r.get("run_id")]
    if own:
        return _newest(own)
    return _newest(same) if across_runs and same else None


def references(results: Iterable[Result], *, across_runs: bool = False) -> dict[Any, Result | None]:
    """``id(result) -> its reference`` for many results at once (one pass over the candidates)."""
    results = list(results)
    by_key: dict[tuple[Any, ...], list[Result]] = {}
    for f in results:
        if f.get("status") == "ok" and not is_validation(f) and is_reference(f):
            by_key.setdefault(reference_key(f), []).append(f)
    out: dict[Any, Result | None] = {}
    for r in results:
        same = by_key.get(reference_key(r), [])
        own = [f for f in same if f.get("run_id") == r.get("run_id")]
        out[id(r)] = _newest(own) if own else (_newest(same) if across_runs and same else None)
    return out


# --- speed-ups ----------------------------------------------------------------------------------


def speedup(ref: Result | None, r: Result) -> dict[str, Any] | None:
    """``{"ratio", "low", "high", "rounds", "same_run"}``: how many times faster ``r`` is than ``ref``.

    The paired value the sweep stored (the median of the per-round ratios, their range as the
    interval) when the two share a run; else the rounds are paired by number here (the ratio of
    the medians when they share none). 1.0 for the reference itself."""
    if ref is None:
        return None
    same_run = ref.get("run_id") == r.get("run_id")
    if ref is r or (ref.get("id") is not None and ref.get("id") == r.get("id")):
        return {"ratio": 1.0, "low": 1.0, "high": 1.0, "rounds": 0, "same_run": True}
    stored = (r.get("metrics") or {}).get("speedup_vs_fp32")  # against its own runtime's fp32 only
    own = is_reference(ref) and reference_key(ref) == reference_key(r)
    if isinstance(stored, dict) and same_run and own and stored.get("ratio"):
        return {**{k: stored.get(k) for k in ("ratio", "low", "high", "rounds")}, "same_run": True}
    paired = paired_speedup(ref, r)
    return {**paired, "same_run": same_run} if paired else None


def speedup_over(ref: Result | None, r: Result) -> dict[str, Any] | None:
    """:func:`speedup` with the reference's own steadiness beside it: ``ref_spread`` (its rounds'
    p50s, (max - min) / median) and ``ref_unsteady`` (that spread above the house's
    ``UNSTABLE_SPREAD``: a noisy reference moves every ratio taken against it; the paired ratio
    and its interval are then the figures to read, not the two medians)."""
    found = speedup(ref, r)
    if found is None or ref is None:
        return found
    ref_spread = ref.get("spread")
    return {**found, "ref_spread": ref_spread,
            "ref_unsteady": bool(ref_spread is not None and ref_spread > UNSTABLE_SPREAD)}


def fmt_speedup(s: dict[str, Any] | None) -> str:
    """``2.41× [2.30–2.52]`` (the interval where rounds were paired), ``n/a`` without a reference."""
    if not s:
        return "n/a"
    interval = f" [{s['low']:.2f}–{s['high']:.2f}]" if s.get("rounds") and s["low"] != s["high"] else ""
    return f"{s['ratio']:.2f}×{interval}" + ("" if s.get("same_run", True) else " (fp32 of another run)")


# --- quality --------------------------------------------------------------------------------------


def agreement(r: Result, task: str | None = None) -> tuple[str, float] | None:
    """(``"top-1"`` | ``"cosine"``, value): the agreement with fp32 a result is judged by.
    Embeddings (the task, or a result with ``metrics.cosine_mean``) by cosine, others by top-1."""
    a = r.get("agreement") or {}
    by_cosine = task in COSINE_TASKS if task is not None else "cosine_mean" in (r.get("metrics") or {})
    for key in (("cosine", "top1") if by_cosine else ("top1", "cosine")):
        if a.get(key) is not None:
            return ("cosine" if key == "cosine" else "top-1"), a[key]
    return None


def meets_bar(kind: str, value: float | None) -> bool | None:
    """Whether an agreement figure of ``kind`` ("top-1" or "cosine") clears its quality bar."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(value >= QUALITY_BARS["cosine" if kind == "cosine" else "top1"])


def bar_text(kind: str) -> str:
    return f"cosine ≥ {QUALITY_BARS['cosine']}" if kind == "cosine" else f"top-1 ≥ {QUALITY_BARS['top1']}"


def agrees(figures: dict[str, Any] | None, task: str | None = None) -> bool | None:
    """The verdict on an agreement dict (``{"top1", "cosine", ...}``): None when it has no figure."""
    found = agreement({"agreement": figures or {}}, task)
    return None if found is None else meets_bar(*found)


def keeps_quality(r: Result, task: str | None = None) -> bool:
    """The result keeps the model's answers: the reference always; else its agreement with fp32
    clears :data:`QUALITY_BARS` (a result without an agreement figure does not)."""
    if is_reference(r):
        return True
    found = agreement(r, task)
    return bool(found and meets_bar(*found))


def quality(r: Result) -> float | None:
    """The frontier's quality axis (higher is better): task accuracy where measured, else top-1
    agreement with fp32, else cosine; 1.0 for the reference without either."""
    if r.get("accuracy") is not None:
        return r["accuracy"]
    a = r.get("agreement") or {}
    for key in ("top1", "cosine"):
        if a.get(key) is not None:
            return a[key]
    return 1.0 if is_reference(r) else None


# --- the Pareto frontier --------------------------------------------------------------------------


def pareto(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, quality) points no other point beats, in order of increasing cost.

    A point is dominated when another is at least as cheap and at least as good, and better on
    one; among equal costs the best quality comes first (and ties keep their given order)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    frontier: list[int] = []
    best = -math.inf
    for i in order:
        if points[i][1] > best:
            frontier.append(i)
            best = points[i][1]
    return frontier


def frontier(results: Sequence[Result], cost) -> list[Result]:
    """The frontier of ok, measured results (cost: a function of a result, lower is better; quality:
    :func:`quality`), per model: each model's frontier, concatenated in model order."""
    out: list[Result] = []
    for model in sorted({str(r.get("model")) for r in results}):
        mine = [r for r in results if str(r.get("model")) == model and r.get("status") == "ok"
                and not is_validation(r) and cost(r) is not None and quality(r) is not None]
        out += [mine[i] for i in pareto([(cost(r), quality(r)) for r in mine])]  # type: ignore[misc]
    return out
