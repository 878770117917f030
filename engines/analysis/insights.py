"""Insights per architecture: across the models measured, which technique wins for each family and
device, with the evidence, and a diagnosis for the results that surprise.

Each model's newest result per variant is compared with fp32 on the same runtime, device and batch
size (engines.analysis.recommend.assess) of the same run: a variant whose newest result comes from a
run without fp32 is left out, unless ``across_runs`` asks to compare it with another run's fp32
(measured under other load; the output's ``pool`` says which). Rows group by family × device × runtime × technique (the
recipe's first method, so the settings of one method pool); a technique "keeps quality" on a model
when it stays within the default budget (1 accuracy point, else agreement ≥ 0.99). The winner of a
family × device is the technique × runtime with the best median speed-up among those that keep
quality on every model measured. A quantized result slower than fp32 even in its fastest round is a
surprise, diagnosed against this machine's roofline. Plain Python.
"""

from __future__ import annotations

import statistics
from typing import Any

from engines.analysis import roofline
from engines.analysis.recommend import assess, label, latest, where, within_budget
from engines.analysis.rules import is_reference


def _float_cast(method: str) -> bool:
    """A narrower float (fp16): slower than fp32 on a CPU is expected, not a surprise (its spec says so)."""
    from engines.methods.registry import Compute, find_method

    spec = find_method(method)
    return spec is not None and spec.compute is Compute.FLOAT and spec.bits < 32


def insights(results: list[dict[str, Any]], facts: dict[str, dict[str, Any]],
             profile: dict[str, Any] | None = None, batch_size: int = 1, across_runs: bool = False
             ) -> dict[str, Any]:
    """``{"rows", "winners", "surprises", "models", "roofline", "pool"}`` for these results (any models).

    ``facts`` maps each model to engines.analysis.families.model_facts; ``batch_size`` chooses the
    batch the comparison is made at (the smallest measured when absent)."""
    results = latest(results)
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    surprises: list[dict[str, Any]] = []
    models_by_family: dict[str, set[str]] = {}
    for model in sorted({r["model"] for r in results}):
        mine = [r for r in results if r["model"] == model]
        sizes = sorted({r["batch_size"] for r in mine})
        bs = batch_size if batch_size in sizes else sizes[0]
        info = facts.get(model) or {"family": "generic"}
        family = info.get("family", "generic")
        models_by_family.setdefault(family, set()).add(model)
        for row in assess([r for r in mine if r["batch_size"] == bs], across_runs=across_runs):
            r = row["result"]
            if is_reference(r) or row["speedup"] is None:
                continue
            keeps = within_budget(row, None, None)
            entry = {"model": model, "label": label(r), "speedup": row["speedup"], "size_ratio": row["size_ratio"],
                     "accuracy_drop": row["accuracy_drop"], "agreement": row["agreement"], "keeps": keeps,
                     "memory_mb": r.get("memory_mb"), "regime": roofline.place(r, info, profile).get("regime")}
            groups.setdefault((family, r["device"], r["runtime"], r["method"]), []).append(entry)
            s = row["speedup"]
            if s["high"] < 1.0 and not _float_cast(r["method"]):
                surprises.append({
                    "model": model, "family": family, "variant": f"{label(r)} · {where(r)}",
                    "speedup": s, "text": (f"{label(r)} slower than fp32 here ({model}, {where(r)}: "
                                           f"{s['ratio']:.2f}× [{s['low']:.2f}–{s['high']:.2f}]): "
                                           + roofline.diagnose(r, row["reference"], info, profile, s["ratio"]))})
    rows = []
    for (family, device, runtime, method), entries in sorted(groups.items()):
        ratios = [e["speedup"]["ratio"] for e in entries]
        size = [e["size_ratio"] for e in entries if e["size_ratio"]]
        regimes = sorted({e["regime"] for e in entries if e["regime"]})
        rows.append({
            "family": family, "device": device, "runtime": runtime, "technique": method,
            "models": sorted({e["model"] for e in entries}), "n": len(entries),
            "speedup": statistics.median(ratios), "speedup_low": min(e["speedup"]["low"] for e in entries),
            "speedup_high": max(e["speedup"]["high"] for e in entries),
            "size_ratio": statistics.median(size) if size else None,
            "kept": sum(e["keeps"] for e in entries), "regimes": regimes,
            "evidence": [f"{e['model']} {e['label']}: {e['speedup']['ratio']:.2f}×"
                         + (f" at {e['agreement'][0]} {e['agreement'][1]:.3f}" if e["agreement"] else "")
                         + ("" if e["keeps"] else " (outside the quality budget)") for e in entries],
        })
    winners: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = f"{row['family']}/{row['device']}"
        if row["kept"] < row["n"] or row["speedup"] <= 1.0:
            continue
        if key not in winners or row["speedup"] > winners[key]["speedup"]:
            winners[key] = row
    for row in rows:
        row["winner"] = winners.get(f"{row['family']}/{row['device']}") is row
    verdicts = []
    for family, models in sorted(models_by_family.items()):
        devices = sorted({r["device"] for r in rows if r["family"] == family})
        for device in devices:
            w = winners.get(f"{family}/{device}")
            if w is None:
                verdicts.append(f"{family} on {device}: no quantized technique beat fp32 within the quality budget "
                                f"({', '.join(sorted(models))})")
            else:
                verdicts.append(f"{family} on {device}: {w['technique']} on {w['runtime']} wins, median "
                                f"{w['speedup']:.2f}× fp32 over {w['n']} model(s) "
                                f"[{w['speedup_low']:.2f}–{w['speedup_high']:.2f}]"
                                + (f", {w['size_ratio']:.2f}× the size" if w["size_ratio"] else ""))
    return {"rows": rows, "winners": verdicts, "surprises": surprises,
            "models": {f: sorted(m) for f, m in models_by_family.items()}, "roofline": profile,
            "pool": ("each variant's newest result against the newest fp32 of any run" if across_runs
                     else "each variant's newest result against the fp32 of its own run")}


def from_store(store: Any, models: list[str] | None = None, run_id: str | None = None
               ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """(results, facts per model) read from the store: one run's, some models' or every result."""
    from engines.analysis.families import model_facts
    from engines.store.query import ResultQuery

    if run_id is not None:
        results = store.results(run_id)
    elif models:
        results = [r for m in models for r in store.query_results(ResultQuery(model=m))]
    else:
        results = store.query_results(ResultQuery())
    requests: dict[str, dict[str, Any]] = {}
    for rid in sorted({r.get("run_id") for r in results if r.get("run_id")}):
        run = store.get_run(rid) or {}
        requests.setdefault(run.get("model") or "", run.get("request") or {})
    facts = {m: model_facts(m, requests.get(m)) for m in sorted({r["model"] for r in results})}
    return results, facts
