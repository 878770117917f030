"""What to do when a served variant regresses: a better recipe already measured, or the sweep to run.

Plain data in (stored result dicts), plain data out; reads the store with SQL only.
"""

from __future__ import annotations

import shlex
from typing import Any

ACCURACY_BUDGET = 0.01  # a replacement may lose at most 1 point of accuracy (or top-1 agreement)
MIN_GAIN = 1.05  # and must be at least 5 % faster: closer than that is within run-to-run noise


def _quality(result: dict[str, Any]) -> float | None:
    if result.get("accuracy") is not None:
        return float(result["accuracy"])
    agreement = result.get("agreement") or {}
    return float(agreement["top1"]) if agreement.get("top1") is not None else None


def _p50(result: dict[str, Any]) -> float | None:
    return (result.get("latency_ms") or {}).get("p50")


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    return {"id": result.get("id"), "run_id": result.get("run_id"), "model": result.get("model"),
            "label": result.get("label") or result.get("method"), "runtime": result.get("runtime"),
            "device": result.get("device"), "batch_size": result.get("batch_size"), "p50_ms": _p50(result),
            "quality": _quality(result)}


def better_measured(store, served: dict[str, Any], budget: float = ACCURACY_BUDGET,
                    limit: int = 3) -> list[dict[str, Any]]:
    """Stored ok results of the same model on the same device and batch size that are faster than
    the served one by ``MIN_GAIN`` and lose at most ``budget`` of its quality; fastest first, one per
    recipe × runtime."""
    base_p50, base_q = _p50(served), _quality(served)
    if base_p50 is None:
        return []
    rows = store.results(where="model = ? AND device = ? AND batch_size = ? AND status = 'ok' "
                               "AND latency_p50_ms IS NOT NULL AND latency_p50_ms < ? AND id != ?",
                         params=[served["model"], served["device"], served["batch_size"], base_p50 / MIN_GAIN,
                                 served.get("id") or -1])
    served_key = (served.get("recipe_id") or served["method"], served["runtime"])
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row.get("recipe_id") or row["method"], row["runtime"])
        if key == served_key:  # the served variant measured again (an export's validation): not a change
            continue
        quality = _quality(row)
        if base_q is not None and (quality is None or quality < base_q - budget):
            continue
        if key not in best or _p50(row) < _p50(best[key]):
            best[key] = row
    ranked = sorted(best.values(), key=_p50)[:limit]
    out = []
    for row in ranked:
        item = _summary(row)
        item["speedup"] = base_p50 / _p50(row)
        item["quality_delta"] = (None if base_q is None or item["quality"] is None else item["quality"] - base_q)
        item["serve"] = f"qbench serve {row['id']}"
        out.append(item)
    return out


def sweep_argv(served: dict[str, Any]) -> list[str]:
    """The sweep that looks for a faster recipe on the served device: the recipes the device's
    hardware calls for (``--methods auto``) on every runtime the served one could be swapped for."""
    runtimes = sorted({served.get("runtime") or "onnxruntime", "onnxruntime"})
    return ["run", "--model", str(served["model"]), "--methods", "auto", "--runtimes", ",".join(runtimes),
            "--devices", str(served.get("device") or "cpu"), "--batch-sizes", str(served.get("batch_size") or 1)]


def suggest_reoptimization(store, served: dict[str, Any]) -> dict[str, Any]:
    """``better`` (measured replacements), ``sweep`` (argv of ``qbench …``) and one line of ``text``."""
    better = better_measured(store, served)
    argv = sweep_argv(served)
    command = "qbench " + " ".join(shlex.quote(a) for a in argv)
    if better:
        top = better[0]
        delta = top["quality_delta"]
        quality = "" if delta is None else f", quality {delta:+.1%}"
        text = (f"re-optimize: {top['label']} on {top['runtime']} ({top['device']}, bs {top['batch_size']}) was "
                f"measured {top['speedup']:.2f}× faster than the served {served.get('label') or served['method']}"
                f"{quality} (result {top['id']}): {top['serve']}")
    else:
        text = (f"re-optimize: no faster recipe measured for {served['model']} on {served.get('device')}; "
                f"run the sweep: {command}")
    return {"served": _summary(served), "better": better, "sweep": {"argv": argv, "command": command},
            "text": text}
