"""The TUI's pure parts: analysis (filter, sort, Pareto, compare), settings, themes, set-up parsing."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest
from test_tui_support import RUN_A, RUN_B, _result

from qbench_tui import analysis
from qbench_tui.analysis import ResultFilter
from qbench_tui.controllers.sweep import SetupError, SweepSetup, describe_error
from qbench_tui.settings import MEASURE_DEFAULTS, AppSettings, measure_from_env
from qbench_tui.themes import load_theme_file, load_themes, theme_dirs
from qbench_tui.widgets.sweep_setup import parse_batch_sizes


def _results():
    out = []
    for run_id, rows in ((RUN_A, [_result("fp32", "ok", 0.12, 0.978, 4.3), _result("dynamic-int8", "ok", 0.06, 0.976, 1.1),
                                  _result("int4", "ok", 0.09, 0.961, 0.6)]),
                         (RUN_B, [_result("fp32", "ok", 0.10, 0.978, 4.3),
                                  _result("static-int8", "failed", None, None, 0, error="boom")])):
        for r in rows:
            out.append({**r, "run_id": run_id})
    return out


def test_pareto_frontier_keeps_only_undominated_points():
    points = [(1.0, 0.90), (2.0, 0.95), (1.5, 0.80), (3.0, 0.95), (0.5, 0.70), (2.5, 0.99)]
    frontier = analysis.pareto_frontier(points)
    assert [points[i] for i in frontier] == [(0.5, 0.70), (1.0, 0.90), (2.0, 0.95), (2.5, 0.99)]
    assert analysis.pareto_frontier([]) == []


def test_frontier_results_ignores_failed_and_uses_agreement_without_labels():
    rs = _results()
    plotted, frontier = analysis.frontier_results(rs)
    assert all(r["status"] == "ok" for r in plotted) and len(plotted) == 4
    assert [r["method"] for r in frontier] == ["dynamic-int8", "fp32"]
    no_labels = {**rs[2], "accuracy": None}
    assert analysis.quality(no_labels) == 0.99  # top-1 agreement stands in


def test_filter_by_fields_and_text():
    rs = _results()
    assert len(analysis.filter_results(rs, ResultFilter(status="ok"))) == 4
    assert len(analysis.filter_results(rs, ResultFilter(run_id=RUN_B))) == 2
    assert [r["method"] for r in analysis.filter_results(rs, ResultFilter(text="boom"))] == ["static-int8"]
    assert len(analysis.filter_results(rs, ResultFilter(text="int8 ok"))) == 1
    assert not ResultFilter().active and ResultFilter(method="fp32").active


@pytest.mark.parametrize("column", [c.key for c in analysis.COLUMNS])
def test_sort_by_every_column_puts_missing_values_last(column):
    rs = _results()
    ctx = {"runs": {}, "speedups": analysis.speedups(rs)}
    for reverse in (False, True):
        ordered = analysis.sort_results(rs, column, reverse, ctx)
        values = [analysis.COLUMN_BY_KEY[column].value(r, ctx) for r in ordered]
        present = [v for v in values if v is not None]
        assert present == sorted(present, reverse=reverse)
        assert values[len(present):] == [None] * (len(values) - len(present))


def test_speedup_is_relative_to_fp32_of_the_same_run():
    sp = analysis.speedups(_results())
    key = analysis.result_key({**_results()[1]})
    assert sp[key] == pytest.approx(0.12 / 0.06)


def test_compare_ratios_and_verdicts():
    a, b = _results()[0], _results()[1]
    rows = {row.label: row for row in analysis.compare(a, b)}
    assert rows["latency p50"].ratio == pytest.approx(0.5)
    assert rows["latency p50"].verdict == "better"
    assert rows["size on disk"].verdict == "better"
    assert rows["accuracy"].verdict == ""  # within 2 %
    assert rows["throughput"].verdict == "better"


def test_match_runs_pairs_the_same_variant():
    rs = _results()
    pairs = analysis.match_runs([r for r in rs if r["run_id"] == RUN_A], [r for r in rs if r["run_id"] == RUN_B])
    by_method = {(a or b)["method"]: (a, b) for a, b in pairs}
    assert by_method["fp32"][0] and by_method["fp32"][1]
    assert by_method["int4"][1] is None and by_method["static-int8"][0] is None


def test_model_history_keeps_the_fastest_per_variant():
    rs = _results()
    hist = analysis.model_history(rs, "digits-mlp", {RUN_A: {"created_at": "2026-11-20T10:00:00+00:00"},
                                                     RUN_B: {"created_at": "2026-11-25T14:30:00+00:00"}})
    assert hist.runs == 2 and hist.measurements == 5
    assert hist.last_run == "2026-11-25T14:30:00+00:00"
    fp32 = [r for r in hist.best if r["method"] == "fp32"]
    assert len(fp32) == 1 and fp32[0]["latency_ms"]["p50"] == 0.10


def _int4(group_size: int, p50: float, run_id: str = RUN_A) -> dict:
    """An int4 result as the recipe-aware engine writes it (label, recipe id, passes)."""
    return {**_result("int4", "ok", p50, 0.96, 0.6 if group_size == 128 else 0.7), "run_id": run_id,
            "label": f"int4(g{group_size})", "recipe_id": f"r-int4-g{group_size}",
            "passes": ["export-onnx", "ort-nbits"], "runtime_config": {"threads": 4},
            "config": {"version": 1, "group_size": group_size}}


def test_two_settings_of_one_method_are_two_variants_named_by_their_labels():
    g32, g128 = _int4(32, 0.08), _int4(128, 0.07)
    assert analysis.result_key(g32) != analysis.result_key(g128)
    assert analysis.variant_key(g32) != analysis.variant_key(g128)
    assert analysis.variant_label(g128) == "int4(g128) · onnxruntime · cpu · bs 1"
    method = analysis.COLUMN_BY_KEY["method"]
    assert [method.text(r, {}) for r in (g32, g128)] == ["int4(g32)", "int4(g128)"]
    assert [r["label"] for r in analysis.filter_results([g32, g128], ResultFilter(text="g128"))] == ["int4(g128)"]
    assert len(analysis.filter_results([g32, g128], ResultFilter(method="int4"))) == 2  # the method filters the family
    # Matched across runs by recipe, kept apart in a model's history.
    pairs = analysis.match_runs([g32, g128], [_int4(128, 0.06, RUN_B)])
    assert [(a["label"] if a else None, b["label"] if b else None) for a, b in pairs] == [
        ("int4(g32)", None), ("int4(g128)", "int4(g128)")]
    history = analysis.model_history([g32, g128, _int4(128, 0.06, RUN_B)], "digits-mlp", {})
    assert sorted(analysis.variant_label(r) for r in history.best) == [
        "int4(g128) · onnxruntime · cpu · bs 1", "int4(g32) · onnxruntime · cpu · bs 1"]


def test_older_results_without_a_label_are_named_by_their_method():
    old = _results()[2]
    assert "label" not in old and "recipe_id" not in old
    assert analysis.display_label(old) == "int4"
    assert analysis.variant_label(old) == "int4 · onnxruntime · cpu · bs 1"
    assert analysis.result_key(old) == f"{RUN_A}/int4/onnxruntime/cpu/1"


def test_number_formatting():
    assert analysis.fmt_num(None) == "–"
    assert analysis.fmt_num(math.inf) == "∞"
    assert analysis.fmt_num(0.12345) == "0.123"
    assert analysis.fmt_num(12.345) == "12.35"
    assert analysis.fmt_num(1234.5) == "1,234"
    assert analysis.fmt_num(1200) == "1,200"
    assert analysis.fmt_params(1_127_434) == "1.1M"
    assert analysis.fmt_ratio(1.914) == "×1.91"
    assert analysis.fmt_duration(75) == "1:15"


def test_measure_defaults_match_the_engine():
    from engines.bench.measure import MeasureSettings

    engine = asdict(MeasureSettings())
    assert {k: engine[k] for k in MEASURE_DEFAULTS} == MEASURE_DEFAULTS


def test_settings_round_trip_and_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "settings.json"
    settings = AppSettings.load(path)  # missing file: defaults
    settings.theme = "qbench-light"
    settings.last_setup = {"model": "digits-cnn"}
    settings.save()
    again = AppSettings.load(path)
    assert again.theme == "qbench-light" and again.last_setup == {"model": "digits-cnn"}
    path.write_text("{not json")
    assert AppSettings.load(path).theme == "qbench-dark"  # damaged file: defaults, no error
    monkeypatch.setenv("QBENCH_MEASURE_MIN_TIME", "0.05")
    monkeypatch.setenv("QBENCH_MEASURE_MIN_REPS", "bad")
    assert measure_from_env() == {"min_time_s": 0.05}
    assert AppSettings().measure_settings()["min_time_s"] == 0.05


def test_repository_themes_load_and_cover_dark_light_high_contrast():
    themes, problems = load_themes()
    assert problems == []
    names = {t.theme.name for t in themes}
    assert {"qbench-dark", "qbench-light", "qbench-high-contrast"} <= names
    assert not next(t for t in themes if t.theme.name == "qbench-light").theme.dark
    assert theme_dirs()[0].name == "themes" and theme_dirs()[1].name == "themes_data"


def test_a_broken_theme_file_is_reported_not_raised(tmp_path: Path):
    (tmp_path / "good.toml").write_text('name = "good"\nprimary = "#336699"\n')
    (tmp_path / "typo.toml").write_text('name = "typo"\nprimray = "#336699"\n')
    (tmp_path / "bad.toml").write_text("name = [")
    themes, problems = load_themes([tmp_path])
    assert [t.theme.name for t in themes] == ["good"]
    assert len(problems) == 2 and any("primray" in p for p in problems)
    with pytest.raises(ValueError, match="typo.toml"):
        load_theme_file(tmp_path / "typo.toml")


def test_batch_sizes_parse_and_explain_mistakes():
    assert parse_batch_sizes("1, 8,32") == (1, 8, 32)
    assert parse_batch_sizes("4 4 1") == (4, 1)
    for bad in ("", "a", "0", "1, -2"):
        with pytest.raises(SetupError):
            parse_batch_sizes(bad)


def test_setup_round_trips_through_json():
    setup = SweepSetup.of(model="digits-mlp", methods=("fp32",), runtimes=("onnxruntime",), batch_sizes=(1, 8),
                          configs={"int4": {"group_size": 64}}, choose_device=True)
    assert json.loads(json.dumps(setup.to_dict()))["batch_sizes"] == [1, 8]
    assert setup.measurement_count == 2 and setup.devices == ("cpu",)  # a field left out: the request's default
    assert SweepSetup.from_dict(json.loads(json.dumps(setup.to_dict()))) == setup


def test_the_setups_fields_are_the_requests():
    """The set-up declares no field of the engine's request: each reads through from
    SweepRequest's own fields (so a field added there is one the app can set), and a name the
    request lacks is refused where it is given."""
    import dataclasses

    from engines.bench.request import SweepRequest

    setup = SweepSetup.of(model="digits-mlp", methods=["fp32"], runtimes=["onnxruntime"])
    request_fields = [f.name for f in dataclasses.fields(SweepRequest)]
    assert not set(request_fields) & {f.name for f in dataclasses.fields(SweepSetup)}
    for name in request_fields:
        getattr(setup, name)  # every request field reads, given or not
    assert setup.threads is None and setup.timeout_s == 900.0 and setup.measure["min_reps"] >= 1
    with pytest.raises(SetupError, match="no setting batch_size"):
        SweepSetup.of(model="digits-mlp", methods=["fp32"], runtimes=["onnxruntime"], batch_size=[1])


def test_the_setup_becomes_the_engines_request():
    from qbench_tui.controllers.sweep import build_request

    setup = SweepSetup.of(model="digits-mlp", methods=("int4",), runtimes=("onnxruntime",), devices=("cpu",),
                          batch_sizes=(1,), configs={"int4": {"group_size": 64}}, threads=2,
                          measure={"min_time_s": 0.05, "min_reps": 5}, model_options={"seq_len": 64})
    request = build_request(setup)
    assert request.recipes()[0].steps[0].group_size == 64
    assert request.measure.min_time_s == 0.05 and request.threads == 2
    assert request.model_options == {"seq_len": 64}
    with pytest.raises(ValueError):
        build_request(SweepSetup.of(model="digits-mlp", methods=("int4",), runtimes=("onnxruntime",),
                                    configs={"int4": {"group_size": 3}}))


def test_errors_read_as_one_line():
    assert describe_error(ValueError("bad batch size")) == "bad batch size"
    assert describe_error(RuntimeError("x")) == "RuntimeError: x"
    assert describe_error(KeyError()) == "KeyError"


def test_method_specs_are_written_in_the_clis_syntax():
    from qbench_tui.controllers.sweep import method_spec, pin_spec, spec_method

    assert method_spec("int4", {"group_size": 128, "symmetric": False}) == "int4:group_size=128:symmetric=false"
    assert method_spec("int4", {}) == "int4" and spec_method("int4:group_size=128") == "int4"
    with pytest.raises(SetupError, match="cannot be written"):
        method_spec("x", {"name": "a:b"})
    defaults = {"group_size": 32, "symmetric": True}
    assert pin_spec("int4:group_size=128", {"symmetric": False}, defaults) == "int4:group_size=128:symmetric=true"
    assert pin_spec("int4:group_size=128", {"group_size": 64}, defaults) == "int4:group_size=128"
    assert pin_spec("int4:group_size=128", {}, defaults) == "int4:group_size=128"


@pytest.mark.parametrize("argv", [[], ["tui"], ["--db", "x.db"], ["--db=x.db"], ["tui", "--db", "/a b/c.db"],
                                  ["tui", "--db=y"]])
def test_a_plain_start_reads_its_arguments_as_the_parser_would(argv):
    from qbench_tui.cli import app_args, build_parser

    assert app_args(argv).db == getattr(build_parser().parse_args(argv), "db", None)


@pytest.mark.parametrize("argv", [["run"], ["--db"], ["--db", "--help"], ["--d", "x"], ["--db", "x", "run"],
                                  ["--db="], ["tui", "--db", "x", "y"], ["-h"], ["--db", "x", "--db", "y"]])
def test_anything_else_is_left_to_the_parser(argv):
    from qbench_tui.cli import app_args

    assert app_args(argv) is None
