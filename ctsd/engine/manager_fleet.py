"""`FleetHandovers`: engines changing hands between the daemons of a fleet.

In a fleet (`leases` given, `ctsd.fleet`) an engine runs only under its lease:
a start takes it, a stop gives it back, and engines that should run are not
resumed at `open` but adopted one by one (`adopt`) by whichever daemon takes
their expired lease -- the same resume path, run by another daemon. A daemon
that loses a lease ends that engine at once (`relinquish`), touching nothing.
An engine stopped while no daemon ran it, its orders still open, is resumed and
stopped at once by the daemon that takes its lease (`finish_stop`).
"""

from __future__ import annotations

import logging

from ctsd import fencing
from ctsd.engine.config import validate_config
from ctsd.engine.lease_ports import Lease
from ctsd.engine.manager_runs import EngineRuns
from ctsd.engine.store_ports import DesiredState, EngineRecord

log = logging.getLogger("ctsd.engine")


class FleetHandovers(EngineRuns):
    """What the fleet asks of this daemon's manager when a lease changes hands."""

    async def adopt(self, connection_id: str, lease: Lease) -> None:
        """Fleet: resume the engine whose lease this daemon just took -- the resume path
        after a restart (reconcile with the venue first, fail closed), run by another
        daemon. Runs to the end once begun, like `start`."""
        await self._operations.run(self._adopt(connection_id, lease),
                                   f"engine-adopt:{connection_id}")

    async def _adopt(self, connection_id: str, lease: Lease) -> None:
        async with self._locks.lock(connection_id):
            await self._release(connection_id)  # a run here that lost the lease before
            self._held[connection_id] = lease
            record = await self._stored(connection_id)
            if record is None or record.desired is not DesiredState.RUNNING:
                await self._give_back(connection_id)  # stopped since the lease was taken
                return
            await self._resume(record, lease)

    async def finish_stop(self, connection_id: str, lease: Lease) -> None:
        """Fleet: an engine stopped while no daemon ran it still has orders open: resume
        it here under `lease` (reconcile first) and stop it at once, cancelling them."""
        await self._operations.run(self._finish_stop(connection_id, lease),
                                   f"engine-finish-stop:{connection_id}")

    async def _finish_stop(self, connection_id: str, lease: Lease) -> None:
        async with self._locks.lock(connection_id):
            await self._release(connection_id)
            self._held[connection_id] = lease
            try:
                record = await self._stored(connection_id)
                if record is not None and record.desired is DesiredState.STOPPED:
                    await self._cancel_left_open(record, lease)
            except Exception:  # the fleet tries again later; the orders stay listed open
                log.exception("cancelling a stopped engine's orders failed",
                              extra={"connection_id": connection_id})
            finally:
                await self._give_back(connection_id)

    async def _cancel_left_open(self, record: EngineRecord, lease: Lease) -> None:
        """The engine's session start (reconcile with the venue) and its stop's cancels,
        without a cycle in between, under the lease."""
        validated = validate_config(record.config, self._strategies)
        resources = await self._open(record.connection_id, record.config.mode)
        try:
            engine = self._build(record, validated, resources, lease)
            with fencing.guarded(lease):
                await engine.reconcile()
                await engine.cancel_open_orders()
        finally:
            await self._backend.close(record.connection_id, resources)

    async def relinquish(self, connection_id: str) -> None:
        """Fleet: the lease is lost (or handed over by a drain): end the engine here at once,
        without cancelling its orders or writing anything -- they are the next owner's."""
        await self._operations.run(self._relinquish(connection_id),
                                   f"engine-relinquish:{connection_id}")

    async def _relinquish(self, connection_id: str) -> None:
        async with self._locks.lock(connection_id):
            self._held.pop(connection_id, None)
            run = self._runs.get(connection_id)
            if run is not None:
                await run.stop(cancel_orders=False)
                await self._release(connection_id)

    def owned(self) -> dict[str, Lease]:
        """Fleet: the engines this daemon holds the lease of."""
        return dict(self._held)
