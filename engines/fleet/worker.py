"""``qbench worker``: a Dask worker that measures one variant at a time on its own host.

One thread and one resource named after the host (``qbench-host-NAME = 1``): the fleet runner
pins each variant to a host through that resource, and the host measures them one after the
other, each in its own child process as on a single machine (and under the machine's
measurement lock, so a local ``qbench run`` and the fleet never time at once).

Before it joins, the worker asks the scheduler which qbench it runs and refuses to start when
the versions differ. Once joined it announces its facts (chip, memory, OS, devices, package
versions) as an event the scheduler keeps. It runs only qbench's own task functions: any other
task fails with a refusal, and ``Client.run`` (arbitrary functions on workers) is switched off.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from typing import Any

from engines.fleet import (
    FACTS_TOPIC,
    FleetError,
    announced_version,
    host_facts,
    host_resource,
    version_mismatch,
)

ALLOWED_TASKS = frozenset({"engines.fleet.tasks.measure_variant"})


def _refused(name: str) -> None:
    raise PermissionError(f"a qbench worker runs only qbench's own tasks; refused {name}")


def _refuse_run(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"status": "error", "exception": "a qbench worker does not run arbitrary functions (Client.run)"}


def _task_name(func: Any) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def _worker_class() -> type:
    from dask._task_spec import Task
    from distributed import Worker

    class FleetWorker(Worker):
        """A Dask worker that executes only :data:`ALLOWED_TASKS`."""

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            for op in ("run", "run_coroutine"):
                self.handlers[op] = _refuse_run

        async def execute(self, key: Any, *, stimulus_id: str) -> Any:
            ts = self.state.tasks.get(key)
            spec = getattr(ts, "run_spec", None)
            if spec is not None:
                name = _task_name(getattr(spec, "func", None))
                if name not in ALLOWED_TASKS:
                    ts.run_spec = Task(key, _refused, name)
            return await super().execute(key, stimulus_id=stimulus_id)

    return FleetWorker


async def check_scheduler_version(address: str, name: str, security: Any = None) -> dict[str, Any] | None:
    """The scheduler's qbench facts (None for a plain ``dask scheduler``); FleetError on a mismatch
    or when it cannot be reached."""
    from distributed.core import rpc

    args = security.get_connection_args("worker") if security is not None else {}
    try:
        async with rpc(address, connection_args=args, timeout=10) as scheduler:
            try:
                info = await scheduler.qbench_version()
            except (OSError, asyncio.TimeoutError):
                raise
            except Exception:  # noqa: BLE001 - a scheduler without qbench's handler: clients check
                return None
    except (OSError, asyncio.TimeoutError) as exc:
        raise FleetError(f"cannot reach the scheduler at {address}: {exc}") from None
    if not isinstance(info, dict):  # a plain `dask scheduler` answers an unknown handler with nothing
        return None
    message = version_mismatch(name, announced_version(), f"the scheduler at {address}", info.get("qbench", "?"))
    if message:
        raise FleetError(message)
    return info


async def serve_worker(address: str, name: str, security: Any = None,
                       on_ready: Callable[[Any], None] | None = None) -> None:
    """Join the scheduler at ``address`` as ``name`` and serve until it closes or we are stopped."""
    import dask

    dask.config.set({"distributed.comm.timeouts.connect": "10s"})
    await check_scheduler_version(address, name, security)
    worker_class = _worker_class()
    worker = worker_class(address, name=name, nthreads=1, resources={host_resource(name): 1},
                          security=security, memory_limit=0, dashboard=False, death_timeout=30)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(worker.close()))
    async with worker:
        worker.log_event(FACTS_TOPIC, {**host_facts(name), "address": worker.address})
        if on_ready is not None:
            on_ready(worker)
        await worker.finished()


def run_worker(address: str, name: str, security: Any = None) -> int:
    def ready(worker: Any) -> None:
        print(f"qbench worker {name} (qbench {announced_version()}) joined {address} as {worker.address}",
              flush=True)

    try:
        asyncio.run(serve_worker(address, name, security, ready))
    except FleetError as exc:
        print(f"qbench: error: {exc}", file=sys.stderr)
        return 2
    return 0
