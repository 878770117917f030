"""A qbench worker meeting a plain Dask scheduler (``dask scheduler``, dask-jobqueue, an operator's):
the version check it asks of qbench's own scheduler is answered with nothing there, which must
not crash the worker."""

from __future__ import annotations

import asyncio

from engines.fleet.worker import check_scheduler_version


def test_the_version_check_against_a_plain_dask_scheduler_lets_the_worker_join():
    from distributed import Scheduler

    async def main():
        async with Scheduler(port=0, host="127.0.0.1", dashboard_address=":0") as scheduler:
            return await asyncio.wait_for(check_scheduler_version(scheduler.address, "w1"), 30)

    assert asyncio.run(main()) is None  # no qbench facts there; clients check versions instead
