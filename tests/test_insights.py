"""Standardized sweeps (``qbench auto``), recommendations, insights per architecture and the HTML
report, on real small sweeps into real SQLite stores, the report opened in a real headless Chromium.

One ``qbench auto`` (digits-mlp and digits-cnn on ONNX Runtime, 5 variants) feeds recommend, insights,
report and the app; a second runs under a time budget that cuts its run off (then resumed).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import qbench, qbench_json

from qbench_tui.cli.auto import stop_margin_s

FAST = ("--min-time", "0.2", "--min-reps", "5", "--repeat", "1")


# --- light: no sweep ----------------------------------------------------------------------------


def test_family_of_each_built_in_model_and_a_declared_family_wins():
    from engines.analysis.families import model_family
    from engines.models import resolve_model

    assert model_family(resolve_model("digits-mlp")) == "mlp"
    assert model_family(resolve_model("digits-cnn")) == "cnn"
    assert model_family(resolve_model("tiny-lm")) == "decoder"
    assert model_family({"name": "all-MiniLM-L6-v2", "task": "embedding"}) == "encoder"
    assert model_family({"name": "efficientnet-lite0", "task": "classification"}) == "cnn"
    assert model_family({"name": "vit-tiny", "task": "image-classification", "description": "ViT"}) == \
        "vision-transformer"
    # The vision branch's attribute, when present, is what counts.
    assert model_family({"name": "x", "task": "classification", "family": "vision-transformer"}) == \
        "vision-transformer"


def test_candidates_come_from_the_table_and_the_catalog():
    from engines import catalog
    from engines.analysis.families import FAMILY_RECIPES, candidates

    found, refused = candidates("cnn", ["cpu"], ["onnxruntime", "torch", "coreml"])
    specs = [c.spec for c in found if c.runtime == "onnxruntime"]
    assert specs[0] == "fp32" and specs[1].startswith("static-int8")  # the CNN row's order, ISA settings swapped in
    assert found[0].runtime == "onnxruntime" and found[0].spec == "fp32"
    # every runnable variant of a runtime comes after its fp32 (a speed-up needs it)
    for runtime in {c.runtime for c in found}:
        mine = [c.spec for c in found if c.runtime == runtime]
        assert mine[0] == "fp32", (runtime, mine)
    # Core ML cannot predict on Linux: refused with the catalog's reason, not dropped silently.
    assert all(r["reason"] for r in refused)
    # methods no family row names are still candidates (picked up from the catalog)
    named = {s.split(":")[0] for rows in FAMILY_RECIPES.values() for s, _ in rows}
    extra = [m for m in catalog.METHODS if m not in named]
    listed = {c.spec.split(":")[0] for c in found} | {r["spec"].split(":")[0] for r in refused}
    assert set(extra) <= listed


@pytest.mark.parametrize("args, message", [
    (("auto", "--budget", "0"), "at least 1"),
    (("auto", "--budget", "soon"), "expected a time"),
    (("auto", "--models", "no-such-model", "--dry-run"), "unknown model"),
    (("auto", "--models", "digits-mlp", "--runtimes", "nope", "--dry-run"), "unknown runtime"),
    (("recommend", "--model", "digits-mlp"), "no stored results"),
    (("recommend", "--model", "digits-mlp", "--max-accuracy-drop", "1", "--min-agreement", "0.9"), "not allowed"),
    (("report", "--model", "digits-mlp", "--html", "/nonexistent/dir/r.html"), "no stored results"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    from qbench_tui.cli import main

    try:
        code = main([*args, "--db", str(tmp_path / "q.db")])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    last = err.strip().splitlines()[-1]  # argparse prints its usage lines first
    assert message in last and "Traceback" not in err, err


def test_auto_dry_run_prints_the_plan_per_family(tmp_path, capsys):
    from qbench_tui.cli import main

    assert main(["auto", "--models", "digits-mlp,digits-cnn,tiny-lm", "--budget", "6", "--dry-run",
                 "--db", str(tmp_path / "q.db")]) == 0
    out = capsys.readouterr().out
    assert "digits-mlp (mlp)" in out and "digits-cnn (cnn)" in out and "tiny-lm (decoder)" in out
    assert out.count(": 2 of ") == 3  # 6 variants over 3 models


# --- one real sweep feeds recommend, insights, report, the app -----------------------------------


@pytest.fixture(scope="module")
def auto_sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, dict]:
    """``qbench auto`` over two families under a budget of 5 variants: the store the other tests read."""
    db = tmp_path_factory.mktemp("insights") / "qbench.db"
    proc, data = qbench_json("auto", "--models", "digits-mlp,digits-cnn", "--budget", "5", "--runtimes",
                             "onnxruntime", *FAST, "--db", str(db), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return db, proc, data


@pytest.fixture(scope="module")
def swept(auto_sweep) -> Path:
    return auto_sweep[0]


@pytest.mark.slow
def test_recommend_names_recipe_runtime_device_with_reasons(swept):
    proc = qbench("recommend", "--model", "digits-mlp", "--objective", "latency", "--max-accuracy-drop", "1",
                  "--db", str(swept), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"ship \S+ on onnxruntime · cpu", proc.stdout), proc.stdout
    assert "fp32" in proc.stdout and "within accuracy drop ≤ 1 points" in proc.stdout
    data = json.loads(qbench("recommend", "--model", "digits-mlp", "--json", "--db", str(swept)).stdout)
    best = data["best"]
    assert best["runtime"] == "onnxruntime" and best["device"] == "cpu" and best["label"] in proc.stdout
    assert data["reasons"][0].startswith(best["label"]) and data["objective"] == "latency"
    assert data["frontier"] and best["speedup"] and best["speedup"]["low"] <= best["speedup"]["ratio"]
    # a budget nothing quantized meets leaves fp32, said so
    strict = json.loads(qbench("recommend", "--model", "digits-mlp", "--min-agreement", "1.0", "--objective", "size",
                               "--json", "--db", str(swept)).stdout)
    assert strict["budget"] == "agreement ≥ 1" and strict["best"] is not None


@pytest.mark.slow
def test_insights_table_and_roofline_measured_once(swept):
    import sqlite3

    proc = qbench("insights", "--db", str(swept), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Insights per architecture" in proc.stdout and "mlp" in proc.stdout and "dynamic-int8" in proc.stdout
    data = json.loads(qbench("insights", "--json", "--db", str(swept)).stdout)
    assert "dynamic-int8" in {r["technique"] for r in data["rows"] if r["family"] == "mlp"}
    assert {r["family"] for r in data["rows"]} == {"mlp", "cnn"} and all(r["regimes"] for r in data["rows"])
    assert len(data["winners"]) == 2  # one verdict per family × device
    assert data["roofline"]["peak_gflops"] > 0 and data["roofline"]["bandwidth_gbs"] > 0
    with sqlite3.connect(swept) as conn:
        assert conn.execute("SELECT count(*) FROM machine_profiles").fetchone()[0] == 1


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
def test_report_is_self_contained_and_renders_in_headless_chromium(swept, tmp_path):
    page = tmp_path / "report.html"
    proc = qbench("report", "--model", "digits-mlp", "--html", str(page), "--db", str(swept), timeout=180)
    assert proc.returncode == 0, proc.stderr
    text = page.read_text()
    assert "<script src=" not in text and "cdn.plot.ly" not in text.split("</head>")[0]  # nothing fetched
    assert "Recommendation" in text and "Environment" in text and "Speed-up over fp32" in text
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium on this machine (.ci/run installs Debian's `chromium`)")
    profile = tmp_path / "chrome-profile"
    base = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={profile}", "--virtual-time-budget=8000", "--window-size=1280,1600"]
    dom = subprocess.run([*base, "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and
                      ("Uncaught" in line or "Error" in line)]
    assert not console_errors, console_errors
    assert re.search(r'<pre id="qbench-errors"[^>]*></pre>', dom.stdout), "the page recorded an error"
    assert dom.stdout.count('class="main-svg"') >= 4  # plotly drew the charts (two SVG layers each)
    assert dom.stdout.count("scatterlayer") >= 2
    shot = tmp_path / "shot.png"
    subprocess.run([*base, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120, check=True)
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50, "the screenshot is blank"


@pytest.mark.slow
def test_app_shows_the_recommendation_and_the_insights_table(swept):
    from test_tui_support import async_test, fixed_system, test_settings, wait_for, wait_ready

    from engines.store import Store
    from qbench_tui.app import make_app
    from qbench_tui.screens.insights import InsightsScreen
    from qbench_tui.widgets.insights_table import InsightsTable

    @async_test
    async def scenario():
        store = Store(swept)
        app = make_app(store=store, settings=test_settings(), system=fixed_system())
        async with app.run_test(size=(140, 44)) as pilot:
            await wait_ready(pilot)
            app.main.select_model("digits-mlp")
            await pilot.press("i")
            await wait_for(pilot, lambda: isinstance(app.screen, InsightsScreen) and app.screen.insights is not None,
                           30, "the insights to be computed")
            screen = app.screen
            assert screen.recommendation["best"]["runtime"] == "onnxruntime"
            text = str(screen.query_one("#recommendation").render())
            assert "ship" in text and "digits-mlp" in text
            assert screen.query_one(InsightsTable).row_count >= 2
            screen.insights = None
            await pilot.press("z")
            await wait_for(pilot, lambda: screen.insights is not None, 30, "the size recommendation")
            assert screen.recommendation["objective"] == "size"
            await pilot.press("escape")
        store.close()

    scenario()


# --- auto: budgets, resume -------------------------------------------------------------------------


@pytest.mark.slow
def test_auto_keeps_a_variant_budget_across_two_families(auto_sweep):
    db, proc, data = auto_sweep
    measured = sum(r["results"] for r in data["runs"])
    assert 2 <= measured <= 5, data["runs"]
    assert {r["model"] for r in data["runs"]} == {"digits-mlp", "digits-cnn"}
    families = {r["family"] for r in data["insights"]["rows"]}
    assert families == {"mlp", "cnn"}, data["insights"]["rows"]
    assert "Insights per architecture" in proc.stderr  # the table, on the console (JSON took stdout)
    runs = json.loads(qbench("runs", "--json", "--db", str(db)).stdout)
    assert {r["source"] for r in runs} == {"auto"}


@pytest.mark.slow
def test_auto_time_budget_stops_on_time_and_resumes(tmp_path):
    db = tmp_path / "q.db"
    # 20 s: the sweep is told to stop at 16 s (the 4 s stop margin), more than a fork server's start
    # (2-3 s quiet, 12 s on a loaded machine), less than the two variants' 10 s of timing each plus
    # their loads: the budget always cuts the run off (a longer budget checks nothing more).
    budget = 20
    t0 = time.monotonic()
    proc, data = qbench_json("auto", "--models", "digits-mlp", "--budget", f"{budget}s", "--runtimes", "onnxruntime",
                             "--min-time", "10", "--min-reps", "5", "--repeat", "1", "--db", str(db), timeout=300)
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The mechanism, not the wall clock: the budget's timer stopped the sweep (interrupted, resumable),
    # and not before the stop margin it leaves for ending the children…
    assert [r["status"] for r in data["runs"]] == ["interrupted"]
    assert "stopped by the budget" in proc.stderr and "qbench auto --resume" in proc.stderr
    assert data["elapsed_s"] >= budget - stop_margin_s(budget), data["elapsed_s"]
    # …and after it, bounds on the wall clock loose enough to hold on a loaded 2-core machine: ending
    # the children and storing the partial run, then the process's start-up and the insight table
    assert data["elapsed_s"] <= budget + 20, data["elapsed_s"]
    assert wall <= budget + 60, wall  # start-up, the roofline, the insight table
    proc, resumed = qbench_json("auto", "--resume", "--budget", "5m", "--db", str(db), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["status"] for r in resumed["runs"]] == ["finished"]
    assert resumed["runs"][0]["run_id"] == data["runs"][0]["run_id"]


def test_the_analysis_and_its_screen_stay_light():
    """The app computes recommendations and insights in its own process: no numpy, torch or plotly."""
    code = ("import json, sys\n"
            "import engines.analysis.recommend, engines.analysis.insights, engines.analysis.families, "
            "engines.analysis.roofline, qbench_tui.screens.insights, qbench_tui.cli.insights\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not loaded & {"numpy", "torch", "onnxruntime", "plotly"}, sorted(loaded)
