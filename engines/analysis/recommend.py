"""What to ship for a model: the best recipe × runtime × device for an objective within a quality
budget, the runners-up on the Pareto frontier, and the reasons in words.

Plain dicts in (``Result.to_dict()`` rows of one model, any number of runs), plain dicts out; the
CLI, the app and the HTML report share it. The rules (the fp32 reference, speed-ups, quality bars,
the Pareto walk) are :mod:`engines.analysis.rules`. Each variant is compared with fp32 on the same
host, runtime, device and batch size: of the same run when there is one (its speed-up is then the
median of the per-round ratios, with their range as the interval), else the newest (the pool is a
model's sweeps; the speed-up then says ``same_run: False``). Export validations are left out.
"""

from __future__ import annotations

from typing import Any

from engines.analysis import rules
from engines.analysis.rules import agreement, fmt_speedup  # noqa: F401 - re-exported for the views
from engines.analysis.placement import not_on_its_device
from engines.core.schema import variant_key

OBJECTIVES = ("latency", "throughput", "size", "memory", "energy")
DEFAULT_MAX_DROP = 1.0  # accuracy points
OBJECTIVE_WORDS = {"latency": "p50 latency", "throughput": "throughput", "size": "size on disk",
                   "memory": "memory", "energy": "energy per inference"}


class RecommendationError(ValueError):
    """Bad arguments (unknown objective, both budgets given)."""


def label(r: dict[str, Any]) -> str:
    return r.get("label") or r["method"]


