"""Every engine of the fleet on every member's status hub (WatchEngines fleet-wide).

`FleetHub` is the daemon's `StatusHub`: what an engine owned here publishes goes to
local watchers at once and is queued for the store (latest per engine, written by
one task, so a burst of changes costs one write); what other members write arrives
through the store's change feed and is published here unless this member owns the
engine now (its own status is newer by construction). A status of an engine that
was handed over or lost here is not mirrored: it is no longer this member's to say.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import replace
from typing import Protocol

from ctsd.engine.status import EngineState, EngineStatus, Failure, FailureCode
from ctsd.engine.watch import StatusHub
from ctsd.tasks import cancel_and_wait

log = logging.getLogger("ctsd.fleet")
VERSION_BITS = 32
"""An engine's status versions under one lease token; the token goes above them."""


class StatusStore(Protocol):
    async def save(self, owner: str, statuses: Sequence[EngineStatus]) -> None: ...

    async def load(self, connection_id: str | None = None) -> list[tuple[str, EngineStatus]]:
        ...

    def changes(self) -> AsyncIterator[str | None]: ...


class FleetHub(StatusHub):
    def __init__(self, store: StatusStore, member_id: str) -> None:
        super().__init__()
        self._store = store
        self._member_id = member_id
        self._token: Callable[[str], int | None] = lambda _: None
        self._pending: dict[str, EngineStatus] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def open(self, token: Callable[[str], int | None]) -> None:
        """Start mirroring; `token` is the fencing token of the lease this member holds on
        an engine (None: not ours)."""
        self._token = token
        self._tasks = [asyncio.create_task(self._writing(), name="fleet-status-writer"),
                       asyncio.create_task(self._following(), name="fleet-status-follower")]

    async def close(self) -> None:
        await cancel_and_wait(*self._tasks)
        if self._pending:  # the last word of engines that stopped at shutdown
            await self._flush()

    def publish(self, status: EngineStatus) -> None:
        token = self._token(status.connection_id)
        if token is not None:
            # Versions must keep growing across owners (watchers keep the highest): the
            # token grows with each change of owner, the engine's own count within one.
            status = replace(status, owner=self._member_id,
                             version=(token << VERSION_BITS) + status.version)
            self._pending[status.connection_id] = status
            self._wake.set()
        super().publish(status)

    def orphaned(self, connection_ids: Iterable[str]) -> None:
        """Engines that should run and whose lease expired (their owner died, paused or
        lost the database), not yet adopted: said on this member's watchers, not
        stored, so GetEngine, ListEngines and WatchEngines stop showing the dead
        owner's last word as if it still held. The next owner's first status, under
        a higher token, replaces it."""
        for connection_id in connection_ids:
            status = self.get(connection_id)
            if (status is None or not status.owner or status.state is EngineState.STOPPED
                    or self._token(connection_id) is not None):
                continue
            failure = Failure(FailureCode.LEASE_OVERDUE,
                              f"owner {status.owner} lost its lease; adoption pending")
            if status.failure != failure:
                StatusHub.publish(self, replace(status, failure=failure,
                                                version=status.version + 1))

    async def _flush(self) -> None:
        """Writes what is queued; a status leaves the queue only once written (a flush
        cancelled at close leaves it for the last one), unless a newer one replaced it."""
        batch = dict(self._pending)
        try:
            await self._store.save(self._member_id, list(batch.values()))
        except Exception as exc:  # the database away: the next change writes again
            log.warning("engine statuses not shared", extra={"error": str(exc)})
            return
        for connection_id, status in batch.items():
            if self._pending.get(connection_id) is status:
                del self._pending[connection_id]

    async def _writing(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def _following(self) -> None:
        while True:
            try:
                async for changed in self._store.changes():
                    for owner, status in await self._store.load(changed):
                        if owner != self._member_id and self._token(
                                status.connection_id) is None:
                            StatusHub.publish(self, status)
            except Exception as exc:
                log.warning("fleet status feed interrupted", extra={"error": str(exc)})
            await asyncio.sleep(1.0)  # the feed ended (database away): listen again
