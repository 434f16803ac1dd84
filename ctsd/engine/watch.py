"""Status fan-out to watchers, with a bounded queue each: a slow watcher never blocks an engine.

Publishing never awaits: it queues the event for each watcher. A watcher's queue
holds at most one change per engine: a newer status of an engine whose change is
still queued replaces it in place (a status is a whole snapshot of the engine, so
nothing is lost but an intermediate state), which keeps a burst of a thousand
event-driven engines finishing their cycles together from overflowing it. A
watcher whose queue is full has it dropped on the spot and is marked for resync;
its next read is a fresh `Snapshot(resync=True)` of every engine, built at read
time. So memory per watcher is bounded by its capacity however long it stops
reading, and a watcher that catches up loses intermediate changes but never the
current state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ctsd.engine.status import EngineStatus

DEFAULT_CAPACITY = 4096
"""Distinct engines queued per watcher (references to shared statuses, not copies)."""
_HEARTBEAT = object()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every engine's status; `resync` says the watcher fell behind and lost changes."""

    statuses: tuple[EngineStatus, ...]
    resync: bool = False


@dataclass(frozen=True, slots=True)
class Changed:
    status: EngineStatus


@dataclass(frozen=True, slots=True)
class Heartbeat:
    timestamp_ms: int


Queued = Changed | Heartbeat
WatchEvent = Snapshot | Queued


class Watcher:
    """One subscriber's bounded view; read with `async for`, `next_event()` or `next_batch()`."""

    def __init__(self, hub: StatusHub, capacity: int) -> None:
        self._hub = hub
        self._capacity = capacity
        self._events: dict[object, Queued] = {}
        self._wakeup = asyncio.Event()
        self._snapshot_due = True
        self._resync = False
        self.resyncs = 0
        """How often this watcher fell behind: for metrics and tests."""
        self._wakeup.set()

    def offer(self, event: Queued) -> None:
        if self._snapshot_due:
            return  # the snapshot about to be read is at least as new as this event
        key = event.status.connection_id if isinstance(event, Changed) else _HEARTBEAT
        if key not in self._events and len(self._events) >= self._capacity:
            self._events.clear()
            self._snapshot_due = self._resync = True
            self.resyncs += 1
        else:
            self._events[key] = event  # a queued change of the same engine is replaced
        self._wakeup.set()

    @property
    def backlog(self) -> int:
        return len(self._events)

    async def next_event(self) -> WatchEvent:
        await self._readable()
        if self._snapshot_due:
            return self._take_snapshot()
        return self._events.pop(next(iter(self._events)))

    async def next_batch(self) -> Snapshot | tuple[Queued, ...]:
        """The due snapshot, or every queued event at once, oldest first.

        A writer that drains the whole queue per message sends fewer, larger
        messages exactly when events arrive faster than it writes: the batch
        grows with the backlog instead of the backlog growing into a resync.
        """
        await self._readable()
        if self._snapshot_due:
            return self._take_snapshot()
        events = tuple(self._events.values())
        self._events.clear()
        return events

    async def _readable(self) -> None:
        while not self._snapshot_due and not self._events:
            self._wakeup.clear()
            await self._wakeup.wait()

    def _take_snapshot(self) -> Snapshot:
        snapshot = Snapshot(self._hub.snapshot(), self._resync)
        self._snapshot_due = self._resync = False
        return snapshot

    def __aiter__(self) -> AsyncIterator[WatchEvent]:
        return self

    async def __anext__(self) -> WatchEvent:
        return await self.next_event()

    def close(self) -> None:
        self._hub.unsubscribe(self)


class StatusHub:
    """The latest status of every engine, and the watchers to tell about changes."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._statuses: dict[str, EngineStatus] = {}
        self._watchers: set[Watcher] = set()

    def publish(self, status: EngineStatus) -> None:
        self._statuses[status.connection_id] = status
        event = Changed(status)
        for watcher in self._watchers:
            watcher.offer(event)

    def heartbeat(self, timestamp_ms: int) -> None:
        event = Heartbeat(timestamp_ms)
        for watcher in self._watchers:
            watcher.offer(event)

    def get(self, connection_id: str) -> EngineStatus | None:
        return self._statuses.get(connection_id)

    def snapshot(self) -> tuple[EngineStatus, ...]:
        return tuple(self._statuses[c] for c in sorted(self._statuses))

    def subscribe(self) -> Watcher:
        """A watcher whose first event is a snapshot of every engine; close it when done."""
        watcher = Watcher(self, self._capacity)
        self._watchers.add(watcher)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)