def latest(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest result of each variant (recipe × runtime × device × batch size) a sweep measured
    (export validations are not measurements of a variant: they never become the latest)."""
    out: dict[Any, dict[str, Any]] = {}
    for r in sorted(rules.measured(results), key=lambda r: (r.get("finished_at") or "", r.get("id") or 0)):
        out[(r["model"], *variant_key(r))] = r
    return list(out.values())


def fp32_reference(r: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """fp32 on the same host, runtime, device and batch size: of the same run first, else the newest."""
    return rules.fp32_reference(r, results, across_runs=True)


def speedup(r: dict[str, Any], ref: dict[str, Any] | None) -> dict[str, Any] | None:
    """{"ratio", "low", "high", "rounds", "same_run"} of ``r`` over ``ref`` (1.0 for fp32 itself)."""
    return rules.speedup(ref, r)


def objective_value(r: dict[str, Any], objective: str) -> float | None:
    """The figure the objective minimises (throughput negated)."""
    if objective == "latency":
        return (r.get("latency_ms") or {}).get("p50")
    if objective == "throughput":
        t = r.get("throughput_per_s")
        return -t if t else None
    if objective == "size":
        return r.get("size_mb")
    if objective == "energy":  # joules per input item over the timed calls, idle power subtracted
        return (r.get("energy") or {}).get("joules_per_inference")
    return r.get("memory_mb") or r.get("peak_rss_mb")


def describe_value(r: dict[str, Any], objective: str) -> str:
    v = objective_value(r, objective)
    if v is None:
        return "n/a"
    return {"latency": f"p50 {v:.3f} ms", "throughput": f"{-v:,.0f} items/s", "size": f"{v:.2f} MB",
            "memory": f"{v:.1f} MB", "energy": f"{v * 1000:.3g} mJ per inference"}[objective]


def assess(results: list[dict[str, Any]], across_runs: bool = True) -> list[dict[str, Any]]:
    """Each ok result with its fp32 reference's figures: speed-up (interval), size ratio, accuracy
    drop (points), agreement. The rows the recommendation, the insights and the report read.
    ``across_runs``: a variant whose run has no fp32 is compared with the newest fp32 of another."""
    rows = []
    refs = rules.references(results, across_runs=across_runs)
    for r in results:
        if r["status"] != "ok":
            continue
        ref = refs[id(r)]
        drop = None
        if r.get("accuracy") is not None and ref is not None and ref.get("accuracy") is not None:
            drop = (ref["accuracy"] - r["accuracy"]) * 100
        size_ratio = r["size_mb"] / ref["size_mb"] if ref and r.get("size_mb") and ref.get("size_mb") else None
        rows.append({"result": r, "reference": ref, "speedup": speedup(r, ref), "size_ratio": size_ratio,
                     "accuracy_drop": drop, "agreement": None if rules.is_reference(r) else agreement(r)})
    return rows


def within_budget(row: dict[str, Any], max_accuracy_drop: float | None, min_agreement: float | None) -> bool:
    """fp32 always; else the accuracy drop (points) within ``max_accuracy_drop`` where both have a
    task accuracy, or the agreement with fp32 at least ``min_agreement``. With neither budget given
    and no task accuracy, the quality bars of :func:`engines.analysis.rules.keeps_quality`."""
    if rules.is_reference(row["result"]):
        return True
    if min_agreement is not None:
        a = row["agreement"]
        return a is not None and a[1] >= min_agreement
    limit = DEFAULT_MAX_DROP if max_accuracy_drop is None else max_accuracy_drop
    if row["accuracy_drop"] is not None:
        return row["accuracy_drop"] <= limit + 1e-9
    if max_accuracy_drop is None:  # no task accuracy, the default budget: the shared quality bars
        return rules.keeps_quality(row["result"])
    a = row["agreement"]  # no task accuracy: agreement stands in (a 1-point budget ~ 0.99 agreement)
    return a is not None and a[1] >= 1 - limit / 100


def quality(row: dict[str, Any]) -> float | None:
    """Higher is better (:func:`engines.analysis.rules.quality`)."""
    return rules.quality(row["result"])


def frontier(rows: list[dict[str, Any]], objective: str) -> list[dict[str, Any]]:
    """The rows no other row of the same model beats on both the objective and quality, best
    objective first (each model's frontier in turn: :func:`engines.analysis.rules.frontier`)."""
    by_result = {id(r["result"]): r for r in rows}
    front = rules.frontier([r["result"] for r in rows], lambda r: objective_value(r, objective))
    return [by_result[id(r)] for r in front]


def _quality_words(row: dict[str, Any]) -> str:
    parts = []
    if row["agreement"]:
        kind, value = row["agreement"]
        parts.append(f"{kind} {value:.3f}")
    if row["accuracy_drop"] is not None:
        drop = row["accuracy_drop"]
        parts.append("accuracy unchanged" if abs(drop) < 0.05 else f"accuracy {-drop:+.1f} points")
    return ", ".join(parts) or "quality not measured"


def where(r: dict[str, Any]) -> str:
    return f"{r['runtime']} · {r['device']}" + (f" · bs {r['batch_size']}" if r["batch_size"] != 1 else "")


def summarise(row: dict[str, Any], objective: str) -> str:
    """One variant in words against fp32."""
    r = row["result"]
    if rules.is_reference(r):
        return f"{label(r)} on {where(r)}: the reference ({describe_value(r, objective)})"
    s = row["speedup"]
    speed = (f"{s['ratio']:.2f}× {'faster than' if s['ratio'] >= 1 else 'the speed of'} fp32"
             + (f" ({s['low']:.2f}–{s['high']:.2f} over {s['rounds']} rounds)" if s.get("rounds", 0) > 1 else "")
             + ("" if s.get("same_run", True) else " of another run")
             if s else "no fp32 to compare with")
    size = f", {row['size_ratio']:.2f}× the size" if row["size_ratio"] else ""
    return f"{label(r)}: {speed} at {_quality_words(row)} on {where(r)}{size}"


def recommend(results: list[dict[str, Any]], objective: str = "latency", device: str | None = None,
              max_accuracy_drop: float | None = None, min_agreement: float | None = None,
              facts: dict[str, Any] | None = None, profile: dict[str, Any] | None = None) -> dict[str, Any]:
    """The recommendation for one model's results: ``{"model", "objective", "budget", "best",
    "runners_up", "reasons", "rejected", "considered"}``; ``best`` is None when nothing qualifies.

    ``facts`` (engines.analysis.families.model_facts) and ``profile`` (the roofline) add a
    diagnosis to each runner-up that loses."""
    from engines.analysis import roofline

    if objective not in OBJECTIVES:
        raise RecommendationError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
    if max_accuracy_drop is not None and min_agreement is not None:
        raise RecommendationError("give --max-accuracy-drop or --min-agreement, not both")
    if min_agreement is not None and not 0 < min_agreement <= 1:
        raise RecommendationError("--min-agreement is a fraction in (0, 1], e.g. 0.99")
    if max_accuracy_drop is not None and max_accuracy_drop < 0:
        raise RecommendationError("--max-accuracy-drop is a number of points ≥ 0, e.g. 1")
    results = latest(results)
    models = sorted({r["model"] for r in results})
    if device is not None:
        results = [r for r in results if r["device"] == device]
    rows = assess(results)
    # An `ane` result that ran mostly elsewhere (or where unknown) is no ANE result (engines.analysis.placement).
    misplaced = [{"variant": f"{label(r['result'])} · {where(r['result'])}", "why": why}
                 for r in rows if (why := not_on_its_device(r["result"]))]
    rows = [r for r in rows if not not_on_its_device(r["result"])]
    if objective == "latency":  # latency is judged at the smallest batch each variant measured
        smallest = min((r["result"]["batch_size"] for r in rows), default=1)
        rows = [r for r in rows if r["result"]["batch_size"] == smallest]
    unread = [r for r in rows if objective == "energy" and objective_value(r["result"], objective) is None]
    rows = [r for r in rows if objective_value(r["result"], objective) is not None]
    budget = (f"agreement ≥ {min_agreement:g}" if min_agreement is not None
              else f"accuracy drop ≤ {DEFAULT_MAX_DROP if max_accuracy_drop is None else max_accuracy_drop:g} points")
    ok = [r for r in rows if within_budget(r, max_accuracy_drop, min_agreement)]
    rejected = misplaced + [{"variant": f"{label(r['result'])} · {where(r['result'])}", "why": f"outside the budget: "
                 f"{_quality_words(r)}"} for r in rows if r not in ok]
    base = {"model": models[0] if len(models) == 1 else ", ".join(models), "objective": objective,
            "device": device, "budget": budget, "considered": len(rows), "rejected": rejected}
    if not ok:
        return {**base, "best": None, "runners_up": [], "frontier": [],
                "reasons": [f"no ok result within the budget ({budget})" if rows else
                            f"energy not measured: {(unread[0]['result'].get('energy') or {}).get('reason', '?')}"
                            if unread else "no ok results to judge"]}
    best = min(ok, key=lambda r: (objective_value(r["result"], objective), -(quality(r) or 0)))
    front = frontier(rows, objective)
    runners = [r for r in front if r is not best][:4]
    reasons = [f"{summarise(best, objective)} — best {OBJECTIVE_WORDS[objective]} "
               f"({describe_value(best['result'], objective)}) within {budget}"]
    best_value = objective_value(best["result"], objective)

    def why_not(row: dict[str, Any]) -> str:
        r = row["result"]
        value = objective_value(r, objective)
        if not within_budget(row, max_accuracy_drop, min_agreement):
            return (f"{label(r)} on {where(r)} is better on {OBJECTIVE_WORDS[objective]} "
                    f"({describe_value(r, objective)}) but outside the budget: {_quality_words(row)}")
        worse = (value / best_value) if best_value and objective != "throughput" else (best_value / value)
        text = (f"{label(r)} on {where(r)} keeps more quality ({_quality_words(row)}) at "
                f"{abs(worse):.2f}× the {OBJECTIVE_WORDS[objective]} of the choice")
        return text

    for row in runners:
        text = why_not(row)
        if facts and not rules.is_reference(row["result"]):
            s = row["speedup"]["ratio"] if row["speedup"] else None
            text += ": " + roofline.diagnose(row["result"], row["reference"], facts, profile, s)
        reasons.append(text)
    # The tempting alternative: smaller but not faster (the question users ask most).
    if objective in ("latency", "throughput"):
        smaller = [r for r in ok if r is not best and r["size_ratio"] and best["size_ratio"]
                   and r["size_ratio"] < best["size_ratio"] and r["speedup"] and r not in runners]
        for row in sorted(smaller, key=lambda r: r["size_ratio"])[:1]:
            text = (f"{label(row['result'])} is smaller ({row['size_ratio']:.2f}× fp32) but "
                    f"{row['speedup']['ratio']:.2f}× the speed on {where(row['result'])}")
            if facts:
                text += ": " + roofline.diagnose(row["result"], row["reference"], facts, profile,
                                                 row["speedup"]["ratio"])
            reasons.append(text)
    return {**base, "best": _public(best, objective), "runners_up": [_public(r, objective) for r in runners],
            "frontier": [_public(r, objective) for r in front], "reasons": reasons}


def _public(row: dict[str, Any], objective: str) -> dict[str, Any]:
    r = row["result"]
    return {"label": label(r), "method": r["method"], "recipe_id": r.get("recipe_id"), "runtime": r["runtime"],
            "device": r["device"], "batch_size": r["batch_size"], "run_id": r.get("run_id"), "result_id": r.get("id"),
            "value": describe_value(r, objective), "p50_ms": (r.get("latency_ms") or {}).get("p50"),
            "throughput_per_s": r.get("throughput_per_s"), "size_mb": r.get("size_mb"),
            "memory_mb": r.get("memory_mb"), "accuracy": r.get("accuracy"), "accuracy_drop": row["accuracy_drop"],
            "agreement": dict([row["agreement"]]) if row["agreement"] else None, "speedup": row["speedup"],
            "size_ratio": row["size_ratio"], "summary": summarise(row, objective)}
