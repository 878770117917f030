"""Energy per inference where a user reads it: ``--json`` of a real sweep, the CLI table, MLflow's
metrics, the HTML report, the store and ``recommend --objective energy``."""

from __future__ import annotations

import io

import pytest

from engines.analysis.recommend import recommend
from engines.analysis.report import build_html
from engines.core.schema import Result
from engines.devices.energy import open_meter
from engines.tracking.fields import result_metrics
from tests.helpers import FAST, qbench_json

READ = {"joules_per_inference": 0.002, "joules_per_call": 0.002, "watts": 6.0, "net_watts": 4.0, "idle_watts": 2.0,
        "idle_subtracted": True, "calls": 500, "window_s": 0.25, "source": "rapl (package-0)"}
UNREAD = {"joules_per_inference": None, "reason": "RAPL absent: no /sys/class/powercap/intel-rapl:* domain"}


def result(method: str, energy: dict, p50: float, **extra) -> dict:
    r = Result(model="digits-mlp", method=method, runtime="torch", device="cpu", batch_size=1, run_id="r1",
               latency_ms={"p50": p50, "p99": p50 * 1.2, "mean": p50, "samples": 200}, throughput_per_s=1000 / p50,
               size_mb=1.0 if method == "fp32" else 0.5, accuracy=0.97, agreement={"top1": 1.0, "cosine": 1.0},
               energy=energy, **extra)
    return r.to_dict()


@pytest.mark.slow
def test_a_real_sweep_gives_every_ok_result_an_energy_object(tmp_path):
    proc, payload = qbench_json("run", "--model", "digits-mlp", "--methods", "fp32", "--runtimes", "torch",
                                "--repeat", "1", *FAST, "--db", str(tmp_path / "q.db"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    ok = [r for r in payload["results"] if r["status"] == "ok"]
    assert ok
    meter, reason = open_meter("cpu")
    for r in ok:
        energy = r["energy"]
        if meter is None:  # this machine: the exact reason nothing could be read
            assert energy == {"joules_per_inference": None, "reason": reason}
        else:
            assert energy["joules_per_inference"] >= 0 and energy["watts"] > 0 and energy["idle_subtracted"]
    if meter is not None:
        meter.close()


def test_the_store_keeps_the_energy_object(store):
    run_id = "r1"
    store.create_run(run_id, "digits-mlp", {"methods": ["fp32"]}, {}, "test")
    for r in (result("fp32", READ, 1.0), result("int8", UNREAD, 0.5)):
        store.add_result(run_id, Result.from_dict(r))
    stored = {r["method"]: r["energy"] for r in store.results(run_id)}
    assert stored == {"fp32": READ, "int8": UNREAD}


def test_cli_table_shows_millijoules_or_a_dash():
    from rich.console import Console

    from qbench_tui.cli.output import results_table

    console = Console(file=io.StringIO(), width=250)
    console.print(results_table([result("fp32", READ, 1.0), result("int8", UNREAD, 0.5)]))
    text = console.file.getvalue()
    assert "mJ/inf" in text
    fp32_line = next(line for line in text.splitlines() if " fp32 " in line)
    int8_line = next(line for line in text.splitlines() if " int8 " in line)
    assert " 2 " in fp32_line  # 0.002 J = 2 mJ
    assert "–" in int8_line


def test_mlflow_metrics_and_report_carry_energy():
    metrics = result_metrics(result("fp32", READ, 1.0))
    assert metrics["energy_j_per_inference"] == 0.002 and metrics["energy_watts"] == 6.0
    assert "energy_j_per_inference" not in result_metrics(result("fp32", UNREAD, 1.0))
    page = build_html("t", [result("fp32", READ, 1.0)])
    assert "mJ/inference" in page and "idle power subtracted" in page and "rapl (package-0)" in page
    page = build_html("t", [result("fp32", UNREAD, 1.0)])
    assert "not measured: RAPL absent" in page


def test_recommend_by_energy_picks_the_fewest_joules():
    frugal = {**READ, "joules_per_inference": 0.001}
    results = [result("fp32", READ, 1.0), result("int8", frugal, 2.0)]
    rec = recommend(results, "energy")
    assert rec["best"]["method"] == "int8"  # slower, but fewer joules per inference
    assert "1 mJ per inference" in rec["reasons"][0]
    assert recommend(results, "latency")["best"]["method"] == "fp32"


def test_recommend_by_energy_says_why_when_nothing_was_read():
    rec = recommend([result("fp32", UNREAD, 1.0)], "energy")
    assert rec["best"] is None
    assert any("energy not measured: RAPL absent" in line for line in rec["reasons"])


def test_the_apps_result_detail_shows_the_energy():
    import asyncio

    asyncio.run(_result_detail_shows_the_energy())


async def _result_detail_shows_the_energy():
    from textual.app import App

    from qbench_tui.screens.result_detail import ResultDetailScreen

    app = App()
    async with app.run_test() as pilot:
        await app.push_screen(ResultDetailScreen(result("fp32", READ, 1.0, load_s=0.1), None))
        await pilot.pause()
        text = str(app.screen.query_one("#detail-text").render())
        assert "0.002 J/inference (6.00 W average, idle 2.00 W subtracted; rapl (package-0))" in text
