"""Helpers of the tracking tests: the CLI in a subprocess, a real ``mlflow server`` on loopback,
and results written through the store's real sink."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--repeat", "1", "--min-time", "0.05", "--min-reps", "5"]


def qbench(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    code = "from qbench_tui.cli import main; raise SystemExit(main())"
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env=full_env, cwd=ROOT, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a SQLite backend and proxied artifacts, startable again
    on the same port and store (a server that went down and came back)."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, wait_s: float = 180.0) -> None:
        exe = Path(sys.executable).with_name("mlflow")
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "server.log", "ab")  # noqa: SIM115
        # Its own session: the server forks workers, stopped together by killing the group.
        self.proc = subprocess.Popen(
            [str(exe), "server", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.root,
            # No job runner: it starts a pool of huey consumers the tests never use.
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        log.close()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server ended: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer /health in {wait_s:.0f} s")

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self.proc = None


def stored_results(store: Any, uri: str | None, results: list[dict[str, Any]], model: str = "digits-mlp") -> str:
    """A run with these results written through the store's sink (queued for ``uri``)."""
    from engines.core.schema import Result
    from engines.store.sinks import SqliteSink

    sink = SqliteSink(store, outbox=uri)
    run_id = f"run-{time.monotonic_ns()}"
    sink.run_started(run_id, model, {"model": model, "methods": [r["method"] for r in results]}, {"threads": 1},
                     "test")
    for r in results:
        sink.result_recorded(run_id, Result(model=model, runtime="onnxruntime", device="cpu", batch_size=1, **r))
    sink.run_ended(run_id, "finished", None)
    return run_id


def last_json(text: str) -> dict[str, Any]:
    return json.loads(text.strip().splitlines()[-1])
