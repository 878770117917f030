"""A fleet on loopback: a real Dask scheduler and named workers as real processes (`qbench scheduler`,
`qbench worker`), real digits-mlp measurements, one SQLite store written by the run's process.

The workers share this session's QBENCH_HOME (the model trains once) and so its measurement lock:
like two sweeps on one machine they measure one at a time, which is what the lock is for.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAIN = "from qbench_tui.cli import main; raise SystemExit(main())"
FAST = ["--model", "digits-mlp", "--methods", "fp32,dynamic-int8", "--runtimes", "onnxruntime",
        "--min-time", "0.05", "--min-reps", "5", "--repeat", "1"]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


class Proc:
    """A qbench command as a process of its own session; its output collected by a thread."""

    def __init__(self, *args: str, **env: str):
        self.popen = subprocess.Popen([sys.executable, "-c", MAIN, *args], env=_env(**env), cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if text in line:
                    return line
            if self.popen.poll() is not None and not any(text in line for line in self.lines):
                raise AssertionError(f"exited {self.popen.returncode} before {text!r}:\n{self.output[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"no {text!r} within {timeout} s:\n{self.output[-3000:]}")

    def wait(self, timeout: float = 300.0) -> int:
        return self.popen.wait(timeout=timeout)

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


def start_worker(address: str, name: str, **env: str) -> Proc:
    worker = Proc("worker", "--scheduler", address, "--name", name, **env)
    worker.wait_for(f"qbench worker {name}", timeout=90)
    return worker


@pytest.fixture(scope="module")
def fleet():
    """A scheduler on loopback and workers mini-1 and mini-2."""
    scheduler = Proc("scheduler", "--port", "0")
    line = scheduler.wait_for("listening at", timeout=60)
    address = line.split("listening at ")[1].split()[0]
    workers = {name: start_worker(address, name) for name in ("mini-1", "mini-2")}
    yield {"address": address, "workers": workers, "scheduler": scheduler}
    for proc in [*workers.values(), scheduler]:
        proc.kill()


def _run(db: Path, *args: str) -> Proc:
    return Proc("run", *FAST, "--db", str(db), "--json", "-", *args)


def _results(db: Path) -> list[dict]:
    from engines.store import Store

    store = Store(db)
    try:
        return store.results()
    finally:
        store.close()


def _host_states(db: Path) -> dict[str, str]:
    try:
        return dict(sqlite3.connect(db).execute("SELECT name, state FROM hosts").fetchall())
    except sqlite3.Error:  # not created yet
        return {}


def _wait_until(condition, timeout: float, run: Proc) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline or run.popen.poll() is not None:
            raise AssertionError(f"condition not met:\n{run.output[-3000:]}")
        time.sleep(0.2)


async def _hosts_view_rows(db: Path) -> dict[str, tuple[str, ...]]:
    """Open the app on the store, press h, and read the Hosts view's table."""
    from test_tui_support import fixed_system, test_settings, wait_ready
    from textual.widgets import DataTable

    from engines.store import Store
    from qbench_tui.app import make_app
    from qbench_tui.screens.hosts import HostsScreen

    store = Store(db)
    app = make_app(store=store, settings=test_settings(), system=fixed_system())
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_ready(pilot)
            await pilot.press("h")
            await pilot.pause(0.2)
            assert isinstance(app.screen, HostsScreen)
            table = app.screen.query_one("#hosts-table", DataTable)
            return {str(key.value): tuple(str(c) for c in table.get_row(key)) for key in table.rows}
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_sweep_across_two_hosts_one_store(fleet, tmp_path):
    db = tmp_path / "fleet.db"
    run = _run(db, "--cluster", fleet["address"], "--hosts", "mini-1,mini-2", "--fetch-artifacts")
    # during the sweep, the app's Hosts view (reading the same store) shows both workers
    _wait_until(lambda: _host_states(db).get("mini-1") == "measuring" and "mini-2" in _host_states(db), 240,
                run)
    shown = asyncio.run(_hosts_view_rows(db))
    assert set(shown) == {"mini-1", "mini-2"} and "measuring" in {row[1] for row in shown.values()}, shown
    assert run.wait(360) == 0, run.output[-3000:]
    body = json.loads(run.output[run.output.index("{\n"):run.output.rindex("}") + 1])
    results = _results(db)
    # every variant measured once per host, all in one store, each tagged with its host
    assert sorted((r["host"], r["label"]) for r in results) == [
        ("mini-1", "dynamic-int8"), ("mini-1", "fp32"), ("mini-2", "dynamic-int8"), ("mini-2", "fp32")]
    assert all(r["status"] == "ok" and r["latency_ms"]["p50"] > 0 for r in results), results
    assert {r["run_id"] for r in results} == {body["run_id"]}
    assert sorted(r["host"] for r in body["results"]) == ["mini-1", "mini-1", "mini-2", "mini-2"]
    # asked for, each host's artifact was copied here (under the run, fleet/HOST/) and it loads
    assert {Path(r["artifact"]).parts[-3] for r in results} == {"mini-1", "mini-2"}
    assert all(Path(r["artifact"]).parts[-4] == "fleet" and Path(r["artifact"]).stat().st_size > 1000
               for r in results), [r["artifact"] for r in results]
    assert all(any(n.startswith("artifact copied from mini-") for n in r["notes"]) for r in results)
    # the run records its fleet; the hosts table has both workers' facts, idle again
    conn = sqlite3.connect(db)
    environment = json.loads(conn.execute("SELECT environment FROM runs").fetchone()[0])
    assert environment["fleet"]["hosts"] == ["mini-1", "mini-2"]
    hosts = dict(conn.execute("SELECT name, state FROM hosts").fetchall())
    assert hosts == {"mini-1": "idle", "mini-2": "idle"}
    # the CLI filters by host, and lists the hosts with their facts
    shown = Proc("results", "--db", str(db), "--host", "mini-2", "--format", "json")
    assert shown.wait(60) == 0
    assert {r["host"] for r in json.loads(shown.output)} == {"mini-2"}
    listed = Proc("hosts", "--db", str(db), "--json")
    assert listed.wait(60) == 0
    facts = {h["name"]: h["facts"] for h in json.loads(listed.output)}
    assert facts["mini-1"]["qbench"] and facts["mini-1"]["memory_gib"] > 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_lost_worker_is_interrupted_and_resume_completes(fleet, tmp_path):
    db = tmp_path / "fleet.db"
    run = _run(db, "--cluster", fleet["address"], "--hosts", "mini-1,mini-2")
    # wait until mini-2 measures something, then kill it outright
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if db.exists():
            try:
                row = sqlite3.connect(db).execute("SELECT activity FROM hosts WHERE name = 'mini-2'").fetchone()
            except sqlite3.OperationalError:
                row = None
            if row and row[0]:
                break
        time.sleep(0.2)
    else:
        raise AssertionError(f"mini-2 never started measuring:\n{run.output[-3000:]}")
    fleet["workers"]["mini-2"].kill(signal.SIGKILL)
    assert run.wait(360) == 130, run.output[-3000:]
    results = _results(db)
    by_host: dict[str, list[str]] = {}
    for r in results:
        by_host.setdefault(r["host"], []).append(r["status"])
    assert sorted(by_host["mini-1"]) == ["ok", "ok"], results  # the other host finished
    assert by_host["mini-2"].count("interrupted") == 1, results  # its in-flight variant
    run_id = results[0]["run_id"]
    status = sqlite3.connect(db).execute("SELECT status FROM runs WHERE id = ?", [run_id]).fetchone()[0]
    assert status == "interrupted"
    # a worker of that name returns; --resume sends only what mini-2 is missing
    fleet["workers"]["mini-2"] = start_worker(fleet["address"], "mini-2")
    resumed = Proc("run", "--resume", run_id, "--db", str(db))
    assert resumed.wait(360) == 0, resumed.output[-3000:]
    final = _results(db)
    assert sorted((r["host"], r["label"], r["status"]) for r in final) == [
        ("mini-1", "dynamic-int8", "ok"), ("mini-1", "fp32", "ok"),
        ("mini-2", "dynamic-int8", "ok"), ("mini-2", "fp32", "ok")]
    # mini-1's results were not measured again
    assert {r["id"] for r in final if r["host"] == "mini-1"} == {r["id"] for r in results if r["host"] == "mini-1"}


