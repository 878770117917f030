"""One set of analysis rules: the same stored results give the same speed-up, the same Pareto
frontier and the same quality verdict in `recommend`, the device choice, export (`pick_best` and
its validation verdict), the HTML report and the app (its speed-up column, its Pareto star, its
chart); export validations are never `latest`, a reference nor on a frontier; a frontier never
mixes models. Plus a scan: the quality bars and the reference test are written in rules.py only."""

from __future__ import annotations

import re

import pytest
from helpers import source_lines_matching

from engines.analysis import rules
from engines.analysis.device_choice import choose_device
from engines.analysis.insights import insights
from engines.analysis.recommend import assess, latest, recommend, within_budget
from engines.core.schema import Result, result_key
from engines.export import pick_best
from engines.export.validate import agrees
from engines.store import Store
from engines.store.query import ResultQuery
from qbench_tui import analysis

MODEL, OTHER = "digits-mlp", "digits-cnn"


def _rounds(*p50s: float) -> list[dict]:
    return [{"round": i, "latency": {"p50": p}} for i, p in enumerate(p50s)]


def _result(model: str, method: str, p50: float, top1: float, *, rounds=(), runtime="onnxruntime",
            metrics=None, size=1.0) -> Result:
    return Result(model=model, method=method, runtime=runtime, device="cpu", batch_size=1, recipe_id=method,
                  label=method, recipe=[{"method": method, "config": {}}], status="ok",
                  latency_ms={"p50": p50, "p99": p50 * 1.2}, size_mb=size, agreement={"top1": top1},
                  rounds=list(rounds), metrics=dict(metrics or {}))


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Store:
    """Three sweeps and an export's validation in a real store:

    * an older sweep of MODEL with fp32 only, measured under other load (p50 2.0 ms);
    * a sweep of MODEL: fp32, fp16, dynamic-int8 (top-1 0.995; its stored paired speed-up 2.41
      differs from the ratio of its medians, 2.5: every view must show the stored one), int4
      (top-1 0.97: between the old bars 0.95 and 0.99, so the old device choice kept it and export
      validation refused it);
    * a sweep of OTHER whose fp32 is faster and as good as anything of MODEL (mixing models would
      put it alone on MODEL's frontier);
    * an export validation of MODEL's int4 (faster than everything, agreement 1.0), the newest run."""
    store = Store(tmp_path_factory.mktemp("rules") / "rules.db")
    env = {"cpu": "test"}
    store.create_run("r0", MODEL, {}, env, "cli")
    store.add_result("r0", _result(MODEL, "fp32", 2.0, 1.0, size=4.0))
    store.set_run_status("r0", "finished")
    store.create_run("r1", MODEL, {}, env, "cli")
    store.add_result("r1", _result(MODEL, "fp32", 1.0, 1.0, rounds=_rounds(1.0, 1.1, 0.9), size=4.0))
    store.add_result("r1", _result(MODEL, "fp16", 0.9, 1.0, size=2.0))
    store.add_result("r1", _result(MODEL, "dynamic-int8", 0.4, 0.995, rounds=_rounds(0.41, 0.45, 0.38),
                                   metrics={"speedup_vs_fp32": {"ratio": 2.41, "low": 2.37, "high": 2.44,
                                                                "rounds": 3}}))
    store.add_result("r1", _result(MODEL, "int4", 0.3, 0.97, size=0.5))
    store.set_run_status("r1", "finished")
    store.create_run("r2", OTHER, {}, env, "cli")
    store.add_result("r2", _result(OTHER, "fp32", 0.1, 1.0, size=0.2))
    store.set_run_status("r2", "finished")
    store.create_run("r3", MODEL, {"export": {"format": "tflite"}}, env, "export")
    store.add_result("r3", _result(MODEL, "int4", 0.01, 1.0, runtime="litert", size=0.1,
                                   metrics={"export": {"format": "tflite", "agrees": True}}))
    store.set_run_status("r3", "finished")
    return store


