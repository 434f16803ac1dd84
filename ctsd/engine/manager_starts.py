"""`StartsAndStops`: StartEngine and StopEngine, at most one engine per connection.

A start validates the config and claims the connection (another start is refused
until the engine stops), then opens its clients and prepares the engine (what the
market cannot do, and the venue's settings) before anything is stored or placed: a
refusal fails the start itself. Once begun, a start or a stop runs to the end even
if its caller is cancelled, so the stored desired state and the engine running always
agree. Stopping by request cancels the engine's open orders. In a fleet a start goes
to the member the load picks and a stop to the member that owns the engine.
"""

from __future__ import annotations

from dataclasses import replace

from ctsd.engine.config import EngineConfig, ValidatedConfig, validate_config
from ctsd.engine.manager_runs import EngineRuns
from ctsd.engine.status import EngineState, EngineStatus
from ctsd.engine.store_ports import DesiredState, EngineRecord
from ctsd.errors import FailedPrecondition, NotFound


class StartsAndStops(EngineRuns):
    """Starting and stopping engines by request, and which connections are engaged."""

    async def start(self, connection_id: str, config: EngineConfig) -> EngineStatus:
        """Starts an engine (in a fleet, on the member the load picks); once begun, the
        start runs to the end even if the caller is cancelled, so the stored desired
        state and the engine running always agree."""
        validated = validate_config(config, self._strategies)
        self._check_free(connection_id)
        if self._leases is not None:
            placed = await self._operations.run(self._leases.place(connection_id, config),
                                                f"engine-place:{connection_id}")
            if placed is not None:
                return placed
        return await self._start_here(connection_id, validated)

    async def start_here(self, connection_id: str, config: EngineConfig) -> EngineStatus:
        """Fleet: a start another member placed here."""
        return await self._start_here(connection_id, validate_config(config, self._strategies))

    async def _start_here(self, connection_id: str, validated: ValidatedConfig) -> EngineStatus:
        self._claim(connection_id)
        status = await self._operations.run(self._start(connection_id, validated),
                                            f"engine-start:{connection_id}")
        if self._leases is None:
            return status
        return self._hub.get(connection_id) or status  # as the fleet sees it: its owner

    async def _start(self, connection_id: str, validated: ValidatedConfig) -> EngineStatus:
        config = validated.config
        try:
            # Held until the engine is listed, so a delete of the connection either
            # finishes first (and _open fails) or sees the engine and refuses.
            async with self._locks.lock(connection_id):
                await self._release(connection_id)
                lease = await self._acquire(connection_id)
                try:
                    resources = await self._open(connection_id, config.mode)
                except BaseException:
                    await self._give_back(connection_id)
                    raise
                record = EngineRecord(
                    connection_id, self._engine_ids(), config, DesiredState.RUNNING
                )
                try:
                    # What the market cannot do, and the venue's settings, before anything
                    # is stored or placed: a refusal fails the start itself.
                    engine = self._build(record, validated, resources, lease)
                    await engine.prepare()
                    await engine.recover_earlier(await self._stored(connection_id))
                    await self._store.create_engine(record)
                except BaseException:
                    await self._backend.close(connection_id, resources)
                    await self._give_back(connection_id)
                    raise
                run = self._launch(engine, resources)
        finally:
            self._claimed.discard(connection_id)
        return run.engine.status

    async def stop(self, connection_id: str) -> EngineStatus:
        """Stops the engine (in a fleet, on the member that owns it); like `start`, runs
        to the end once begun."""
        if self._hub.get(connection_id) is None:
            raise NotFound(f"no engine on connections/{connection_id}")
        if self._leases is not None and connection_id not in self._runs | self._held:
            stopped = await self._operations.run(self._leases.stop_elsewhere(connection_id),
                                                 f"engine-stop-elsewhere:{connection_id}")
            if stopped is not None:
                return stopped
        return await self.stop_here(connection_id)

    async def stop_here(self, connection_id: str) -> EngineStatus:
        """Stops the engine as this member knows it (in a fleet: a stop sent here)."""
        if self._hub.get(connection_id) is None:
            raise NotFound(f"no engine on connections/{connection_id}")
        return await self._operations.run(self._stop(connection_id),
                                          f"engine-stop:{connection_id}")

    async def _stop(self, connection_id: str) -> EngineStatus:
        # The lock a start holds: a stop never reads the engine a start is replacing.
        async with self._locks.lock(connection_id):
            run = self._runs.get(connection_id)
            status = self._hub.get(connection_id)
            if status is None:
                raise NotFound(f"no engine on connections/{connection_id}")
            held = self._held.get(connection_id)
            await self._store.set_desired(connection_id, DesiredState.STOPPED,
                                          status.last_error, held.fence if held else None)
            if run is None:  # resume failed before an engine existed
                stopped = self._bare_status_from(status, EngineState.STOPPED)
                self._hub.publish(stopped)
                await self._give_back(connection_id)
                return stopped
            await run.stop(cancel_orders=True)
            await self._release(connection_id)
            await self._give_back(connection_id)
            return run.engine.status

    async def idle(self) -> None:
        """Until no start or stop is in flight (one whose caller left included)."""
        await self._operations.wait()

    def engaged(self) -> set[str]:
        """Connections an engine may trade on: starting, running, or failed and waiting
        to restart (its task is alive)."""
        return self._claimed | {cid for cid, run in self._runs.items() if run.active}

    def _check_free(self, connection_id: str) -> None:
        run = self._runs.get(connection_id)
        if connection_id in self._claimed or (run is not None and run.active):
            raise FailedPrecondition(
                f"an engine is already running on connections/{connection_id}; stop it first")

    def _claim(self, connection_id: str) -> None:
        self._check_free(connection_id)
        self._claimed.add(connection_id)

    @staticmethod
    def _bare_status_from(status: EngineStatus, state: EngineState) -> EngineStatus:
        return replace(status, state=state, failure=None, version=status.version + 1)
