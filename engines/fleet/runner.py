"""The fleet's side that owns the store: send each variant to each chosen host, gather, write.

:class:`FleetRunner` has the interface of :class:`~engines.bench.runner.SweepRunner` (``run``,
``resume``, the same events, :class:`SweepInterrupted` on Ctrl-C) so the CLI swaps one for the
other. It connects a Dask client to the scheduler, checks each chosen worker's announced qbench
version, and submits one task per host × variant, pinned by the host's resource. Results come
back as JSON and are written here, tagged with their host: this process is the store's one writer.

A host that leaves while it measures (killed, power, network) has its in-flight variant
recorded as ``interrupted`` and its queued ones left unmeasured; the other hosts finish, the run
ends ``interrupted`` and ``resume`` re-sends only what is missing or interrupted, once a worker
of that name is back. The run's chosen hosts and scheduler are kept in its environment.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from engines.bench.request import SweepRequest, plan_variants
from engines.bench.runner import SweepInterrupted, SweepOutcome, new_run_id
from engines.core import events
from engines.core.environment import collect_environment
from engines.core.schema import Result, now_iso, variant_key
from engines.fleet import (
    FACTS_TOPIC,
    PROGRESS_TOPIC,
    FleetError,
    announced_version,
    host_resource,
    version_mismatch,
)
from engines.store import Store
from engines.store.sinks import ResultSink, SqliteSink

EventHandler = Callable[[events.SweepEvent], None]
POLL_S = 0.5


def fleet_of_run(run: dict[str, Any] | None) -> dict[str, Any] | None:
    """The fleet a stored run was measured on (``{"scheduler", "hosts"}``), or None for one machine."""
    return ((run or {}).get("environment") or {}).get("fleet")


def parse_hosts(text: str | None) -> list[str] | None:
    """``mini-1,mini-2`` → names; ``all`` or nothing → None (every worker)."""
    if not text or text.strip() == "all":
        return None
    return [h.strip() for h in text.split(",") if h.strip()]


class _Task:
    """One variant sent to one host."""

    def __init__(self, host: str, key: str, request: SweepRequest, identity: list[dict[str, Any]], label: str):
        self.host, self.key, self.request, self.identity, self.label = host, key, request, identity, label
        self.future: Any = None
        self.done = False


class FleetRunner:
    """Drives one sweep across the hosts of a Dask cluster (see the module's docstring)."""

    def __init__(self, store: Store, cluster: str, hosts: list[str] | None = None,
                 on_event: EventHandler | None = None, cancel: threading.Event | None = None,
                 source: str = "cli", security: Any = None, sinks: list[ResultSink] | None = None,
                 connect_timeout: float = 15.0, fetch_artifacts: bool = False):
        self.store = store
        self.cluster = cluster
        self.hosts = hosts
        self.on_event = on_event or (lambda event: None)
        self.cancel = cancel or threading.Event()
        self.source = source
        self.security = security
        self.sinks: list[ResultSink] = sinks if sinks is not None else [SqliteSink(store)]
        self.connect_timeout = connect_timeout
        self.fetch_artifacts = fetch_artifacts  # copy each host's artifacts here (else they stay there)
        self._activity: dict[str, str] = {}
        self._order: dict[str, int] = {}
        self._lock = threading.Lock()

    # --- connecting and choosing hosts -------------------------------------------------------

    def _connect(self) -> Any:
        import dask
        from distributed import Client

        dask.config.set({"distributed.comm.timeouts.connect": f"{int(self.connect_timeout)}s"})
        try:
            return Client(self.cluster, security=self.security, timeout=self.connect_timeout,
                          set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise FleetError(f"cannot reach the scheduler at {self.cluster}: {exc}") from None

    @staticmethod
    def live_hosts(client: Any) -> dict[str, dict[str, Any]]:
        """Worker name → {address, facts} of every worker now connected (facts from its announcement)."""
        workers = client.scheduler_info(n_workers=-1)["workers"]
        facts: dict[str, dict[str, Any]] = {}
        for _, msg in client.get_events(FACTS_TOPIC):
            if isinstance(msg, dict) and msg.get("name") is not None:
                facts[str(msg["address"])] = msg
        out = {}
        for address, info in workers.items():
            name = str(info.get("name", address))
            out[name] = {"address": address, "facts": facts.get(address, {"name": name})}
        return out

    def _choose(self, live: dict[str, dict[str, Any]], wanted: list[str] | None) -> list[str]:
        if not live:
            raise FleetError(f"no workers are connected to {self.cluster}; start one with "
                             f"`qbench worker --scheduler {self.cluster} --name NAME`")
        # A worker that announced no facts is not a qbench worker (a plain `dask worker`): it lacks
        # the host resource, so a variant sent to it would wait forever.
        qbench_workers = sorted(n for n, h in live.items() if h["facts"].get("qbench"))
        names = qbench_workers if wanted is None else wanted
        missing = [n for n in names if n not in live]
        if missing:
            raise FleetError(f"no worker named {', '.join(missing)} at {self.cluster}; connected: "
                             f"{', '.join(sorted(live))}")
        foreign = [n for n in names if n not in qbench_workers]
        if foreign or not names:
            raise FleetError(f"{', '.join(foreign) or 'no worker'} at {self.cluster} is not a qbench worker; "
                             "start one with `qbench worker --scheduler ADDRESS --name NAME`")
        mine = announced_version()
        for name in names:
            theirs = live[name]["facts"].get("qbench")
            message = theirs and version_mismatch(name, theirs, "this client", mine)
            if message:
                raise FleetError(message)
        return names

    # --- public ---------------------------------------------------------------------------------

    def resume(self, run_id: str) -> SweepOutcome:
        run = self.store.get_run(run_id)
        if run is None:
            raise ValueError(f"no run {run_id!r} in {self.store.path}")
        fleet = fleet_of_run(run) or {}
        if self.hosts is None and fleet.get("hosts"):
            self.hosts = list(fleet["hosts"])
        return self.run(SweepRequest.from_dict(run["request"]), resume_run_id=run_id)

    def run(self, request: SweepRequest, resume_run_id: str | None = None) -> SweepOutcome:
        client = self._connect()
        try:
            return self._run(client, request, resume_run_id)
        finally:
            with contextlib.suppress(Exception):  # closing a client whose scheduler is gone
                client.close()

    def _run(self, client: Any, request: SweepRequest, resume_run_id: str | None) -> SweepOutcome:
        from engines.models import resolve_model

        spec = resolve_model(request.model, request.model_options)
        live = self.live_hosts(client)
        hosts = self._choose(live, self.hosts)
        run_id = resume_run_id or new_run_id()
        done: set[tuple] = set()
        if resume_run_id:  # what is stored and not interrupted, per host
            done = {(r["host"], *variant_key(r)) for r in self.store.results(run_id) if r["status"] != "interrupted"}
        tasks = self._tasks(run_id, spec.name, request, hosts, done)
        env = collect_environment(request.effective_threads)
        env["fleet"] = {"scheduler": self.cluster, "hosts": hosts}
        env["hosts"] = {h: live[h]["facts"] for h in hosts}
        self._to_sinks("run_started", run_id, spec.name, request.to_dict(), env, self.source)
        total = len(plan_variants(request)) * len(request.batch_sizes) * len(hosts)
        self.on_event(events.RunStarted(run_id, model=spec.name, total=total, done=total - sum(
            len(t.identity) for t in tasks), resumed=bool(resume_run_id)))
        for h in hosts:
            self.store.set_host(h, address=live[h]["address"], facts=live[h]["facts"], state="idle",
                                activity="", queue=[], run_id=run_id)
        self._order = {t.key: i for i, t in enumerate(tasks)}  # "variant i/n" across every host's queue
        client.subscribe_topic(PROGRESS_TOPIC, self._progress(run_id))
        lost: list[str] = []
        try:
            from engines.fleet.tasks import measure_variant

            for order, task in enumerate(tasks):
                job = {"run_id": run_id, "key": task.key, "request": task.request.to_dict(),
                       "fetch_artifacts": self.fetch_artifacts}
                # In the request's order on each host (fp32 first, as on one machine)
                task.future = client.submit(measure_variant, json.dumps(job), key=task.key, pure=False,
                                            resources={host_resource(task.host): 1}, retries=0,
                                            priority=-order)
            self._write_hosts(hosts, tasks, lost, run_id)
            lost = self._gather(client, run_id, hosts, tasks)
        except (KeyboardInterrupt, SweepInterrupted) as exc:
            self._cancel_remote(client, run_id, tasks)
            self._write_hosts(hosts, tasks, lost, run_id, ended=True)
            reason = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else str(exc) or "cancelled"
            self._to_sinks("run_ended", run_id, "interrupted", reason)
            self.on_event(events.RunFinished(run_id, "interrupted"))
            raise SweepInterrupted(run_id) from None
        except BaseException as exc:
            self._cancel_remote(client, run_id, tasks)
            self._to_sinks("run_ended", run_id, "failed", f"{type(exc).__name__}: {exc}")
            self.on_event(events.RunFinished(run_id, "failed"))
            raise
        finally:
            with contextlib.suppress(Exception):  # a scheduler that is gone takes its subscriptions with it
                client.unsubscribe_topic(PROGRESS_TOPIC)
        self._write_hosts(hosts, tasks, lost, run_id, ended=True)
        if lost:
            message = f"lost host(s) {', '.join(lost)}; resume with --resume {run_id} once they are back"
            self._to_sinks("run_ended", run_id, "interrupted", message)
            self.on_event(events.RunFinished(run_id, "interrupted"))
            raise SweepInterrupted(run_id)
        self._to_sinks("run_ended", run_id, "finished", None)
        self.on_event(events.RunFinished(run_id, "finished"))
        return SweepOutcome(run_id, "finished", self.store.results(run_id))

    # --- planning ---------------------------------------------------------------------------------

    @staticmethod
    def _tasks(run_id: str, model: str, request: SweepRequest, hosts: list[str], done: set[tuple]) -> list[_Task]:
        """One task per host × variant with at least one batch size not stored yet."""
        tasks = []
        for host in hosts:
            for index, variant in enumerate(plan_variants(request)):
                missing = [b for b in request.batch_sizes
                           if (host, variant.recipe.id, variant.runtime, variant.device, b) not in done]
                if not missing:
                    continue
                narrowed = replace(request, methods=(variant.recipe,), runtimes=(variant.runtime,),
                                   devices=(variant.device,), batch_sizes=tuple(missing))
                identity = [variant.identity(model, b) for b in missing]
                key = f"qbench-{run_id}-{host}-{index}"
                tasks.append(_Task(host, key, narrowed, identity, f"{variant.label}"))
        return tasks

    # --- gathering ------------------------------------------------------------------------------

    def _gather(self, client: Any, run_id: str, hosts: list[str], tasks: list[_Task]) -> list[str]:
        """Wait for every task; returns the hosts lost on the way."""
        from distributed.client import _wait

        lost: list[str] = []
        last_write = 0.0
        while True:
            if self.cancel.is_set():
                raise SweepInterrupted("cancelled")
            pending = [t for t in tasks if not t.done]
            if not pending:
                return lost
            try:  # distributed.wait() would need a process-wide default client
                client.sync(_wait, [t.future for t in pending], timeout=POLL_S, return_when="FIRST_COMPLETED")
            except TimeoutError:
                pass
            except Exception as exc:
                self._lose_scheduler(client, run_id, hosts, tasks, exc)
                raise
            # Futures the client did not cancel end 'cancelled' when the scheduler went away: that is
            # an interrupted run (resumable), not failed variants.
            if any(t.future.status == "cancelled" for t in pending) and not self._scheduler_alive(client):
                self._lose_scheduler(client, run_id, hosts, tasks, None)
            for task in pending:
                if task.future.status in ("finished", "error", "cancelled"):
                    self._collect(run_id, task)
            try:
                workers = client.scheduler_info(n_workers=-1)["workers"]
            except (OSError, TimeoutError) as exc:  # the scheduler itself is gone: resumable, like Ctrl-C
                raise SweepInterrupted(f"lost the scheduler at {self.cluster}: {exc}") from None
            live = {str(info.get("name")) for info in workers.values()}
            for host in hosts:
                if host in lost or host in live:
                    continue
                if any(not t.done for t in tasks if t.host == host):
                    lost.append(host)
                    self._lose(client, run_id, host, tasks)
            if time.monotonic() - last_write > 1.0:
                self._write_hosts(hosts, tasks, lost, run_id)
                last_write = time.monotonic()

    def _collect(self, run_id: str, task: _Task) -> None:
        task.done = True
        future = task.future
        if future.status == "finished":
            answer = future.result()
            files = answer["files"] if isinstance(answer, dict) else {}
            payload = json.loads(answer["json"] if isinstance(answer, dict) else answer)
            for r in payload["results"]:
                result = Result.from_dict({**r, "host": task.host})
                if result.artifact in files:
                    result.notes.append(f"artifact copied from {task.host}:{result.artifact}")
                    result.artifact = self._unpack(run_id, task.host, result.artifact, files[result.artifact])
                self._record(run_id, result)
            return
        error = "cancelled" if future.status == "cancelled" else f"{type(future.exception()).__name__}: " \
                                                                    f"{future.exception()}"
        for identity in task.identity:
            self._record(run_id, Result(**identity, status="failed", error=f"on {task.host}: {error}",
                                        host=task.host, started_at=now_iso()))

    @staticmethod
    def _unpack(run_id: str, host: str, remote: str, data: bytes) -> str:
        """Write a fetched artifact under this machine's ``artifacts/RUN_ID/fleet/HOST/``."""
        from pathlib import PurePath

        from engines.paths import artifacts_dir

        remote_path = PurePath(remote)
        folder = artifacts_dir(run_id) / "fleet" / host / remote_path.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / remote_path.name
        if data[257:262] == b"ustar":  # a folder travelled as a tar (an .mlpackage)
            import io
            import tarfile

            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                tar.extractall(folder, filter="data")
        else:
            target.write_bytes(data)
        return str(target)

    def _lose(self, client: Any, run_id: str, host: str, tasks: list[_Task]) -> None:
        """A host left: its in-flight variant is ``interrupted``, its queue stays for ``--resume``."""
        mine = [t for t in tasks if t.host == host and not t.done]
        with self._lock:
            current = self._activity.get(host, "")
        # The variant it announced last (VariantStarted); without one, the first it was given.
        in_flight = next((t for t in mine if current.split(" ", 1)[0] == t.key), mine[0] if mine else None)
        for task in mine:
            task.done = True
            client.cancel(task.future, force=True)
            if task is in_flight:
                for identity in task.identity:
                    self._record(run_id, Result(**identity, status="interrupted", host=host, started_at=now_iso(),
                                                error=f"host {host} was lost while measuring it"))

    def _scheduler_alive(self, client: Any) -> bool:
        try:
            client.scheduler_info(n_workers=-1)
        except Exception:  # noqa: BLE001 - any failure to ask it: gone
            return False
        return client.status == "running"

    def _lose_scheduler(self, client: Any, run_id: str, hosts: list[str], tasks: list[_Task],
                        exc: BaseException | None) -> None:
        """The scheduler went away: each host's in-flight variant is ``interrupted`` and the run ends
        interrupted (``--resume`` sends what is missing once a scheduler is back)."""
        if exc is not None and self._scheduler_alive(client):
            return  # another failure: the caller raises it
        for task in tasks:  # what finished before it went is kept
            if not task.done and task.future is not None and task.future.status == "finished":
                with contextlib.suppress(Exception):
                    self._collect(run_id, task)
        for host in hosts:
            with contextlib.suppress(Exception):  # cancelling needs the scheduler; recording does not
                self._lose(client, run_id, host, tasks)
        raise SweepInterrupted(f"lost the scheduler at {self.cluster}; resume with qbench run --resume {run_id} "
                               "once it is back")

    def _record(self, run_id: str, result: Result) -> None:
        result.run_id = run_id
        result.finished_at = result.finished_at or now_iso()
        self._to_sinks("result_recorded", run_id, result)
        self.on_event(events.ResultRecorded(run_id, result.to_dict()))

    def _cancel_remote(self, client: Any, run_id: str, tasks: list[_Task]) -> None:
        """Ctrl-C here: the hosts stop their variant (through the run's Dask event) and drop the queue."""
        try:
            from distributed import Event

            Event(f"qbench-cancel-{run_id}", client=client).set()
            client.cancel([t.future for t in tasks if t.future is not None and not t.done], force=True)
        except Exception:  # noqa: BLE001, S110 - the scheduler may be gone; the run is recorded anyway
            pass

    # --- progress and the hosts table -------------------------------------------------------------

    def _progress(self, run_id: str) -> Callable[[Any], None]:
        def handle(event: Any) -> None:
            _, msg = event
            if not isinstance(msg, dict) or msg.get("run_id") != run_id:
                return
            host, kind = msg["host"], msg["kind"]
            with self._lock:
                if kind == "VariantStarted":
                    v = msg["variant"]
                    self._activity[host] = f"{msg['key']} {v['label']} · {v['runtime']} · {v['device']}"
                    self.on_event(events.VariantStarted(run_id, events.VariantInfo(
                        v["method"], f"{v['label']} @ {host}", v["recipe_id"], v["runtime"], v["device"]),
                        self._order.get(msg["key"], 0), len(self._order), tuple(msg["batch_sizes"])))
                elif kind == "PhaseChanged":
                    head = self._activity.get(host, "").split(" › ")[0]
                    self._activity[host] = f"{head} › {msg['phase']}"
                    self.on_event(events.PhaseChanged(run_id, msg["phase"], msg.get("batch_size"),
                                                      msg.get("detail") or {}))
                elif kind == "WaitingForMachine":
                    self._activity[host] = "waiting for the machine's measurement lock"

        return handle

    def _write_hosts(self, hosts: list[str], tasks: list[_Task], lost: list[str], run_id: str,
                     ended: bool = False) -> None:
        for host in hosts:
            queue = [t.label for t in tasks if t.host == host and not t.done]
            with self._lock:
                activity = self._activity.get(host, "")
            now = activity.split(" ", 1)[1] if " " in activity and activity.startswith("qbench-") else activity
            if host in lost:
                state = "lost"
            elif ended or not queue:
                state, now = "idle", ""
            else:
                state = "measuring"
            self.store.set_host(host, state=state, activity=now, queue=[] if ended else queue, run_id=run_id)

    def _to_sinks(self, method: str, *args: Any) -> None:
        for index, sink in enumerate(self.sinks):
            try:
                getattr(sink, method)(*args)
            except Exception:
                if index == 0:
                    raise