@pytest.mark.slow
def test_worker_with_another_version_is_refused(fleet):
    worker = Proc("worker", "--scheduler", fleet["address"], "--name", "mini-9",
                  QBENCH_FLEET_FAKE_VERSION="9.9.9")
    assert worker.wait(90) == 2
    from engines import __version__

    assert "9.9.9" in worker.output and f"qbench {__version__}" in worker.output, worker.output
    assert "refused" in worker.output


@pytest.mark.slow
def test_run_with_unknown_host_or_no_scheduler_is_a_usage_error(fleet, tmp_path):
    bad = Proc("run", *FAST, "--db", str(tmp_path / "x.db"), "--cluster", fleet["address"], "--hosts", "mini-7")
    assert bad.wait(120) == 2
    assert "no worker named mini-7" in bad.output and "mini-1" in bad.output
    nowhere = Proc("run", *FAST, "--db", str(tmp_path / "x.db"), "--hosts", "mini-1")
    assert nowhere.wait(120) == 2 and "need --cluster" in nowhere.output


@pytest.mark.slow
def test_workers_run_only_qbench_tasks(fleet):
    from distributed import Client

    with Client(fleet["address"], timeout=30, set_as_default=False) as client:
        future = client.submit(os.getpid, pure=False, resources={"qbench-host-mini-1": 1})
        with pytest.raises(Exception, match="only qbench's own tasks"):
            future.result(timeout=60)
        with pytest.raises(Exception, match="arbitrary functions"):
            client.run(os.getpid)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_the_app_sends_its_sweep_to_the_fleet(fleet, tmp_path, monkeypatch):
    """With $QBENCH_CLUSTER the app's sweep (here the starter: fp32 vs dynamic int8) runs on the
    fleet through the relay process; its results arrive tagged with their host."""
    from test_tui_support import fixed_system, test_settings, wait_for, wait_ready

    from engines.store import Store
    from qbench_tui.app import make_app

    monkeypatch.setenv("QBENCH_CLUSTER", fleet["address"])
    monkeypatch.setenv("QBENCH_HOSTS", "mini-1")
    store = Store(tmp_path / "app.db")

    async def scenario() -> list[str]:
        app = make_app(store=store, settings=test_settings(), system=fixed_system())
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_ready(pilot, timeout=30)
            await pilot.press("b")
            await wait_for(pilot, lambda: app.main.sweeping, 30, "the sweep to start")
            await wait_for(pilot, lambda: not app.main.sweeping, 300, "the fleet sweep to end")
            await pilot.pause(0.5)
            return [str(k.value) for k in app.main.results_pane.query_one("DataTable").rows]

    try:
        rows = asyncio.run(scenario())
        results = store.results()
    finally:
        store.close()
    assert sorted((r["host"], r["label"], r["status"]) for r in results) == [
        ("mini-1", "dynamic-int8", "ok"), ("mini-1", "fp32", "ok")], results
    assert len(rows) == 2


