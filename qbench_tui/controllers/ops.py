"""Version and serve the selected result from the app, each in a child process (``qbench version``,
``qbench serve``): DVC, the exporter and uvicorn never load in the UI process. A served variant
stays up while the app runs (stopped when it quits) and opens the monitor view on its URL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from qbench_tui.commands import PaletteCommand


def _free_port(host: str, preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise OSError(f"no free port on {host}")


class OpsController:
    """What the app's palette offers for the result under the cursor: version it, serve it."""

    def __init__(self, app: Any):
        self.app = app
        self.served: dict[int, tuple[subprocess.Popen, str]] = {}  # result id -> (process, URL)
        self.last_version: dict[str, Any] | None = None  # the last `version` outcome (its row, or its error)

    def _db(self) -> Path | None:
        return self.app.main.db_path

    def _selected(self) -> dict[str, Any] | None:
        result = self.app.main.results_pane.cursor_result() if self.app.main.built else None
        if result is None or result.get("status") != "ok" or result.get("id") is None:
            self.app.notify("put the cursor on an ok result first", title="version / serve", severity="warning")
            return None
        return result

    def palette_commands(self) -> list[PaletteCommand]:
        return [
            PaletteCommand("Version the selected result with DVC", "Export it, track it in DVC, push it, store its "
                           "hash (qbench version)", self.version_selected, False),
            PaletteCommand("Serve the selected result", "Its exported FastAPI service on loopback, then the monitor "
                           "(qbench serve)", self.serve_selected, False),
        ]

    # --- version ------------------------------------------------------------------------------

    def version_selected(self) -> None:
        result = self._selected()
        if result is not None:
            self.app.notify(f"versioning result {result['id']}…", title="DVC", timeout=3)
            self.app.run_worker(lambda: self._version(result["id"]), thread=True, group="ops-version",
                                exit_on_error=False)

    def _version(self, result_id: int) -> None:
        argv = [sys.executable, "-m", "qbench_tui", "version", str(result_id), "--json"]
        if self._db():
            argv += ["--db", str(self._db())]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
        if proc.returncode == 0:
            row = self.last_version = json.loads(proc.stdout)
            text, severity = (f"v{row['id']} of result {result_id}: {row['md5']} pushed to {row['remote']}; "
                              f"restore with `qbench restore v{row['id']}`"), "information"
        else:
            text, severity = (proc.stderr.strip().splitlines() or ["failed"])[-1], "error"
            self.last_version = {"error": text}
        self.app.call_from_thread(self.app.notify, text, title="DVC version", severity=severity, timeout=10)

    # --- serve --------------------------------------------------------------------------------

    def serve_selected(self) -> None:
        result = self._selected()
        if result is None:
            return
        running = self.served.get(result["id"])
        if running and running[0].poll() is None:
            self.app.action_monitor(running[1])
            return
        self.app.notify(f"starting result {result['id']}'s service (exported once, then reused)…", title="serve",
                        timeout=4)
        self.app.run_worker(lambda: self._serve(result["id"]), thread=True, group="ops-serve", exit_on_error=False)

    def _serve(self, result_id: int) -> None:
        from engines.ops.config import load_ops_config

        config = load_ops_config()
        port = _free_port(config.serve_host, config.serve_port)
        url = f"http://{config.serve_host}:{port}"
        argv = [sys.executable, "-m", "qbench_tui", "serve", str(result_id), "--host", config.serve_host,
                "--port", str(port)]
        if self._db():
            argv += ["--db", str(self._db())]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        self.served[result_id] = (proc, url)
        import urllib.request  # here, in the worker: 7 ms the app's first paint need not wait for

        deadline = time.monotonic() + 600  # a first export validates the model: minutes on a busy machine
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                error = (proc.stderr.read().strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
                self.app.call_from_thread(self.app.notify, error, title="serve failed", severity="error", timeout=10)
                return
            try:
                urllib.request.urlopen(url + "/healthz", timeout=2).read()  # noqa: S310 - loopback
                break
            except OSError:
                time.sleep(0.5)
        self.app.call_from_thread(self.app.notify, f"result {result_id} is served at {url}", title="serve")
        self.app.call_from_thread(self.app.action_monitor, url)

    def shutdown(self) -> None:
        """Stop every service this app started (``qbench serve`` stops its uvicorn on SIGTERM)."""
        for proc, _ in self.served.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    proc.kill()
        self.served.clear()
