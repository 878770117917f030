"""``--methods auto`` as a search: short screening runs, the finalists measured fully, the best
that keeps quality with the runners-up and why each lost; a budget bounds it. Real sweeps of
digits-mlp (torch and ONNX Runtime), quick timing."""

from __future__ import annotations

import threading

import pytest

from engines import api
from engines.bench.autosearch import summary_lines
from engines.bench.runner import SweepInterrupted, SweepRunner
from engines.devices.isa import CpuFeatures
from engines.devices.strategies import CPU_LEFT_OUT, cpu_strategies, session_settings
from engines.store import Store

QUICK = {"min_time": 0.02, "min_reps": 5, "repeat": 1}


def _runner(store: Store):
    def run_one(request, cancel: threading.Event):
        try:
            out = SweepRunner(store, cancel=cancel, source="api").run(request)
        except SweepInterrupted as exc:
            return str(exc), "interrupted", store.results(str(exc))
        return out.run_id, out.status, out.results

    return run_one


def test_bf16_is_a_candidate_only_where_the_cpu_computes_it():
    base = ("avx2", "avx512f", "avx512_vnni")
    with_bf16 = [s.spec for s in cpu_strategies(CpuFeatures("x86_64", (*base, "avx512_bf16"), "t"))]
    without = [s.spec for s in cpu_strategies(CpuFeatures("x86_64", base, "t"))]
    assert "bf16" in with_bf16 and "bf16" not in without
    # the recipes measured slower than fp32 on x86 are not proposed, and the reason is on record
    for spec in CPU_LEFT_OUT:
        assert spec not in with_bf16 and spec not in without
    assert "0.17×" in CPU_LEFT_OUT["int4"]


def test_standardized_sweep_leaves_out_torch_int4_on_a_cpu_saying_why():
    from engines.analysis.families import candidates
    from engines.devices.strategies import cpu_left_out

    found, refused = candidates("encoder", ["cpu"], ["onnxruntime", "torch"])
    planned = {(c.spec, c.runtime) for c in found}
    assert ("int4", "torch") not in planned and ("int4", "onnxruntime") in planned
    why = next(r["reason"] for r in refused if r["spec"] == "int4" and r["runtime"] == "torch")
    assert why.startswith("left out on this CPU") and "0.17×" in why
    assert cpu_left_out("int4", "torch", "cuda") is None
    assert cpu_left_out("static-int8:activation_type=int8:per_channel=true", "onnxruntime", "cpu")


def test_a_search_that_measured_nothing_says_so_rather_than_that_nothing_kept_quality():
    runs = [{"phase": "screening", "run_id": "a", "status": "interrupted", "results": 0},
            {"phase": "finals", "run_id": "b", "status": "interrupted", "results": 0}]
    lines = summary_lines({"best": None, "runners_up": [], "runs": runs, "wall_s": 90, "budget_s": 90})
    assert lines[0].startswith("best: nothing was measured") and "another" in lines[0]
    runs[1]["results"] = 2  # finals measured, none kept quality: the other sentence
    assert summary_lines({"best": None, "runners_up": [], "runs": runs})[0].startswith("best: none of the finals")


def test_a_search_where_nothing_runs_here_skips_the_finals_and_says_so(tmp_path):
    """Every candidate refused in the screening (a device this machine lacks): no second sweep
    builds the same variants to be refused again; the refusals are the results and the answer."""
    from engines.bench.autosearch import search

    store = Store(tmp_path / "q.db")
    try:
        prepared = api.prepare("digits-mlp", methods=["auto"], runtimes=["torch"], devices=["mps"], **QUICK)
        found = search(prepared.request, prepared.explicit, [s.spec for s in prepared.strategies],
                       _runner(store), settings=[])
    finally:
        store.close()
    report = found["report"]
    assert [r["phase"] for r in report["runs"]] == ["screening"] and report["best"] is None
    assert report["finals_skipped"] and found["results"]
    assert all(r["status"] == "unsupported" for r in found["results"])
    lines = summary_lines(report)
    assert lines[0].startswith("best: none: the screening measured nothing here") and "no finals" in lines[0]