def _make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and one certificate for 127.0.0.1, signed by it (what docs/fleet.md describes)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (x509.CertificateBuilder().subject_name(name("qbench-ca")).issuer_name(name("qbench-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name("qbench-fleet")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "fleet.pem", folder / "fleet.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_tls_fleet_admits_only_certificate_holders(tmp_path):
    ca, cert, key = _make_certificates(tmp_path)
    tls = {"QBENCH_TLS_CA": str(ca), "QBENCH_TLS_CERT": str(cert), "QBENCH_TLS_KEY": str(key)}
    scheduler = Proc("scheduler", "--port", "0", **tls)
    worker = None
    try:
        address = scheduler.wait_for("listening at", timeout=60).split("listening at ")[1].split()[0]
        assert address.startswith("tls://127.0.0.1:")
        worker = start_worker(address, "mini-tls", **tls)
        listed = Proc("hosts", "--cluster", address, "--json", "--db", str(tmp_path / "q.db"), **tls)
        assert listed.wait(90) == 0, listed.output
        assert [h["name"] for h in json.loads(listed.output)] == ["mini-tls"]
        # without the certificate, nothing gets in
        plain = Proc("hosts", "--cluster", address.replace("tls://", "tcp://"), "--db", str(tmp_path / "q.db"))
        assert plain.wait(90) == 2 and "cannot reach the scheduler" in plain.output
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.kill()
