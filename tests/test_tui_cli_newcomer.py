"""The command line as a new user meets it: the version, ids to copy, comparing two results with
units on every figure, an empty filter explained, tables that fit the terminal. The real CLI
(``qbench_tui.cli.main``) on a real SQLite store."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from helpers import qbench
from test_tui_support import RUN_A, RUN_B, _result, fill_store

from engines import __version__
from engines.analysis.compare import compare
from qbench_tui.cli import main


def _rounds(p50s: list[float]) -> list[dict]:
    return [{"round": i, "latency": {"p50": p}} for i, p in enumerate(p50s)]


@pytest.fixture
def filled(store, db_path):
    fill_store(store)
    return store, db_path


def _ids(store, run_id: str) -> dict[str, int]:
    return {r["method"]: r["id"] for r in store.results(run_id=run_id) if r["runtime"] == "onnxruntime"}


def test_version_flag_names_qbench_python_and_the_platform():
    proc = qbench("--version")
    assert proc.returncode == 0 and proc.stdout.startswith(f"qbench {__version__} (Python "), proc.stdout


def test_compare_shows_the_dialogs_rows_with_units_ratios_and_intervals(store, db_path, capsys):
    request = {"model": "digits-mlp", "methods": ["fp32", "dynamic-int8"], "runtimes": ["onnxruntime"],
               "devices": ["cpu"], "batch_sizes": [1], "configs": {}, "measure": {}}
    store.create_run(RUN_A, "digits-mlp", request, {}, "cli")
    a = {**_result("fp32", "ok", 0.120, 0.9778, 4.30), "rounds": _rounds([0.12, 0.13, 0.11])}
    b = {**_result("dynamic-int8", "ok", 0.060, 0.9761, 1.10), "rounds": _rounds([0.06, 0.0585, 0.066])}
    ida, idb = store.add_result(RUN_A, a), store.add_result(RUN_A, b)

    assert main(["compare", str(ida), str(idb), "--db", str(db_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["a"]["id"] == ida and data["b"]["id"] == idb
    rows = {m["metric"]: m for m in data["metrics"]}
    expected = {row.label: row for row in compare(store.results(where="id = ?", params=[ida])[0],
                                                  store.results(where="id = ?", params=[idb])[0])}
    p50 = rows["latency p50"]
    assert p50["unit"] == "ms" and p50["ratio_b_over_a"] == pytest.approx(0.5)
    # Rounds of one run pair by number: B/A per round is 0.5, 0.45, 0.6.
    assert (p50["ratio_low"], p50["ratio_high"], p50["rounds"]) == (pytest.approx(0.45), pytest.approx(0.6), 3)
    assert p50["ratio_low"] == pytest.approx(expected["latency p50"].low)
    assert all(m["unit"] or m["metric"] == "cosine" for m in data["metrics"]), data["metrics"]
    assert data["faster"] == {"which": "B", "times": pytest.approx(2.0), "at": "p50"}

    assert main(["compare", str(ida), str(idb), "--db", str(db_path)]) == 0
    table = capsys.readouterr().out
    assert f"(id {ida}, run {RUN_A})" in table and f"(id {idb}, run {RUN_A})" in table
    assert re.search(r"latency p50 .*0\.120 ms .*0\.060 ms .*×0\.50 \(×0\.45–×0\.60 over 3 rounds\)", table), table
    assert re.search(r"accuracy .*97\.8 % .*97\.6 %", table) and re.search(r"size on disk .*4\.30 MB", table)
    assert "B is ×2.00 faster at the median" in table


def test_compare_across_runs_matches_their_variants_and_names_a_missing_id(filled, capsys):
    store, db = filled
    a, b = _ids(store, RUN_A)["fp32"], _ids(store, RUN_B)["fp32"]
    assert main(["compare", str(a), str(b), "--db", str(db), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    variants = {r["variant"] for r in data["runs"]}
    assert {"fp32", "dynamic-int8", "static-int8"} <= variants
    assert main(["compare", str(a), "999", "--db", str(db)]) == 2
    assert "no result 999" in capsys.readouterr().err


def test_results_csv_has_the_id_and_an_unknown_model_is_explained(filled, capsys):
    store, db = filled
    assert main(["results", "--db", str(db), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {int(r["id"]) for r in rows} == {r["id"] for r in store.results()}
    assert main(["results", "--db", str(db), "--model", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no model 'nope' has results" in err and "models with results: digits-mlp" in err


def _render(table, width: int, terminal: bool = True) -> list[str]:
    from rich.console import Console

    console = Console(width=width, force_terminal=terminal, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text().splitlines()


def test_tables_fit_the_terminal_by_priority_and_wide_or_piped_shows_every_column(filled):
    from rich.console import Console

    from qbench_tui.cli.output import results_table

    store, _ = filled
    results = store.results()
    narrow = Console(width=90, force_terminal=True, file=io.StringIO())
    lines = _render(results_table(results, console=narrow), 90)
    header = next(line for line in lines if "p50 ms" in line)
    assert all(len(line) <= 90 for line in lines), max(map(len, lines))
    for figure in ("id", "recipe", "status", "p50 ms", "speedup", "acc"):
        assert figure in header, header
    assert "SQNR" not in header and any("--wide shows all" in line for line in lines)
    # --wide, or a pipe: every column, none cut.
    for table in (results_table(results, console=narrow, wide=True),
                  results_table(results, console=Console(width=1000, file=io.StringIO()))):
        lines = _render(table, 1000, terminal=False)
        header = next(line for line in lines if "p50 ms" in line)
        assert all(col in header for col in ("runtime", "p99 ms", "items/s", "SQNR dB", "top1", "note")), header
        assert not any("…" in line or "--wide" in line for line in lines)


def test_devices_piped_is_whole_and_run_help_shows_the_measuring_defaults():
    proc = qbench("devices")
    assert proc.returncode == 0
    header = next(line for line in proc.stdout.splitlines() if "present" in line)
    assert "runtimes" in header and "auto recipes" in header and "--wide" not in proc.stdout
    helptext = " ".join(qbench("run", "--help", env={"COLUMNS": "200"}).stdout.split())
    assert "minimum measuring seconds per batch size (default 1.0)" in helptext
    assert "minimum timed repetitions per batch size (default 30)" in helptext


def test_auto_dry_run_explains_its_markers(tmp_path, capsys):
    assert main(["auto", "--models", "digits-mlp", "--budget", "3", "--dry-run", "--db", str(tmp_path / "q.db")]) == 0
    lines = capsys.readouterr().out.splitlines()
    legend = next(i for i, line in enumerate(lines) if "•" in line and "–" in line and "×" in line)
    assert legend < next(i for i, line in enumerate(lines) if line.startswith("  • "))
    assert "measured within the budget" in lines[legend] and "refused on this machine" in lines[legend]


def test_fit_shortens_identifiers_then_drops_the_weakest_and_gives_back_what_is_left():
    from qbench_tui.fit import FitColumn, fit_widths

    cols = [FitColumn("model", 12, 2, shrink=6), FitColumn("p50", 8, 1), FitColumn("when", 11, 6),
            FitColumn("note", 20, 4, shrink=10)]
    assert fit_widths(cols, 200) == {"model": 12, "p50": 8, "when": 11, "note": 20}
    # 12 + 8 + 11 + 10 (note shortened) + 2 per column = 49
    assert fit_widths(cols, 49) == {"model": 12, "p50": 8, "when": 11, "note": 10}
    # Too narrow even shortened: "when" (priority 6) goes; the room it leaves lengthens the note again.
    assert fit_widths(cols, 40) == {"model": 12, "p50": 8, "note": 14}
    # Priority 1 stays however narrow.
    assert list(fit_widths(cols, 5)) == ["p50"]
    # A weak but small column dropped before a wide one comes back once the wide one has gone.
    cols = [FitColumn("p50", 8, 1), FitColumn("big", 30, 3), FitColumn("small", 4, 5)]
    assert fit_widths(cols, 20) == {"p50": 8, "small": 4}
