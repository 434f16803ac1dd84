"""`ManagerLifecycle`: the daemon's start and shutdown, as the engines see them.

At start every engine whose desired state is RUNNING resumes; one that cannot
resume shows FAILED and the others go on. In a fleet none resumes at `open`:
whichever daemon takes an engine's expired lease adopts it (`manager_fleet`).

A daemon shutdown leaves the engines' open orders resting by default, because the
engine resumes and reconciles them on the next start; with `cancel_orders_on_shutdown`
it cancels them first, the way StopEngine does, within the same `shutdown_grace_s`
budget as the last cycle (an engine still busy at the deadline is aborted, and says
what stayed open). Either way the desired state stays RUNNING: the engine resumes
after the restart.
"""

from __future__ import annotations

import asyncio
import logging

from ctsd.engine.manager_runs import EngineRuns
from ctsd.engine.status import EngineState
from ctsd.engine.store_ports import DesiredState
from ctsd.tasks import cancel_and_wait

log = logging.getLogger("ctsd.engine")


class ManagerLifecycle(EngineRuns):
    """`open` at daemon start, `close` at shutdown, and the watchers' heartbeats between."""

    async def open(self) -> None:
        """Resume every engine whose desired state is RUNNING, then start heartbeats."""
        for record in await self._store.load_engines():
            if record.desired is DesiredState.RUNNING:
                if self._leases is None:  # in a fleet, adopted under a lease (`adopt`)
                    await self._resume(record)
            else:
                self._hub.publish(self._bare_status(record, EngineState.STOPPED, None))
        self._heartbeats = asyncio.create_task(self._beat(), name="engine-heartbeats")

    async def close(self) -> None:
        """Daemon shutdown: finish cycles in flight and, if configured, cancel open orders,
        all within the grace period; engines still busy after it are aborted."""
        await self._operations.wait()  # starts and stops in flight finish first
        if self._heartbeats is not None:
            await cancel_and_wait(self._heartbeats)
        runs = [run for run in self._runs.values() if run.active]
        stopping = [asyncio.ensure_future(run.stop(cancel_orders=self._cancel_on_shutdown))
                    for run in runs]
        if stopping:
            _, late = await asyncio.wait(stopping, timeout=self._grace_s)
            for run in runs:
                if run.active:
                    log.warning("engine did not stop within the shutdown grace; aborted",
                                extra={"connection_id": run.engine.connection_id,
                                       "grace_s": self._grace_s})
                    run.abort()
            for task in late:
                task.cancel()
            await asyncio.gather(*stopping, *(r.task for r in runs if r.task),
                                 return_exceptions=True)
        for connection_id in list(self._runs):
            await self._release(connection_id)

    async def _beat(self) -> None:
        while True:
            await self._clock.sleep(self._heartbeat_s)
            self._hub.heartbeat(self._clock.now_ms())