def _by_method(results: list[dict], run_id: str = "r1") -> dict[str, dict]:
    return {r["method"]: r for r in results if r["run_id"] == run_id}


def test_every_view_shows_the_same_speedup(stored):
    everything = stored.results()
    mine = [r for r in everything if r["model"] == MODEL]
    int8 = _by_method(everything)["dynamic-int8"]
    ref = rules.fp32_reference(int8, everything)
    assert ref["run_id"] == "r1"  # its own run's fp32, not the newer-looking one measured under other load
    ratio = rules.speedup(ref, int8)["ratio"]
    assert ratio == 2.41  # the stored paired value, not the ratio of the medians (2.5)
    # recommend and the report's rows
    rows = {r["result"]["method"]: r for r in assess(latest(mine))}
    assert rows["dynamic-int8"]["speedup"]["ratio"] == ratio
    # the app's speed-up column and the CLI's results table (both qbench_tui.analysis.speedups)
    assert analysis.speedups(everything)[result_key(int8)] == ratio
    # the app reads a page plus its runs' fp32 rows
    page = [int8, *stored.fp32_references({"r1"})]
    assert analysis.speedups(page)[result_key(int8)] == ratio
    # the tracking sender fills in what the runner could not pair (fp16: one round) by the same rule
    from engines.tracking.sender import with_speedup

    fp16 = _by_method(everything)["fp16"]
    sent = with_speedup(stored, fp16)["metrics"]["speedup_vs_fp32"]
    assert sent["ratio"] == rules.speedup(ref, fp16)["ratio"] == analysis.speedups(everything)[result_key(fp16)]
    assert sent["ratio"] == pytest.approx(1.0 / 0.9)
    # insights pairs within one run: r1's fp32, not r0's
    data = insights(mine, {MODEL: {"family": "mlp"}})
    row = next(r for r in data["rows"] if r["technique"] == "dynamic-int8")
    assert row["speedup"] == ratio and "own run" in data["pool"]
    # the report's speed-up bars
    pytest.importorskip("plotly")
    from engines.analysis.report import charts

    bars = dict(charts(mine))["Speed-ups"].data[0]
    assert dict(zip(bars.x, bars.y, strict=True))["dynamic-int8 · onnxruntime · cpu"] == ratio


def test_every_view_draws_the_same_frontier_per_model(stored):
    everything = stored.results()
    mine = [r for r in everything if r["model"] == MODEL]
    # recommend (and the report, which draws recommend's frontier)
    rec = recommend(mine, "latency")
    rec_front = {r["result_id"] for r in rec["frontier"]}
    # the app: its Pareto star (SQL, one model's query and the whole store's) and its chart
    star_model = stored.frontier_ids(ResultQuery(model=MODEL))
    star_all = stored.frontier_ids(ResultQuery()) & {r["id"] for r in mine}
    _, one_pass = stored.counts_and_frontier(ResultQuery(text="onnxruntime"))
    _, chart = analysis.frontier_results(everything, "p50", MODEL)
    python_all = {r["id"] for r in analysis.frontier_results(everything, "p50")[1] if r["model"] == MODEL}
    by_id = {r["id"]: r["method"] for r in everything}
    assert rec_front == star_model == star_all == {r["id"] for r in chart} == python_all
    assert one_pass & {r["id"] for r in mine} == rec_front
    # on it: int4 (fastest), dynamic-int8 (better, next fastest), fp16 (top-1 1.0, faster than fp32);
    # not the export validation (faster than all, agreement 1.0), not the other model's faster fp32
    assert {by_id[i] for i in rec_front} == {"int4", "dynamic-int8", "fp16"}
    assert _validation(everything)["id"] not in star_all | star_model | rec_front
    assert stored.frontier_ids(ResultQuery(model=OTHER)) == {r["id"] for r in everything if r["model"] == OTHER}
    pytest.importorskip("plotly")
    from engines.analysis.report import charts

    trace = next(t for t in dict(charts(mine))["Quality vs latency"].data if t.name == "Pareto frontier")
    assert sorted(trace.x) == sorted((r["latency_ms"] or {})["p50"] for r in mine if r["id"] in rec_front)


