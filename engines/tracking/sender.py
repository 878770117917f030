"""The sender: drains the store's tracking outbox into MLflow. Run as its own process::

    python -m engines.tracking.sender --db PATH [--json] [--lock-wait S] [--retry-failed]

One MLflow experiment per model (``qbench/<model>``), one MLflow run per qbench run with a nested
run per result (variant × batch size). Entries are sent in the order they were queued; each is
marked ``sent`` once MLflow has it. A server that cannot be reached leaves every entry queued with
the reason (nothing is lost: the next drain sends them); an entry MLflow refuses
``MAX_ATTEMPTS`` times becomes ``failed`` and is shown by ``qbench track``.

Created MLflow run ids are written to the store before anything is logged into them, so a drain
cut short reuses the run it started instead of logging a second one. One sender drains a store at
a time (an advisory lock beside the store file); a second waits for it, then drains what is left.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from engines.core.schema import now_iso
from engines.store import Store
from engines.store import outbox as ob
from engines.tracking import artifact_root, fields

HEALTH_TIMEOUT_S = 3.0
ARTIFACT_MAX_MB_ENV = "QBENCH_MLFLOW_ARTIFACT_MAX_MB"
ARTIFACT_MAX_MB = 512.0  # a variant's artifact above this is not copied to MLflow (tagged instead)
MLFLOW_STATUS = {"finished": "FINISHED", "interrupted": "KILLED", "failed": "FAILED", "running": "RUNNING"}


class Unreachable(Exception):
    """The tracking server or store cannot be reached: entries stay queued."""


# --- reaching the tracking URI ---------------------------------------------------------------------


def reachable(uri: str) -> str | None:
    """None when ``uri`` can be logged to now; otherwise why not (checked without importing MLflow)."""
    lower = uri.lower()
    if lower.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=HEALTH_TIMEOUT_S) as reply:
                if reply.status != 200:
                    return f"{uri} answered /health with HTTP {reply.status}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return f"{uri} unreachable ({reason})"
        return None
    if lower.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///"):]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"{uri}: cannot create {folder} ({exc.strerror})"
    return None


def _configure_http() -> None:
    # MLflow retries a failing request for minutes by default; an unreachable server should cost
    # seconds (the entries stay queued either way). The user's own settings win.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def client_for(uri: str) -> Any:
    _configure_http()
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


# --- logging -------------------------------------------------------------------------------------


class RunLogger:
    """Logs a store's queued entries for one tracking URI."""

    def __init__(self, store: Store, uri: str, client: Any):
        self.store = store
        self.uri = uri
        self.client = client
        self._experiments: dict[str, str] = {}

    @property
    def conn(self) -> sqlite3.Connection:
        return self.store.conn

    def experiment_id(self, model: str) -> str:
        name = fields.experiment_name(model)
        if name not in self._experiments:
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                self._experiments[name] = found.experiment_id
            else:
                root = artifact_root(self.uri)
                self._experiments[name] = self.client.create_experiment(
                    name, artifact_location=f"{root}/{fields.model_name(model)}" if root else None,
                    tags={"qbench.model": model})
        return self._experiments[name]

    def send(self, entry: dict[str, Any]) -> str | None:
        """Log one outbox entry; returns the MLflow run it went to (None when nothing was left to log)."""
        if entry["kind"] == "run_started":
            return self.parent_run(entry["run_id"], resumed=True)
        if entry["kind"] == "run_ended":
            return self.end_run(entry["run_id"])
        return self.log_result(entry)

    # the qbench run: the parent MLflow run

    def _mapping(self, run_id: str) -> str | None:
        return ob.mlflow_run_of(self.conn, self.uri, run_id)

    def parent_run(self, run_id: str, resumed: bool = False) -> str:
        """The qbench run's MLflow run, created (with its params and environment) on first need."""
        existing = self._mapping(run_id)
        if existing is not None:
            if resumed:
                self.client.update_run(existing, status="RUNNING")
            return existing
        run = self.store.get_run(run_id)
        if run is None:
            raise LookupError(f"run {run_id} is no longer in the store")
        created = self.client.create_run(self.experiment_id(run["model"]), start_time=fields.millis(
            run.get("created_at")), tags=fields.run_tags(run), run_name=run_id)
        mlflow_run_id = created.info.run_id
        # before logging into it: a drain cut short reuses this run
        ob.remember_mlflow_run(self.conn, self.uri, run_id, created.info.experiment_id, mlflow_run_id)
        self._log_batch(mlflow_run_id, params=fields.run_params(run))
        self.client.log_text(mlflow_run_id, json.dumps(run.get("environment") or {}, indent=2, default=str),
                             "environment.json")
        self.client.log_text(mlflow_run_id, json.dumps(run.get("request") or {}, indent=2, default=str),
                             "request.json")
        return mlflow_run_id

    def end_run(self, run_id: str) -> str:
        mlflow_run_id = self.parent_run(run_id)
        run = self.store.get_run(run_id) or {}
        status = run.get("status") or "finished"
        tags = {"bench.status": status}
        if run.get("message"):
            tags["bench.message"] = fields._text(run["message"], fields.MAX_TAG_LENGTH)
        self._log_batch(mlflow_run_id, tags=tags)
        if status != "running":  # resumed since this entry was queued: its own end follows
            self.client.set_terminated(mlflow_run_id, MLFLOW_STATUS.get(status, "FINISHED"),
                                       end_time=fields.millis(run.get("finished_at")))
        return mlflow_run_id

    # a result: a nested MLflow run

    def log_result(self, entry: dict[str, Any]) -> str | None:
        rows = self.store.results(where="id = ?", params=[entry["result_id"]])
        if not rows:
            return None  # replaced by a resumed run (its new row has an entry of its own)
        result = with_speedup(self.store, rows[0])
        run = self.store.get_run(entry["run_id"]) or {}
        parent = self.parent_run(entry["run_id"])
        mlflow_run_id = entry.get("mlflow_run_id")
        if not mlflow_run_id:
            created = self.client.create_run(
                self.experiment_id(result["model"]), start_time=fields.millis(result.get("started_at")),
                tags={"mlflow.parentRunId": parent, **fields.result_tags(result)}, run_name=fields.run_name(result))
            mlflow_run_id = created.info.run_id
            ob.mark(self.conn, entry["id"], "queued", mlflow_run_id=mlflow_run_id)
        stamp = fields.millis(result.get("finished_at")) or int(time.time() * 1000)
        self._log_batch(mlflow_run_id, params=fields.result_params(result, run),
                        metrics=[(k, v, stamp, 0) for k, v in fields.result_metrics(result).items()]
                        + [(k, v, stamp, step) for k, v, step in fields.round_metrics(result)])
        self.client.log_text(mlflow_run_id, json.dumps(_public(result), indent=2, default=str), "result.json")
        skipped = self._log_variant_artifact(mlflow_run_id, result.get("artifact"))
        if skipped:
            self._log_batch(mlflow_run_id, tags={"bench.artifact_skipped": skipped})
        status = "FAILED" if result["status"] == "failed" else "FINISHED"
        self.client.set_terminated(mlflow_run_id, status, end_time=stamp)
        return mlflow_run_id

    def _log_variant_artifact(self, mlflow_run_id: str, artifact: str | None) -> str | None:
        """Copy the variant's artifact (a file or a folder) under ``model/``; why not, when it is not."""
        if not artifact:
            return None
        path = Path(artifact)
        if not path.exists():
            return f"{artifact} no longer exists"
        size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        limit = _artifact_limit_mb()
        if size > limit * 2**20:
            return f"{size / 2**20:.0f} MB is over {ARTIFACT_MAX_MB_ENV}={limit:g}"
        if path.is_file():
            self.client.log_artifact(mlflow_run_id, str(path), "model")
        else:
            self.client.log_artifacts(mlflow_run_id, str(path), f"model/{path.name}")
        return None

    def _log_batch(self, run_id: str, params: dict[str, str] | None = None,
                   metrics: list[tuple[str, float, int, int]] | None = None, tags: dict[str, str] | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        params_l = [Param(k, v) for k, v in (params or {}).items()]
        tags_l = [RunTag(k, v) for k, v in (tags or {}).items()]
        metrics_l = [Metric(k, v, ts, step) for k, v, ts, step in (metrics or [])]
        # MLflow's limits per call: 100 params, 100 tags, 1000 metrics.
        while params_l or tags_l or metrics_l:
            self.client.log_batch(run_id, metrics=metrics_l[:1000], params=params_l[:100], tags=tags_l[:100])
            params_l, tags_l, metrics_l = params_l[100:], tags_l[100:], metrics_l[1000:]


def with_speedup(store: Store, result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with ``metrics.speedup_vs_fp32`` filled in from its run's fp32 reference when the
    runner had no paired rounds to compute it from (one timing round): the shared rule,
    :func:`engines.analysis.rules.speedup` (the ratio of the p50s when no rounds pair)."""
    from engines.analysis import rules

    metrics = result.get("metrics") or {}
    if result["status"] != "ok" or metrics.get("speedup_vs_fp32") is not None or rules.is_reference(result):
        return result
    ref = rules.fp32_reference(result, store.fp32_references([result.get("run_id")]))
    ratio = rules.speedup(ref, result)
    if ratio:
        result = {**result, "metrics": {**metrics, "speedup_vs_fp32": {k: ratio[k] for k in
                                                                       ("ratio", "low", "high", "rounds")}}}
    return result


def _artifact_limit_mb() -> float:
    try:
        return float(os.environ.get(ARTIFACT_MAX_MB_ENV, ARTIFACT_MAX_MB))
    except ValueError:
        return ARTIFACT_MAX_MB


def _public(result: dict[str, Any]) -> dict[str, Any]:
    from engines.core.schema import public_json

    return public_json([result])[0]


# --- draining ---------------------------------------------------------------------------------------


class _Lock:
    """One sender per store: an advisory lock on a file beside it (released if the process dies)."""

    def __init__(self, db_path: Path):
        self.path = db_path.with_name(db_path.name + ".tracking.lock")
        self.fh: Any = None

    def acquire(self, wait_s: float) -> bool:
        import fcntl

        self.fh = open(self.path, "a+")  # noqa: SIM115 - held for the drain
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self.fh.close()
                    return False
                time.sleep(0.2)

    def release(self) -> None:
        if self.fh is not None:
            self.fh.close()  # closing the file releases the lock
            self.fh = None


def lowest_priority() -> None:
    """The background sender competes with nothing: the lowest nice value, and on Linux the idle
    scheduling class (it runs only when a core would otherwise be idle)."""
    try:
        os.nice(19)
    except OSError:
        pass
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            pass


def measuring() -> bool:
    """Whether a sweep on this machine holds the measurement lock now (its holder is alive)."""
    from engines.bench.lock import read_holder

    holder = read_holder()
    if not holder or not holder.get("pid"):
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False  # a crashed sweep's record: nobody measures
    except (OSError, ValueError):
        pass
    return True


def wait_for_measurements(max_wait_s: float = 3600.0) -> None:
    """Hold back while a sweep measures (its timings must not share the machine with us)."""
    end = time.monotonic() + max_wait_s
    while measuring() and time.monotonic() < end:
        time.sleep(0.5)


def drain(db_path: str | os.PathLike[str], *, uri: str | None = None, lock_wait_s: float = 600.0,
          retry_failed: bool = False, background: bool = False) -> dict[str, Any]:
    """Send what is queued (for ``uri``, or every URI) and say what happened."""
    db_path = Path(db_path)
    summary: dict[str, Any] = {"sent": 0, "failed": 0, "errors": {}, "runs": {}}
    lock = _Lock(db_path)
    if not lock.acquire(lock_wait_s):
        summary["errors"]["*"] = f"another sender held the store for {lock_wait_s:.0f} s"
        return summary
    store = Store(db_path)
    try:
        if retry_failed:
            ob.requeue_failed(store.conn, uri)
        loggers: dict[str, RunLogger] = {}
        stuck: set[str] = set()
        while True:  # entries queued while draining are sent too
            entries = [e for e in ob.queued(store.conn, uri) if e["uri"] not in stuck]
            if not entries:
                break
            for entry in entries:
                target = entry["uri"]
                if target in stuck:
                    continue
                if background:
                    wait_for_measurements()
                try:
                    if target not in loggers:
                        problem = reachable(target)
                        if problem:
                            raise Unreachable(problem)
                        loggers[target] = RunLogger(store, target, client_for(target))
                    mlflow_run_id = loggers[target].send(entry)
                except Exception as exc:  # noqa: BLE001 - every error is kept with the entry
                    problem = str(exc) if isinstance(exc, Unreachable) else reachable(target)
                    if problem:  # the server went away: everything for it waits for the next drain
                        ob.note_unreachable(store.conn, target, problem)
                        summary["errors"][target] = problem
                        stuck.add(target)
                        continue
                    error = f"{type(exc).__name__}: {exc}"[:2000]
                    gave_up = entry["attempts"] + 1 >= ob.MAX_ATTEMPTS
                    ob.mark(store.conn, entry["id"], "failed" if gave_up else "queued", error=error, attempt=True)
                    summary["errors"][target] = error
                    if gave_up:
                        summary["failed"] += 1
                    else:
                        stuck.add(target)  # keep the order: the rest of this URI waits for a retry
                    continue
                ob.mark(store.conn, entry["id"], "sent", mlflow_run_id=mlflow_run_id)
                if entry["kind"] == "result":
                    summary["sent"] += 1
                if mlflow_run_id and entry["kind"] != "result":
                    summary["runs"][entry["run_id"]] = mlflow_run_id
        summary["queue"] = store.tracking_queue()
    finally:
        store.close()
        lock.release()
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engines.tracking.sender",
                                     description="Send the store's queued tracking logs to MLflow.")
    parser.add_argument("--db", type=Path, required=True, help="the qbench store")
    parser.add_argument("--uri", help="only entries for this tracking URI")
    parser.add_argument("--lock-wait", type=float, default=600.0, help="seconds to wait for another sender")
    parser.add_argument("--retry-failed", action="store_true", help="queue entries that failed again first")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    parser.add_argument("--background", action="store_true",
                        help="lowest priority, and hold back while a sweep holds the measurement lock")
    args = parser.parse_args(argv)
    if args.background:
        lowest_priority()
    started = time.monotonic()
    summary = drain(args.db, uri=args.uri, lock_wait_s=args.lock_wait, retry_failed=args.retry_failed,
                    background=args.background)
    summary["elapsed_s"] = round(time.monotonic() - started, 2)
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(f"{now_iso()} sent {summary['sent']} result(s), {summary['failed']} failed, "
              f"{sum(q['results'] for q in summary.get('queue', []))} queued; errors: {summary['errors'] or 'none'}")
    return 0 if not summary["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