def test_a_noisy_fp32_reference_is_named_beside_the_paired_ratio():
    from engines.analysis import rules

    def row(rid, method, runtime, p50s, spread=None, stored=None):
        return {"id": rid, "run_id": "r", "model": "m", "host": "h", "runtime": runtime, "device": "cpu",
                "batch_size": 1, "status": "ok", "method": method, "recipe": [{"method": method}],
                "latency_ms": {"p50": sorted(p50s)[len(p50s) // 2]}, "spread": spread,
                "metrics": {"speedup_vs_fp32": stored} if stored else {},
                "rounds": [{"round": i, "latency": {"p50": v}} for i, v in enumerate(p50s)]}

    # the fp32's third round is disturbed: its median is 20 ms, but round by round int8 is 2× it
    fp32 = row(1, "fp32", "onnxruntime", [16.0, 20.0, 30.0], spread=0.7)
    torch_fp32 = row(2, "fp32", "torch", [18.0, 18.0, 18.0], spread=0.0)
    int8 = row(3, "dynamic-int8", "onnxruntime", [8.0, 10.0, 15.0], stored={"ratio": 9.0, "low": 9, "high": 9})
    found = rules.speedup_over(fp32, int8)
    assert found["ref_unsteady"] and found["ref_spread"] == 0.7
    # the ratio stored beside a result is against its own runtime's fp32 only
    assert rules.speedup(torch_fp32, int8)["ratio"] == 18.0 / 10.0
    assert rules.speedup(fp32, int8)["ratio"] == 9.0
    report = {"best": {"variant": "dynamic-int8 · onnxruntime · cpu", "p50_ms": 10.0, "quality": "cosine 0.99",
                       "vs_fastest_fp32": 2.0, "speedup": {**rules.speedup_over(fp32, {**int8, "metrics": {}})}},
              "fastest_fp32": "fp32 · onnxruntime · cpu", "runners_up": [], "runs": []}
    assert report["best"]["speedup"]["ratio"] == 2.0  # the median of the per-round ratios (2, 2, 2)
    first = summary_lines(report)[0]
    assert "2.00× the fastest fp32" in first and "paired over 3 interleaved rounds" in first, first
    assert "spread 70%" in first and "noisy reference" in first, first


@pytest.mark.slow  # four real variants of digits-mlp on ONNX Runtime
def test_auto_finals_time_fp32_and_the_finalists_in_the_same_rounds(tmp_path):
    """The finals interleave: fp32 and each finalist are timed once in every round (at least
    FINALS_ROUNDS, whatever --repeat the request had), and the best's ratio over the fastest fp32
    is the median of the per-round ratios, with their range."""
    import statistics

    from engines.bench.autosearch import FINALS_ROUNDS, search

    store = Store(tmp_path / "q.db")
    try:
        prepared = api.prepare("digits-mlp", methods=["auto"], runtimes=["onnxruntime"], **QUICK)
        found = search(prepared.request, prepared.explicit, ["fp32", "dynamic-int8"], _runner(store),
                       finalists=1, settings=[])
    finally:
        store.close()
    report = found["report"]
    assert [r["phase"] for r in report["runs"]] == ["screening", "finals"]
    finals = {r["label"]: r for r in found["results"] if r["status"] == "ok"}
    assert "fp32" in finals and len(finals) >= 2, list(finals)
    rounds = {label: [x["round"] for x in r["rounds"]] for label, r in finals.items()}
    first = rounds["fp32"]
    assert len(first) >= FINALS_ROUNDS and all(v == first for v in rounds.values()), rounds
    best = report["best"]
    if best is None:  # digits-mlp's int8 slower than fp32 here: the paired figure is then its runner-up's
        return
    ref, mine = finals["fp32"], next(r for r in found["results"] if r.get("id") == best["result"])
    paired = [a["latency"]["p50"] / b["latency"]["p50"] for a, b in zip(ref["rounds"], mine["rounds"])]
    s = best["speedup"]
    assert s["rounds"] == len(paired) and s["ratio"] == round(statistics.median(paired), 3)
    assert s["low"] == round(min(paired), 3) and s["high"] == round(max(paired), 3)
    assert best["vs_fastest_fp32"] == s["ratio"] and report["fastest_fp32_spread"] == ref["spread"]
    assert "interleaved rounds" in summary_lines(report)[0]


def test_session_settings_candidates_are_valid_onnx_runtime_settings():
    import onnxruntime as ort

    from engines.core.config import config_from_dict
    from engines.runtimes.ort import OrtRuntimeConfig
    from engines.runtimes.ort.session import session_options

    found = session_settings(cores=2)
    assert {"threads": 1} in found
    for setting in found:
        config = config_from_dict(OrtRuntimeConfig, {k: v for k, v in setting.items() if k != "threads"})
        options = session_options(ort, 2, config)
        if setting.get("spinning") is False:
            assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        if setting.get("graph_level") == "extended":
            assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        if setting.get("execution_mode") == "parallel":
            assert options.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert session_settings(cores=1) == [s for s in found if "threads" not in s]


@pytest.mark.slow  # a dozen real variants (about a minute on two loaded cores)
def test_auto_screens_then_measures_the_finalists_and_says_why_each_lost(tmp_path):
    store = Store(tmp_path / "q.db")
    try:
        prepared = api.prepare("digits-mlp", methods=["fp32", "auto"], runtimes=["onnxruntime", "torch"], **QUICK)
        assert prepared.auto and prepared.explicit == ["fp32"]
        # one session setting keeps the test short; the default list is checked above
        prepared.strategies = [s for s in prepared.strategies if s.spec in ("fp32", "dynamic-int8", "bf16")]
        from engines.bench.autosearch import search

        found = search(prepared.request, prepared.explicit, [s.spec for s in prepared.strategies],
                       _runner(store), finalists=1, settings=[{"spinning": False}])
    finally:
        store.close()
    report = found["report"]
    phases = [r["phase"] for r in report["runs"]]
    assert phases[0] == "screening" and "finals" in phases and "settings" in phases
    screening = next(r for r in report["runs"] if r["phase"] == "screening")
    assert screening["results"] == 3 * 2  # every candidate on both runtimes, fp32 first
    finals = found["results"]
    assert {r["method"] for r in finals} >= {"fp32"} and len(report["finalists"]) >= 1
    best = report["best"]
    assert best is not None and best["keeps"] and best["why"] is None
    assert best["vs_fastest_fp32"] is not None and best["p50_ms"] > 0
    whys = {e["variant"]: e["why"] for e in report["runners_up"]}
    assert all(whys.values()), whys  # every runner-up says why it lost
    # bf16 runs on torch only: ONNX Runtime refuses it
    assert any(v.startswith("bf16 · onnxruntime") and w.startswith("refused") for v, w in whys.items()), whys
    lines = summary_lines(report)
    assert lines[0].startswith("best: ") and lines[-1].startswith("search: ")


@pytest.mark.slow
def test_a_budget_bounds_the_search_and_says_what_it_left_out(tmp_path):
    import time

    t0 = time.monotonic()
    sweep = api.sweep("digits-mlp", methods=["auto"], runtimes=["onnxruntime", "torch"], db=tmp_path / "q.db",
                      budget=0.25, **QUICK)  # 15 s: screening stops at 9 s, the finals at the end
    wall = time.monotonic() - t0
    report = sweep.auto
    assert report is not None and report["budget_s"] == 15
    assert report["runs"][0]["phase"] == "screening"
    # the stop lands between or inside variants; ending a child and storing take a few seconds more
    assert wall < 15 + 30, wall
    cut = report["not_screened"] > 0 or any(r["status"] == "interrupted" for r in report["runs"]) \
        or len(report["runs"]) < 3
    assert cut, report["runs"]
    assert "15-second" not in summary_lines(report)[-1] and "0.25-minute budget" in summary_lines(report)[-1]


def test_budget_without_auto_is_a_usage_error(tmp_path, capsys):
    from qbench_tui.cli import main

    code = main(["--db", str(tmp_path / "q.db"), "run", "--model", "digits-mlp", "--methods", "fp32",
                 "--budget", "1"])
    assert code != 0
    assert "--budget bounds the search of --methods auto" in capsys.readouterr().err


def test_the_export_dialog_offers_every_export_format():
    from engines.export import EXPORT_FORMATS
    from qbench_tui.screens.export_model import FORMATS

    assert [f for f, _ in FORMATS] == list(EXPORT_FORMATS)
    assert dict(FORMATS)["gguf"].startswith("GGUF")


def test_the_apps_auto_choice_searches(store):
    """The app's set-up with "auto" carries auto's candidates apart from the methods named with it
    (the controller then screens and measures finalists, as the CLI does)."""
    import asyncio

    from test_tui_support import DEVICES, MODELS, SAMPLE, fixed_reasons, test_settings, wait_ready

    from qbench_tui.app import make_app
    from qbench_tui.system import FixedSystem
    from qbench_tui.widgets.sweep_setup import SweepSetupPane

    async def scenario():
        system = FixedSystem(device_list=list(DEVICES), models=list(MODELS), reasons=fixed_reasons(),
                             fixed_sample=SAMPLE)
        app = make_app(store=store, settings=test_settings(), system=system)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_ready(pilot)
            pane = app.query_one(SweepSetupPane)
            pane.apply_setup({"methods": ["fp32", "static-int8", "auto"], "runtimes": ["onnxruntime", "torch"],
                              "devices": ["cpu"], "batch_sizes": [1]})
            await pilot.pause()
            return pane.current_setup("digits-mlp")

    setup = asyncio.run(scenario())
    assert setup.explicit == ("fp32", "static-int8")
    assert "fp32" in setup.auto and "static-int8" not in setup.auto and len(setup.auto) >= 2


def test_a_language_models_table_shows_generation_figures_per_runtime():
    """One sweep of tiny-lm on torch, ONNX Runtime and llama.cpp reads as one table: decode tokens/s
    (llama-bench's tg mean ± sd where llama.cpp repeats it), time to first token, perplexity."""
    from rich.console import Console

    from qbench_tui.cli.output import results_table

    def row(runtime, metrics):
        return {"id": 1, "model": "tiny-lm", "label": "int4", "method": "int4", "runtime": runtime, "device": "cpu",
                "batch_size": 1, "status": "ok", "latency_ms": {"p50": 17.5}, "metrics": metrics, "run_id": "r"}

    results = [row("onnxruntime", {"decode_tokens_per_s": 1472.0, "ttft_ms": 1.41, "perplexity": 9.954}),
               row("llama.cpp", {"decode_tokens_per_s": 292.8, "tg_tokens_per_s": 335.0, "tg_tokens_per_s_sd": 45.7,
                                 "ttft_ms": 27.91, "perplexity": 9.932})]
    console = Console(width=250, record=True)
    console.print(results_table(results, console=console, wide=True))
    text = console.export_text()
    assert "tok/s" in text and "TTFT ms" in text and "ppl" in text
    assert "1,472" in text and "335±46" in text and "27.91" in text and "9.932" in text
    plain = [{**results[0], "model": "digits-mlp", "metrics": {}}]
    console = Console(width=250, record=True)
    console.print(results_table(plain, console=console, wide=True))
    assert "tok/s" not in console.export_text()  # not a language model: no generation columns