def _validation(results: list[dict]) -> dict:
    return next(r for r in results if rules.is_validation(r))


def test_every_view_gives_the_same_quality_verdict(stored):
    everything = stored.results()
    mine = [r for r in everything if r["model"] == MODEL]  # the export validation included
    rows = {r["result"]["method"]: r for r in assess(latest(mine))}
    for method, row in rows.items():
        r = row["result"]
        verdict = rules.keeps_quality(r)
        assert within_budget(row, None, None) == verdict, method  # recommend's default budget
        if not rules.is_reference(r):
            assert agrees("classification", r["agreement"]) == verdict, method  # export validation
    assert [m for m in rows if not rules.keeps_quality(rows[m]["result"])] == ["int4"]
    # export's pick_best, the device choice and recommend choose the same variant: int4 (faster)
    # does not keep the answers, and the export validation (faster still) is not a variant
    best = pick_best([r for r in mine if r["run_id"] in ("r1", "r3")], "latency")
    assert best["method"] == "dynamic-int8" and best["run_id"] == "r1"
    assert [(e["label"], e["runtime"]) for e in choose_device(mine)["evidence"]] == [("dynamic-int8", "onnxruntime")]
    assert recommend(mine, "latency")["best"]["label"] == "dynamic-int8"


def test_an_export_validation_is_never_latest_nor_a_reference(stored):
    assert stored.latest_run_id() == "r2"
    assert stored.latest_run_id(include_exports=True) == "r3"
    everything = stored.results()
    validation = _validation(everything)
    assert validation not in latest(everything)
    as_fp32 = {**validation, "method": "fp32", "recipe": [{"method": "fp32", "config": {}}]}
    assert rules.fp32_reference({**as_fp32, "metrics": {}}, [as_fp32]) is None  # never a reference
    rec = recommend([r for r in everything if r["model"] == MODEL], "latency")
    assert all(r["run_id"] != "r3" for r in [rec["best"], *rec["frontier"]])


def test_the_reference_comes_from_the_method_spec():
    assert rules.reference_methods() == {"fp32"}
    assert rules.is_reference({"method": "fp32", "recipe": [{"method": "fp32", "config": {}}]})
    assert not rules.is_reference({"method": "fp32", "recipe": [{"method": "fp32"}, {"method": "int4"}]})
    assert not rules.is_reference({"method": "dynamic-int8"})


def test_a_frontier_ignores_order_and_ties():
    assert rules.pareto([]) == []
    assert rules.pareto([(2.0, 0.9), (1.0, 0.8), (1.0, 0.95), (3.0, 0.95), (4.0, 0.99)]) == [2, 4]


# --- the rules are written once ---------------------------------------------------------------------

ALLOWED = {
    "engines/analysis/rules.py": "the rules themselves",
    "engines/passes/mixed_passes.py": "a mixed-precision layer pin ('fp32' or 'quant'), not the reference",
}
FORBIDDEN = re.compile(r"""\bMIN_TOP1\b|\bMIN_COSINE\b|[!=]=\s*['"]fp32['"]|['"]fp32['"]\s*[!=]=""")


def test_the_quality_bars_and_the_reference_test_live_in_rules_only():
    """No quality-bar constants and no ``== "fp32"`` outside rules.py: a view asks
    ``rules.keeps_quality`` / ``rules.is_reference``. The method registry (engines/methods)
    declares the reference (``is_reference=True``) and the mixed method's pins."""
    assert source_lines_matching(FORBIDDEN, ALLOWED, ("engines/methods/",)) == []
