"""``--methods auto`` as a search: screen every candidate with short runs, measure the finalists
fully, report the best variant that keeps the quality bar and why each other candidate lost.

1. Screening: one short sweep (a few timed calls, one round) of each device's strategies
   (:mod:`engines.devices.strategies`) on every chosen runtime, with the fp32 reference.
2. Session settings: the best ONNX Runtime candidate is screened again under each of
   :func:`engines.devices.strategies.session_settings` (threads, spinning, execution mode, graph
   level); a setting that beats the default by :data:`SETTING_GAIN` joins the finalists.
3. Finals: the explicit methods of the request, fp32 and the ``finalists`` fastest candidates that
   keep quality (:func:`engines.analysis.rules.keeps_quality`) and beat fp32 in screening are
   measured with the request's own settings, in one sweep of at least :data:`FINALS_ROUNDS`
   rounds: every round times each of them once, in a shuffled order (:mod:`engines.bench.rounds`),
   so the best's speed-up over the fastest fp32 is the median of per-round ratios with their range
   (:func:`engines.analysis.rules.speedup_over`), and the fp32's own spread is reported beside it.
   The best is the fastest of them that keeps quality. When the screening measured nothing
   (every candidate refused or failed here), there is nothing to measure again: no finals.

A budget (seconds) bounds the whole search: screening stops at :data:`SCREEN_SHARE` of it (what
it did not reach is reported "not screened"), the settings phase runs only when the time left
covers it, and the finals stop at the budget's end (interrupted, resumable). Every phase is an
ordinary sweep stored in the database; this module only chooses what each one measures.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from engines.analysis import rules
from engines.analysis.rules import agreement, bar_text, is_reference, keeps_quality

SweepFn = Callable[[Any, threading.Event], tuple[str, str, list[dict[str, Any]]]]  # (request, cancel) -> run

SCREEN_SHARE = 0.6  # of a time budget, for screening
SETTING_GAIN = 1.03  # a session setting must beat the default by 3 % in screening to be measured
SCREEN_MIN_TIME_S = 0.15
SCREEN_MIN_REPS = 5
# Float graphs measured in the finals whenever auto proposes them: the fused fp32 is the reference
# of the fused int8 recipes (is the gain the fusion's or the integer kernels'?).
FLOAT_REFERENCES = ("fuse",)
MARGIN_S = 5.0  # a sweep told to stop ends its child and stores the run: a few seconds
# The finals' rounds (at least; a request's own --repeat above it stands). The timing time is split
# across the rounds, so more rounds cost little; five pairs give a median that outvotes two
# disturbed rounds on a shared machine, and a range to judge the ratio by.
FINALS_ROUNDS = 5


def finals_measure(measure: Any) -> Any:
    """The request's own timing, split into at least :data:`FINALS_ROUNDS` interleaved rounds."""
    return dataclasses.replace(measure, repeat=max(measure.repeat, FINALS_ROUNDS))


def screening_measure(measure: Any) -> Any:
    """Short timing: enough calls to rank candidates, one round."""
    from engines.bench.measure import MeasureSettings

    return MeasureSettings(min_time_s=min(SCREEN_MIN_TIME_S, measure.min_time_s), min_reps=SCREEN_MIN_REPS,
                           max_time_s=max(2.0, SCREEN_MIN_TIME_S * 4), repeat=1)


def _p50(r: dict[str, Any]) -> float | None:
    return (r.get("latency_ms") or {}).get("p50") if r.get("status") == "ok" else None


def _name(r: dict[str, Any], settings: dict[str, Any] | None = None) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in (settings or {}).items())
    return f"{r['label']} · {r['runtime']} · {r['device']}" + (f" [{extra}]" if extra else "")


def _quality_text(r: dict[str, Any]) -> str:
    found = agreement(r)
    return f"{found[0]} {found[1]:.4f}" if found else "no agreement figure"


