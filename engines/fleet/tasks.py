"""What runs on a fleet worker: one variant, measured as on a single machine.

The task gets a small JSON job (the run id and a sweep request narrowed to one recipe × runtime
× device), runs it through :class:`~engines.bench.runner.SweepRunner` — a child process, the
machine's measurement lock, timing rounds — into a scratch store that is thrown away, and
returns the results as JSON. Only the process that owns the real store writes them. Artifacts
stay on this host, under ``$QBENCH_HOME/artifacts/RUN_ID/HOST/``, unless the run asks for them
(``--fetch-artifacts``): then their bytes travel back with the results.
"""

from __future__ import annotations

import json
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engines.fleet import PROGRESS_TOPIC


def _cancel_watch(run_id: str, cancel: threading.Event, done: threading.Event) -> None:
    """Set ``cancel`` when the run's client raises the run's Dask event (Ctrl-C on its side)."""
    try:
        from distributed import Event

        remote = Event(f"qbench-cancel-{run_id}")
        while not done.is_set():
            if remote.wait(timeout=1.0):
                cancel.set()
                return
    except Exception:  # noqa: BLE001, S110 - without the event the variant simply runs to its end
        pass


def measure_variant(job_json: str) -> str | dict[str, Any]:
    """Measure one variant on this worker's host; ``{"host", "results": [...]}`` as JSON, or with
    ``fetch_artifacts`` ``{"json": …, "files": {path on this host: bytes}}``."""
    from distributed import get_worker

    from engines.bench.runner import SweepInterrupted, SweepRequest, SweepRunner
    from engines.core import events
    from engines.core.schema import public_json
    from engines.store import Store

    job = json.loads(job_json)
    worker = get_worker()
    host = str(worker.name)
    run_id = job["run_id"]
    request = SweepRequest.from_dict(job["request"])

    def forward(event: events.SweepEvent) -> None:
        if isinstance(event, (events.VariantStarted, events.PhaseChanged, events.WaitingForMachine)):
            payload = {"host": host, "run_id": run_id, "key": job["key"], "kind": type(event).__name__,
                       **{k: v for k, v in asdict(event).items() if k != "run_id"}}
            worker.log_event(PROGRESS_TOPIC, json.loads(json.dumps(payload, default=str)))

    cancel, done = threading.Event(), threading.Event()
    watcher = threading.Thread(target=_cancel_watch, args=(run_id, cancel, done), daemon=True)
    watcher.start()
    try:
        with tempfile.TemporaryDirectory(prefix="qbench-fleet-") as scratch:
            store = Store(Path(scratch) / "variant.db")
            try:
                # The run id with the host under it: this host's artifacts of the run, side by side
                # with other hosts' when several workers share one machine (tests).
                runner = SweepRunner(store, forward, cancel, source="fleet")
                runner.keep_fork_server = True
                try:
                    outcome = runner.run(request, resume_run_id=f"{run_id}/{host}")
                    results = outcome.results
                except SweepInterrupted:
                    results = store.results(f"{run_id}/{host}")
            finally:
                store.close()
    finally:
        done.set()
    out: list[dict[str, Any]] = []
    for r in results:
        out.append({**r, "run_id": run_id, "host": host, "id": None})
    body = json.dumps({"host": host, "results": public_json(out)})
    if not job.get("fetch_artifacts"):
        return body
    return {"json": body, "files": {r["artifact"]: _pack(Path(r["artifact"])) for r in out
                                    if r.get("artifact") and Path(r["artifact"]).exists()}}


def _pack(path: Path) -> bytes:
    """A file's bytes, or a folder (an .mlpackage) as an uncompressed tar."""
    if path.is_file():
        return path.read_bytes()
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(path, arcname=path.name)
    return buf.getvalue()
