"""Which device suits a model best under an objective, from measured results, with the evidence.

Each device is represented by its best variant that keeps the model's answers (the quality bars
of :func:`engines.analysis.rules.keeps_quality`; the reference itself always); the devices are then
ranked by the objective. Export validations are not evidence (only a sweep's measurements are). Plain dicts in (``Result.to_dict()`` rows), so the
CLI, the app and reports share it without importing any engine library.
"""

from __future__ import annotations

from typing import Any

from engines.analysis.rules import keeps_quality, measured
from engines.analysis.placement import not_on_its_device

OBJECTIVES = ("latency", "throughput", "memory")
__all__ = ["OBJECTIVES", "choose_device", "keeps_quality"]


def _score(result: dict[str, Any], objective: str) -> float | None:
    if objective == "latency":
        return (result.get("latency_ms") or {}).get("p50")
    if objective == "throughput":
        tput = result.get("throughput_per_s")
        return -tput if tput else None
    memory = (result.get("metrics") or {}).get("device_memory_mb") or result.get("peak_rss_mb")
    return memory


def choose_device(results: list[dict[str, Any]], objective: str = "latency") -> dict[str, Any]:
    """The best device for these results (one model) and why: ``{"device", "objective", "evidence",
    "reason"}``; ``device`` is None when no device has an ok, faithful result."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}")
    best: dict[str, tuple[float, dict[str, Any]]] = {}
    tried: dict[str, str] = {}
    for r in measured(results):
        device = r["device"]
        tried.setdefault(device, r.get("error") or r["status"])
        if r["status"] != "ok" or not keeps_quality(r) or not_on_its_device(r):  # placement: not where labelled
            continue
        score = _score(r, objective)
        if score is None:
            continue
        if device not in best or score < best[device][0]:
            best[device] = (score, r)
    evidence = [{
        "device": device, "label": r.get("label") or r["method"], "runtime": r["runtime"],
        "batch_size": r["batch_size"], "p50_ms": (r.get("latency_ms") or {}).get("p50"),
        "throughput_per_s": r.get("throughput_per_s"), "peak_rss_mb": r.get("peak_rss_mb"),
        "device_memory_mb": (r.get("metrics") or {}).get("device_memory_mb"), "agreement": r.get("agreement"),
    } for device, (_, r) in sorted(best.items(), key=lambda item: item[1][0])]
    unmeasured = {d: why for d, why in tried.items() if d not in best}
    if not evidence:
        return {"device": None, "objective": objective, "evidence": [], "unmeasured": unmeasured,
                "reason": "no device has an ok result that keeps the model's answers"}
    top = evidence[0]
    unit = {"latency": f"p50 {top['p50_ms']:.3f} ms" if top["p50_ms"] is not None else "",
            "throughput": f"{top['throughput_per_s'] or 0:.0f} items/s",
            "memory": f"{top['device_memory_mb'] or top['peak_rss_mb'] or 0:.0f} MB"}[objective]
    others = f" over {', '.join(e['device'] for e in evidence[1:])}" if len(evidence) > 1 else \
        " (the only device measured with a faithful result)"
    reason = f"{top['device']}: best {objective} ({unit}, {top['label']} on {top['runtime']}){others}"
    return {"device": top["device"], "objective": objective, "evidence": evidence, "unmeasured": unmeasured,
            "reason": reason}