def judge(results: list[dict[str, Any]], settings: dict[int, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every result as a candidate: ``{"variant", "result", "p50_ms", "vs_fp32", "keeps", "why"}``
    (``why`` is None for one that is in the running: ok, keeps quality, faster than fp32)."""
    settings = settings or {}
    refs = rules.references(results)
    out = []
    for r in results:
        extra = settings.get(id(r), {})
        entry = {"variant": _name(r, extra), "label": r["label"], "runtime": r["runtime"], "device": r["device"],
                 "settings": extra, "result": r.get("id"), "run_id": r.get("run_id"), "p50_ms": _p50(r),
                 "quality": _quality_text(r), "vs_fp32": None, "keeps": False, "why": None}
        ratio = rules.speedup(refs.get(id(r)), r) if entry["p50_ms"] else None
        if ratio:
            entry["vs_fp32"] = round(ratio["ratio"], 3)
        if r.get("status") != "ok":
            first = (r.get("error") or r.get("status") or "").splitlines()[0][:160] if r.get("error") else ""
            entry["why"] = f"refused ({r.get('status')}): {first}" if first else f"refused ({r.get('status')})"
        elif is_reference(r):
            entry["keeps"], entry["why"] = True, "the fp32 reference"
        elif not keeps_quality(r):
            entry["why"] = f"lost quality: {_quality_text(r)} (bar: {bar_text(agreement(r)[0] if agreement(r) else '')})"
        elif entry["vs_fp32"] is not None and entry["vs_fp32"] < 1.0:
            entry["keeps"] = True
            entry["why"] = f"slower than fp32 here: {entry['vs_fp32']:.2f}× {r['runtime']} fp32"
        else:
            entry["keeps"] = True
        out.append(entry)
    return out


def _recipes(specs: list[str], request: Any) -> tuple[Any, ...]:
    """The search's recipe texts (the device strategies', the finalists') as the request's recipes,
    under the request's own method settings."""
    from engines.methods.recipe import parse_recipes

    return parse_recipes(specs, request.configs)


def _ranked(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((e for e in entries if e["why"] is None and e["p50_ms"]), key=lambda e: e["p50_ms"])


def _timer(seconds: float | None, event: threading.Event) -> threading.Timer | None:
    if seconds is None:
        return None
    timer = threading.Timer(max(0.5, seconds), event.set)
    timer.daemon = True
    timer.start()
    return timer


def search(request: Any, explicit: list[str], candidates: list[str], run_sweep: SweepFn, *,
           budget_s: float | None = None, finalists: int = 3, settings: list[dict[str, Any]] | None = None,
           cancel: threading.Event | None = None, say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Screen ``candidates`` (recipe specs), measure the finalists; the report (``best``,
    ``runners_up``, ``screened``, ``runs``, ``wall_s``…) and every final result."""
    from engines.devices.strategies import session_settings

    settings = session_settings() if settings is None else settings
    start = time.monotonic()
    deadline = start + budget_s if budget_s else None
    cancel = cancel or threading.Event()
    runs: list[dict[str, Any]] = []

    def left() -> float | None:
        return None if deadline is None else deadline - time.monotonic()

    def sweep(phase: str, req: Any, stop_after: float | None) -> list[dict[str, Any]]:
        phase_cancel = threading.Event()
        watch = threading.Thread(target=lambda: (cancel.wait(), phase_cancel.set()), daemon=True)
        watch.start()
        timer = _timer(stop_after, phase_cancel)
        try:
            run_id, status, results = run_sweep(req, phase_cancel)
        finally:
            if timer is not None:
                timer.cancel()
        runs.append({"phase": phase, "run_id": run_id, "status": status, "results": len(results)})
        if status == "interrupted" and (cancel.is_set() or not phase_cancel.is_set()):  # the user's stop
            from engines.bench.runner import SweepInterrupted

            raise SweepInterrupted(run_id)
        return results

    from engines.methods.registry import reference_method

    reference = reference_method()  # fp32: measured in every phase, the ratios' base
    specs = [reference] + [c for c in candidates if c != reference]
    screen_req = dataclasses.replace(request, methods=_recipes(specs, request),
                                     measure=screening_measure(request.measure))
    say(f"auto: screening {len(specs)} recipes × {len(request.runtimes)} runtime(s) with short runs")
    screen_stop = budget_s * SCREEN_SHARE if budget_s else None
    t0 = time.monotonic()
    screened = sweep("screening", screen_req, screen_stop)
    per_variant = (time.monotonic() - t0) / max(1, len(screened))
    entries = judge(screened)
    rows = {r.get("id"): r for r in screened}  # every result of the search by its id: the ratios' inputs
    planned = len(screen_req.recipes()) * len(request.runtimes) * len(request.devices) * len(request.batch_sizes)
    not_screened = max(0, planned - len(screened))

    # The finals: fp32, the finalists (first: a budget that runs out cuts the rest), then the fused
    # fp32 and the methods named beside auto; each spec runs on every chosen runtime.
    chosen = _ranked(entries)[:finalists]
    final_specs = [reference]
    for spec in [_spec_of(e, screened) for e in chosen] + [m for m in FLOAT_REFERENCES if m in candidates] + explicit:
        if spec not in final_specs:
            final_specs.append(spec)
    finals_s = per_variant * len(final_specs) * len(request.runtimes) * len(request.devices) * 1.5

    # Session settings: the fastest ONNX Runtime candidate that keeps quality under each setting,
    # screened the same way; one the default session ran slower than fp32 too (on a busy machine a
    # spinning pool is what it may lack).
    ort_kept = [e for e in entries if e["runtime"] == "onnxruntime" and e["keeps"] and e["p50_ms"]
                and e["result"] in rows and not is_reference(rows[e["result"]])]
    ort_best = min(ort_kept, key=lambda e: e["p50_ms"], default=None)
    # Nothing ran in a screening that finished (every candidate refused or failed here, e.g. a device
    # this machine lacks): the finals would build the same variants again to be refused again.
    unscreened = [m for m in explicit if m not in specs]
    nothing_ran = (not any(r.get("status") == "ok" for r in screened) and not unscreened
                   and runs[-1]["status"] != "interrupted")
    setting_entries: list[dict[str, Any]] = []
    for setting in settings if ort_best else []:
        remaining = left()
        if remaining is not None and remaining < per_variant * 3 + MARGIN_S + finals_s:
            say("auto: session settings not screened: the budget keeps its time for the finals")
            break
        threads = setting.get("threads")
        runtime_cfg = {k: v for k, v in setting.items() if k != "threads"}
        base = dict(request.runtime_configs.get("onnxruntime") or {})
        req = dataclasses.replace(
            screen_req, methods=_recipes([_spec_of(ort_best, screened)], request), runtimes=("onnxruntime",),
            devices=(ort_best["device"],), runtime_configs={**request.runtime_configs,
                                                             "onnxruntime": {**base, **runtime_cfg}},
            threads=threads if threads else request.threads)
        say(f"auto: screening {ort_best['label']} on onnxruntime with {_words(setting)}")
        found = sweep("settings", req, remaining - MARGIN_S if remaining is not None else None)
        ids = {id(r): setting for r in found}
        rows.update({r.get("id"): r for r in found})
        for e in judge(found, ids):
            found_gain = rules.speedup(rows.get(ort_best["result"]), rows[e["result"]]) if e["p50_ms"] else None
            if found_gain and e["why"] is None:  # against the default session's screening (another sweep)
                gain = found_gain["ratio"]
                e["vs_default"] = round(gain, 3)
                if gain < SETTING_GAIN:
                    e["why"] = f"no faster than the default session ({gain:.2f}×)"
                setting_entries.append(e)
            elif e["why"]:
                setting_entries.append(e)

    # Finals: explicit methods, fp32 and the best candidates, with the request's own measuring.
    best_setting = next(iter(_ranked(setting_entries)), None)
    remaining = left()
    skipped = None
    if nothing_ran:
        skipped = "the screening measured nothing here (every candidate was refused or failed): no finals"
        say(f"auto: {skipped}")
        finals = []
    elif remaining is not None and remaining < MARGIN_S * 2:
        say("auto: the budget is spent before the finals: the screening figures stand")
        finals = []
    else:
        say(f"auto: measuring {len(final_specs)} recipe(s) fully, in interleaved rounds: {', '.join(final_specs)}")
        final_req = dataclasses.replace(request, methods=_recipes(final_specs, request),
                                        measure=finals_measure(request.measure))
        finals = sweep("finals", final_req, remaining - MARGIN_S if remaining is not None else None)
    final_settings: dict[int, dict[str, Any]] = {}
    if best_setting and (left() is None or left() > per_variant * 2 + MARGIN_S):
        setting = best_setting["settings"]
        threads = setting.get("threads")
        req = dataclasses.replace(
            request, methods=_recipes([reference, _spec_of(best_setting, screened)], request), runtimes=("onnxruntime",),
            devices=(best_setting["device"],),
            runtime_configs={**request.runtime_configs, "onnxruntime": {
                **(request.runtime_configs.get("onnxruntime") or {}),
                **{k: v for k, v in setting.items() if k != "threads"}}},
            threads=threads if threads else request.threads)
        say(f"auto: measuring {best_setting['label']} with {_words(setting)} fully")
        req = dataclasses.replace(req, measure=finals_measure(request.measure))
        extra = sweep("finals-settings", req, left() - MARGIN_S if left() is not None else None)
        final_settings = {id(r): setting for r in extra if not is_reference(r)}
        finals_judged = judge(finals) + [e for e in judge(extra, final_settings) if e["settings"]]
        finals = finals + [r for r in extra if not is_reference(r)]
    else:
        if best_setting:
            say("auto: the best session setting is not measured fully: the budget is spent")
            best_setting["why"] = (f"not measured fully: the budget ran out (screening: {best_setting['p50_ms']:.3f} ms, "
                                   f"{best_setting.get('vs_default', 0):.2f}× the default session)")
        finals_judged = judge(finals)
    report = _report(finals_judged, entries + setting_entries, chosen, finals)
    report["finals_skipped"] = skipped
    from engines.devices.strategies import CPU_LEFT_OUT

    asked = set(explicit) | set(candidates)
    report["left_out"] = [{"spec": spec, "why": why} for spec, why in CPU_LEFT_OUT.items()
                          if "cpu" in request.devices and spec not in asked]
    report.update({"runs": runs, "wall_s": round(time.monotonic() - start, 1), "budget_s": budget_s,
                   "not_screened": not_screened, "finalists": [e["variant"] for e in chosen]
                   + ([best_setting["variant"]] if best_setting else []), "quality_bar": "rules.QUALITY_BARS"})
    # A candidate that could not be measured (refused, unsupported here, failed) stays in the
    # results with its status and reason: on a machine that can measure none, that is the answer.
    final_labels = {r["label"] for r in finals}
    unmeasured = [r for r in screened if r.get("status") != "ok" and r["label"] not in final_labels]
    return {"report": report, "results": finals + unmeasured}


def _spec_of(entry: dict[str, Any], results: list[dict[str, Any]]) -> str:
    """The recipe spec a judged entry came from (its result's recipe, as --methods takes it)."""
    from engines.methods.recipe import Recipe

    for r in results:
        if r.get("label") == entry["label"] and r.get("recipe"):
            return Recipe.from_list(r["recipe"], lenient=True).spec_text
    return entry["label"]


def _words(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items())


def _report(finals: list[dict[str, Any]], screened: list[dict[str, Any]], chosen: list[dict[str, Any]],
            final_results: list[dict[str, Any]]) -> dict[str, Any]:
    """The best final that keeps quality, the runners-up and why each lost (slower, quality, refused).

    Ratios between finals pair their rounds (:func:`engines.analysis.rules.speedup_over`): the
    best's ``speedup`` over the fastest fp32 is the median of per-round ratios, ``low``–``high``
    their range, with the fp32's own spread (``ref_spread``, ``ref_unsteady``)."""
    rows = {r.get("id"): r for r in final_results}
    refs = [e for e in finals if e["why"] == "the fp32 reference" and e["p50_ms"]]
    fastest_fp32 = min(refs, key=lambda e: e["p50_ms"]) if refs else None
    ranked = _ranked(finals)
    best = ranked[0] if ranked else None
    lost: list[dict[str, Any]] = []
    for e in ranked[1:]:
        behind = rules.speedup(rows.get(e["result"]), rows[best["result"]]) if e["result"] in rows else None
        apart = "" if not behind or behind["same_run"] else ", timed in another sweep"
        lost.append({**e, "why": f"slower than the best: {e['p50_ms']:.3f} ms vs {best['p50_ms']:.3f} ms"
                                 + (f" (the best is {rules.fmt_speedup({**behind, 'same_run': True})} as fast{apart})"
                                    if behind else "")})
    lost += [e for e in finals if e["why"] and e["why"] != "the fp32 reference"]
    final_names = {e["variant"] for e in finals}
    cut = max((e["p50_ms"] for e in chosen), default=None)
    for e in screened:
        if e["variant"] in final_names or e["why"] == "the fp32 reference":
            continue
        why = e["why"]
        if why is None and e["settings"]:
            why = (f"another session setting was faster in the short runs ({e['p50_ms']:.3f} ms, "
                   f"{e.get('vs_default', 0):.2f}× the default session)")
        elif why is None:
            why = (f"screened out: {e['p50_ms']:.3f} ms in the short runs"
                   + (f", the finalists ≤ {cut:.3f} ms" if cut else ""))
        lost.append({**e, "why": why, "screening": True})
    fused = next((e for e in finals if e["label"] == "fuse" and e["p50_ms"]), None)
    out = {"best": None, "runners_up": lost, "fused_fp32": fused and {
               k: fused[k] for k in ("variant", "p50_ms", "vs_fp32", "quality")}, "fastest_fp32": fastest_fp32 and fastest_fp32["variant"],
           "fastest_fp32_ms": fastest_fp32 and fastest_fp32["p50_ms"]}
    ref_row = rows.get(fastest_fp32["result"]) if fastest_fp32 else None
    if ref_row is not None:
        out["fastest_fp32_spread"] = ref_row.get("spread")
    if best:
        found = rules.speedup_over(ref_row, rows[best["result"]]) if ref_row is not None else None
        out["best"] = {**best, "vs_fastest_fp32": round(found["ratio"], 3) if found else None,
                       "speedup": found and {k: round(v, 3) if isinstance(v, float) else v for k, v in found.items()}}
    return out


def _ratio_text(report: dict[str, Any]) -> str:
    """``, 2.10× [1.95–2.31] the fastest fp32 (…), paired over 5 rounds`` and the fp32's spread
    when it is large; the plain ratio for a report without the paired figures."""
    best = report["best"]
    s = best.get("speedup")
    if not s and best.get("vs_fastest_fp32"):
        return f", {best['vs_fastest_fp32']:.2f}× the fastest fp32 ({report['fastest_fp32']})"
    if not s:
        return ""
    if not s.get("same_run", True):  # a session setting's finalist: its own sweep, with that setting
        paired = ", timed in another sweep than that fp32 (not interleaved)"
    else:
        paired = f", paired over {s['rounds']} interleaved rounds" if s.get("rounds") else ", not paired (no shared rounds)"
    text = f", {rules.fmt_speedup({**s, 'same_run': True})} the fastest fp32 ({report['fastest_fp32']}){paired}"
    if s.get("ref_unsteady"):  # the paired median outvotes a disturbed round; the two medians would not
        text += (f"; that fp32's rounds spread {s['ref_spread']:.0%} (a noisy reference: the ratio is the "
                 "median of the paired rounds, the interval their range)")
    return text


def summary_lines(report: dict[str, Any], limit: int = 12) -> list[str]:
    """The report in words: the best, the fastest fp32, each runner-up and why it lost."""
    lines = []
    best = report.get("best")
    if best:
        lines.append(f"best: {best['variant']} — {best['p50_ms']:.3f} ms, {best['quality']}{_ratio_text(report)}")
    elif report.get("finals_skipped"):
        lines.append(f"best: none: {report['finals_skipped']}")
    elif report.get("runs") and not any(r.get("results") for r in report["runs"]):
        lines.append("best: nothing was measured: every sweep of the search stopped before a measurement "
                     "finished (the budget ran out; a sweep waiting for another on this machine counts)")
    else:
        lines.append("best: none of the finals kept quality and beat fp32")
    if report.get("fused_fp32"):
        f = report["fused_fp32"]
        lines.append(f"fused fp32: {f['variant']} — {f['p50_ms']:.3f} ms"
                     + (f", {f['vs_fp32']:.2f}× its runtime's fp32" if f.get("vs_fp32") else ""))
    for e in report.get("runners_up", [])[:limit]:
        where = " (screening)" if e.get("screening") else ""
        lines.append(f"  {e['variant']}{where}: {e['why']}")
    more = len(report.get("runners_up", [])) - limit
    if more > 0:
        lines.append(f"  … {more} more (in --json)")
    for e in report.get("left_out", []):
        lines.append(f"  {e['spec']} (not proposed): {e['why']}")
    budget = f" of a {report['budget_s'] / 60:g}-minute budget" if report.get("budget_s") else ""
    cut = f"; {report['not_screened']} candidate(s) not screened: the budget ran out" if report.get("not_screened") else ""
    if any(r["phase"].startswith("finals") and r["status"] == "interrupted" for r in report.get("runs", [])):
        cut += "; the budget ended the finals early: their figures have fewer rounds (flagged partial)"
    lines.append(f"search: {len(report.get('runs', []))} sweep(s) in {report.get('wall_s', 0):.0f} s{budget}{cut}")
    return lines
