"""The app's side of a fleet sweep: ``engines.fleet.relay`` in a child process, its JSON-line
events turned back into the engine's events for the sweep controller (the UI process never
imports Dask). Chosen by ``$QBENCH_CLUSTER`` (and ``$QBENCH_HOSTS``), or by the run being resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def fleet_target(resumed_run: dict[str, Any] | None = None) -> tuple[str, str | None] | None:
    """(scheduler address, hosts) a sweep of the app goes to, or None for this machine: a resumed
    fleet run goes back to its own scheduler and hosts; a new sweep to ``$QBENCH_CLUSTER``."""
    fleet = ((resumed_run or {}).get("environment") or {}).get("fleet")
    if fleet:
        return fleet["scheduler"], None  # the relay's resume reads the run's hosts
    if resumed_run is not None:
        return None  # a run measured on this machine resumes here
    cluster = os.environ.get("QBENCH_CLUSTER")
    if not cluster:
        return None
    return cluster, os.environ.get("QBENCH_HOSTS")


@dataclass
class RelayOutcome:
    run_id: str
    status: str


class FleetRelay:
    """Runs one fleet sweep through the relay process; the interface of a SweepRunner."""

    def __init__(self, db: Path, cluster: str, hosts: str | None, on_event: Callable[[Any], None],
                 cancel: threading.Event):
        self.db, self.cluster, self.hosts = db, cluster, hosts
        self.on_event, self.cancel = on_event, cancel

    def run(self, request: Any) -> RelayOutcome:
        return self._relay([], json.dumps(request.to_dict()))

    def resume(self, run_id: str) -> RelayOutcome:
        return self._relay(["--resume", run_id], "")

    def _relay(self, extra: list[str], stdin: str) -> RelayOutcome:
        from engines.bench.runner import SweepInterrupted
        from engines.core import events

        command = [sys.executable, "-m", "engines.fleet.relay", "--db", str(self.db), "--cluster", self.cluster,
                   *(["--hosts", self.hosts] if self.hosts else []), *extra]
        child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True, start_new_session=True)
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(stdin)
        child.stdin.close()
        watcher = threading.Thread(target=self._watch_cancel, args=(child,), daemon=True)
        watcher.start()
        final: dict[str, Any] = {}
        for line in child.stdout:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if "outcome" in data:
                final = data
                continue
            name = data.pop("event", "")
            cls = getattr(events, name, None)
            if cls is None:
                continue
            if name == "VariantStarted":
                data["variant"] = events.VariantInfo(**data["variant"])
                data["batch_sizes"] = tuple(data["batch_sizes"])
            self.on_event(cls(**data))
        child.wait()
        if final.get("outcome") == "interrupted":
            raise SweepInterrupted(final.get("run_id"))
        if final.get("outcome") != "finished":
            raise RuntimeError(final.get("error") or f"the fleet relay ended with exit code {child.returncode}")
        return RelayOutcome(final["run_id"], "finished")

    def _watch_cancel(self, child: subprocess.Popen) -> None:
        while child.poll() is None:
            if self.cancel.wait(0.2):
                if child.poll() is None:
                    child.send_signal(signal.SIGINT)
                return
