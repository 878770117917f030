"""The fleet's parts that need no cluster: the store's host column and hosts table, planning the
host × variant tasks and what a resume re-sends, the refusal messages, the app's Hosts view."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from test_tui_support import fixed_system, test_settings, wait_ready

from engines.bench.measure import MeasureSettings
from engines.bench.request import SweepRequest
from engines.core.schema import Result, local_host, result_key
from engines.fleet import FleetError, is_loopback, version_mismatch
from engines.fleet.runner import FleetRunner, parse_hosts
from engines.methods.recipe import parse_recipes
from engines.store.query import ResultQuery
from qbench_tui.cli import main


def _result(host: str | None, p50: float, method: str = "fp32", status: str = "ok") -> Result:
    kwargs = {"host": host} if host else {}
    return Result(model="digits-mlp", method=method, runtime="onnxruntime", device="cpu", batch_size=1,
                  recipe_id=method, status=status, latency_ms={"p50": p50} if status == "ok" else None,
                  **kwargs)


def test_results_carry_their_host_and_one_run_holds_a_variant_per_host(store):
    store.create_run("r1", "digits-mlp", {}, {}, "cli")
    store.add_result("r1", _result("mini-1", 1.0))
    store.add_result("r1", _result("mini-2", 2.0))
    store.add_result("r1", _result(None, 3.0))  # measured here: the local machine's name
    store.add_result("r1", _result("mini-2", 2.5))  # a re-measure replaces mini-2's row only
    rows = store.results("r1")
    assert sorted((r["host"], r["latency_ms"]["p50"]) for r in rows) == sorted(
        [("mini-1", 1.0), ("mini-2", 2.5), (local_host(), 3.0)])
    assert [r["host"] for r in store.query_results(ResultQuery(host="mini-1"))] == ["mini-1"]
    assert [r["host"] for r in store.query_results(ResultQuery(text="mini-2"))] == ["mini-2"]
    assert store.distinct_values("host") == sorted(["mini-1", "mini-2", local_host()])
    assert len({result_key(r) for r in rows}) == 3


def test_old_rows_get_their_runs_host(db_path):
    from engines.store import Store
    from engines.store.migrations import MIGRATIONS, _migration_fleet

    store = Store(db_path)
    store.create_run("r1", "digits-mlp", {}, {}, "cli")
    store.add_result("r1", _result("x", 1.0))
    store.close()
    conn = sqlite3.connect(db_path)  # back to the schema before the fleet: no host yet
    conn.execute("UPDATE results SET host = NULL")
    conn.execute("UPDATE runs SET host = 'old-mac'")
    before_fleet = MIGRATIONS.index(_migration_fleet)  # the later migrations are idempotent
    conn.execute("UPDATE qbench_meta SET value = ? WHERE key = 'schema_version'", [str(before_fleet)])
    conn.commit()
    conn.close()
    store = Store(db_path)
    assert [r["host"] for r in store.results("r1")] == ["old-mac"]
    store.close()


def test_hosts_table(store):
    store.set_host("mini-1", address="tcp://127.0.0.1:1", facts={"qbench": "0.1.0", "memory_gib": 16},
                   state="measuring", activity="fp32 · onnxruntime · cpu › measure", queue=["int4"], run_id="r1")
    store.set_host("mini-1", state="idle", queue=[])
    (host,) = store.hosts()
    assert host["name"] == "mini-1" and host["state"] == "idle" and host["facts"]["memory_gib"] == 16
    assert host["queue"] == [] and host["run_id"] == "r1"


def test_tasks_per_host_and_variant_and_what_a_resume_resends():
    request = SweepRequest(model="digits-mlp", methods=parse_recipes(("fp32", "int4:group_size=32")),
                           runtimes=("onnxruntime",), batch_sizes=(1, 8), measure=MeasureSettings(repeat=1))
    tasks = FleetRunner._tasks("r1", "digits-mlp", request, ["mini-1", "mini-2"], set())
    assert [(t.host, tuple(r.spec_text for r in t.request.methods), t.request.batch_sizes) for t in tasks] == [
        ("mini-1", ("fp32",), (1, 8)), ("mini-1", ("int4:group_size=32",), (1, 8)),
        ("mini-2", ("fp32",), (1, 8)), ("mini-2", ("int4:group_size=32",), (1, 8))]
    fp32_id = request.recipes()[0].id
    done = {("mini-1", fp32_id, "onnxruntime", "cpu", 1), ("mini-1", fp32_id, "onnxruntime", "cpu", 8),
            ("mini-2", fp32_id, "onnxruntime", "cpu", 8)}
    again = FleetRunner._tasks("r1", "digits-mlp", request, ["mini-1", "mini-2"], done)
    assert [(t.host, tuple(r.spec_text for r in t.request.methods), t.request.batch_sizes) for t in again] == [
        ("mini-1", ("int4:group_size=32",), (1, 8)), ("mini-2", ("fp32",), (1,)),
        ("mini-2", ("int4:group_size=32",), (1, 8))]
    assert parse_hosts("all") is None and parse_hosts("mini-1, mini-2") == ["mini-1", "mini-2"]


def test_refusals_name_both_versions_and_loopback_rules():
    message = version_mismatch("mini-3", "0.2.0", "the scheduler at tcp://h:8786", "0.1.0")
    assert message and "0.2.0" in message and "0.1.0" in message and "refused" in message
    assert version_mismatch("a", "0.1.0", "b", "0.1.0") is None
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")


def test_cli_refuses_bad_fleet_input(capsys):
    assert main(["scheduler", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "without TLS" in capsys.readouterr().err
    assert main(["worker", "--scheduler", "127.0.0.1"]) == 2
    assert "tcp://127.0.0.1:8786" in capsys.readouterr().err
    assert main(["scheduler", "--tls-ca", "/nonexistent/ca.pem"]) == 2
    assert "all three" in capsys.readouterr().err


def test_hosts_view_shows_each_host_and_a_run_across_hosts(store):
    from textual.widgets import DataTable, Static

    from qbench_tui.app import make_app
    from qbench_tui.screens.hosts import HostsScreen

    store.create_run("r1", "digits-mlp", {}, {}, "cli")
    for host, fp32, int8 in (("mini-1", 0.2, 0.05), ("mini-2", 0.4, 0.08)):
        store.add_result("r1", _result(host, fp32))
        store.add_result("r1", _result(host, int8, method="dynamic-int8"))
        store.set_host(host, address="tcp://x", facts={"cpu": "Apple M4", "memory_gib": 16, "qbench": "0.1.0",
                                                     "os": "Darwin 24.1", "devices": {"cpu": {"present": True}}},
                       state="measuring" if host == "mini-1" else "idle", activity="int4 · onnxruntime · cpu",
                       queue=["fp16 · onnxruntime · cpu"] if host == "mini-1" else [], run_id="r1")

    async def scenario():
        app = make_app(store=store, settings=test_settings(), system=fixed_system())
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_ready(pilot)
            await pilot.press("h")
            await pilot.pause(0.1)
            assert isinstance(app.screen, HostsScreen)
            table = app.screen.query_one("#hosts-table", DataTable)
            rows = {str(k.value): [str(c) for c in table.get_row(k)] for k in table.rows}
            text = str(app.screen.query_one("#hosts-compare", Static).render())
            # the results table gained its host column (two machines in the store)
            await pilot.press("escape")
            columns = [str(c.value) for c in app.main.results_pane.query_one(DataTable).columns]
            return rows, text, columns

    rows, text, columns = asyncio.run(scenario())
    assert rows["mini-1"][1] == "measuring" and "Apple M4" in rows["mini-1"][2] and "16 GiB" in rows["mini-1"][3]
    assert rows["mini-1"][6].startswith("int4") and rows["mini-1"][7].startswith("1:")
    assert rows["mini-2"][1] == "idle"
    assert "dynamic-int8" in text and "×2.00" in text and "×1.60" in text
    assert "host" in columns


@pytest.mark.parametrize("hosts", [None, ["nope"]])
def test_choosing_hosts(hosts, store):
    runner = FleetRunner(store, "tcp://127.0.0.1:1", hosts)
    live = {"mini-1": {"address": "a", "facts": {"qbench": "0.1.0"}}}
    if hosts is None:
        assert runner._choose(live, None) == ["mini-1"]
    else:
        with pytest.raises(FleetError, match="no worker named nope"):
            runner._choose(live, hosts)
    with pytest.raises(FleetError, match="not a qbench worker"):
        runner._choose({"plain": {"address": "a", "facts": {"name": "plain"}}}, ["plain"])
    with pytest.raises(FleetError, match="9.9.9"):
        runner._choose({"old": {"address": "a", "facts": {"qbench": "9.9.9"}}}, None)


def test_the_app_resumes_a_fleet_run_on_its_fleet(monkeypatch):
    from qbench_tui.controllers.fleet_relay import fleet_target

    monkeypatch.delenv("QBENCH_CLUSTER", raising=False)
    fleet_run = {"environment": {"fleet": {"scheduler": "tcp://10.0.0.5:8786", "hosts": ["mini-1"]}}}
    assert fleet_target(fleet_run) == ("tcp://10.0.0.5:8786", None)
    assert fleet_target({"environment": {}}) is None and fleet_target() is None
    monkeypatch.setenv("QBENCH_CLUSTER", "tcp://127.0.0.1:8786")
    monkeypatch.setenv("QBENCH_HOSTS", "mini-2")
    assert fleet_target() == ("tcp://127.0.0.1:8786", "mini-2")
    assert fleet_target({"environment": {}}) is None  # a local run resumes locally
