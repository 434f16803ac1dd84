"""Status fan-out to watchers through shared frames: a change costs the same for 1 or 500 watchers.

A status change is recorded once, in the hub's next frame, which holds one slot
per engine: a newer status of an engine replaces its slot (a status is a whole
snapshot of the engine, so only intermediate states are lost, never the latest).
Each frame costs a message per watcher, paid from a budget (`FrameBudget`) that
refills at `messages_per_s`, so that hundreds of streams together write no more
messages than that a second, sustained, and that holds up to `BURST_S` of it.
Engines change in bursts (a market tick wakes hundreds of them at once, then all is
quiet): what a quiet spell saves lets a burst's frames go out as fast as the watchers
take them, where a fixed frame interval held every change of a burst back by up to
that interval. Once the budget is spent, a frame waits for one frame's worth to
refill (watchers / `messages_per_s`). The hub wakes the waiting watchers a slice at
a time, so that engines' cycles run between the writes.

A watcher holds only the number of the next frame it has to read. Up to date, it
reads the newest frame's events, the very tuple every other watcher reads, which
the transport then encodes once (`ctsd.api.watch_encoding`). Behind by several
frames, it reads them merged, one change per engine with its newest state.
Behind further than the frames kept (at most `capacity` changes together, the
newest frame always), it reads a fresh `Snapshot(resync=True)` of every engine
instead. So publishing never awaits and does not loop over watchers, a stalled
watcher costs no memory, and every engine's final state reaches every watcher.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ctsd.engine.status import EngineStatus

DEFAULT_CAPACITY = 16_384
"""Changes kept in cut frames for watchers still to read them (references to shared
statuses, not copies); a watcher further behind is resynced."""
MESSAGES_PER_S = 10_000
"""WatchEngines messages a second all watchers together aim to stay under: each write
costs the daemon tens of microseconds whatever it holds."""
BURST_S = 0.25
"""The budget a quiet spell saves up, in seconds of `messages_per_s`: a few frames to 500
watchers, enough for the burst of cycles one market tick sets off."""
MIN_INTERVAL_S = 0.001
"""Shorter waits for the budget are not worth a timer: the frame is cut at once."""
WAKE_SLICE = 512
"""Watchers woken per loop iteration when a frame is cut: 500 take about 15 ms of loop
(their writes), and each further slice waits behind a whole iteration of engine steps,
which in a burst of cycles stretched a frame's fan-out by tens of milliseconds."""
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


@dataclass(frozen=True, slots=True)
class Frame:
    """The changes cut together: one slot per engine (and one for the latest heartbeat)."""

    number: int
    slots: dict[object, Queued]
    events: tuple[Queued, ...]


class Watcher:
    """One subscriber's position in the hub's frames; read with `async for`, `next_event()`
    or `next_batch()`."""

    def __init__(self, hub: StatusHub) -> None:
        self._hub = hub
        self._next: int | None = None
        """The number of the next frame to read; None: a snapshot is due."""
        self._held: deque[Queued] = deque()
        """Events of a batch that `next_event` hands out one at a time."""
        self._resynced = 0
        self._resync = False

    @property
    def resyncs(self) -> int:
        """How often this watcher fell behind (now included): for metrics and tests."""
        behind = self._next is not None and self._next < self._hub.first_kept
        return self._resynced + behind

    @property
    def backlog(self) -> int:
        """Events the next reads hand out (a due snapshot counts one)."""
        if self._next is None or self._next < self._hub.first_kept:
            return 1
        return len(self._held) + self._hub.pending_from(self._next)

    async def next_event(self) -> WatchEvent:
        if not self._held:
            batch = await self.next_batch()
            if isinstance(batch, Snapshot):
                return batch
            self._held.extend(batch)
        return self._held.popleft()

    async def next_batch(self) -> Snapshot | tuple[Queued, ...]:
        """The due snapshot, or every change since the last read at once, oldest first.

        A writer that takes everything per message sends fewer, larger messages
        exactly when changes come faster than it writes: the batch grows with the
        backlog (up to one change per engine) instead of the backlog growing.
        """
        if self._held:
            held = tuple(self._held)
            self._held.clear()
            return held
        while True:
            if self._next is not None and self._next < self._hub.first_kept:
                self._resynced += 1
                self._next, self._resync = None, True
            if self._next is None:
                return self._take_snapshot()
            events = self._hub.frames_from(self._next)
            if events is not None:
                self._next = self._hub.cut_count
                return events
            await self._hub.next_cut()

    def _take_snapshot(self) -> Snapshot:
        snapshot = Snapshot(self._hub.snapshot(), self._resync)
        self._next, self._resync = self._hub.cut_count, False
        return snapshot

    def __aiter__(self) -> AsyncIterator[WatchEvent]:
        return self

    async def __anext__(self) -> WatchEvent:
        return await self.next_event()

    def close(self) -> None:
        self._hub.unsubscribe(self)


class StatusHub:
    """The latest status of every engine, and the frames of changes watchers read."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY,
                 messages_per_s: float = MESSAGES_PER_S, burst_s: float = BURST_S) -> None:
        self._capacity = capacity
        self._statuses: dict[str, EngineStatus] = {}
        self._snapshot: tuple[EngineStatus, ...] | None = ()
        self._watchers: set[Watcher] = set()
        self._uncut: dict[object, Queued] = {}
        self._frames: deque[Frame] = deque()
        self._kept = 0
        """Changes in `_frames`."""
        self._cut_count = 0
        self._budget = FrameBudget(messages_per_s, burst_s)
        self._timer: asyncio.TimerHandle | None = None
        self._waiters: dict[asyncio.Future[None], None] = {}
        self._merged: dict[int, tuple[Queued, ...]] = {}
        """What `frames_from` answered since the last cut, by starting frame."""

    def publish(self, status: EngineStatus) -> None:
        self._statuses[status.connection_id] = status
        self._snapshot = None
        self._add(status.connection_id, Changed(status))

    def heartbeat(self, timestamp_ms: int) -> None:
        self._add(_HEARTBEAT, Heartbeat(timestamp_ms))

    def get(self, connection_id: str) -> EngineStatus | None:
        return self._statuses.get(connection_id)

    def snapshot(self) -> tuple[EngineStatus, ...]:
        """Every engine, ordered by connection; the same tuple until the next change."""
        if self._snapshot is None:
            self._snapshot = tuple(self._statuses[c] for c in sorted(self._statuses))
        return self._snapshot

    def subscribe(self) -> Watcher:
        """A watcher whose first event is a snapshot of every engine; close it when done."""
        watcher = Watcher(self)
        self._watchers.add(watcher)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    # --- what watchers read ---------------------------------------------------------------

    @property
    def kept(self) -> int:
        """Changes held in cut frames for watchers still to read them."""
        return self._kept

    @property
    def cut_count(self) -> int:
        """The number the next frame will have."""
        return self._cut_count

    @property
    def first_kept(self) -> int:
        """The oldest frame still kept: a watcher wanting an older one is resynced."""
        return self._frames[0].number if self._frames else self._cut_count

    def frames_from(self, number: int) -> tuple[Queued, ...] | None:
        """The events of frames `number`… merged (None: none cut yet). Every watcher at
        the same frame gets the same tuple: one merge, and one encoding downstream."""
        if number >= self._cut_count:
            return None
        found = self._merged.get(number)
        if found is not None:
            return found
        first = self.first_kept
        if number == self._cut_count - 1:
            events = self._frames[-1].events
        else:
            merged: dict[object, Queued] = {}
            for i in range(number - first, len(self._frames)):
                merged.update(self._frames[i].slots)
            events = tuple(merged.values())
        self._merged[number] = events
        return events

    def pending_from(self, number: int) -> int:
        """Events a watcher at frame `number` has still to read, the uncut ones included."""
        keys = set(self._uncut)
        for i in range(number - self.first_kept, len(self._frames)):
            keys.update(self._frames[i].slots)
        return len(keys)

    async def next_cut(self) -> None:
        """Returns once the next frame is cut (at once when changes are waiting and the
        frame interval has passed)."""
        future = asyncio.get_running_loop().create_future()
        self._waiters[future] = None
        self._schedule()
        try:
            await future
        finally:
            self._waiters.pop(future, None)

    # --- cutting frames --------------------------------------------------------------------

    def _add(self, key: object, event: Queued) -> None:
        if not self._watchers:
            return  # a watcher's first read is a snapshot: nobody needs this change
        self._uncut[key] = event
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None or not self._uncut or not self._waiters:
            return  # no waiter: the first watcher to wait schedules the cut
        loop = asyncio.get_running_loop()
        now = loop.time()
        wait = self._budget.wait(len(self._watchers), now)
        self._timer = loop.call_at(now + wait if wait >= MIN_INTERVAL_S else now, self._cut)

    def _cut(self) -> None:
        self._timer = None
        if not self._uncut:
            return
        self._budget.spend(len(self._watchers), asyncio.get_running_loop().time())
        slots, self._uncut = self._uncut, {}
        self._frames.append(Frame(self._cut_count, slots, tuple(slots.values())))
        self._merged.clear()
        self._cut_count += 1
        self._kept += len(slots)
        while self._kept > self._capacity and len(self._frames) > 1:
            self._kept -= len(self._frames.popleft().slots)
        waiters = list(self._waiters)
        self._waiters.clear()
        self._wake_from(waiters, 0)

    def _wake_from(self, waiters: list[asyncio.Future[None]], start: int) -> None:
        for future in waiters[start:start + WAKE_SLICE]:
            if not future.done():
                future.set_result(None)
        if start + WAKE_SLICE < len(waiters):
            asyncio.get_running_loop().call_soon(self._wake_from, waiters, start + WAKE_SLICE)


class FrameBudget:
    """Messages the hub may still hand out: refilled at `rate` a second, holding at most
    `burst_s` of it (and always one frame's worth, however many watchers there are)."""

    def __init__(self, rate: float, burst_s: float = BURST_S) -> None:
        self._rate = rate
        self._burst = rate * burst_s
        self._level = math.inf  # full, whatever the ceiling is once watchers come
        self._at = 0.0

    def wait(self, cost: int, now: float) -> float:
        """Seconds from `now` until `cost` messages are in the budget (0: at once)."""
        return max(0.0, cost - self._refilled(cost, now)) / self._rate

    def spend(self, cost: int, now: float) -> None:
        """A frame cut for `cost` watchers (cut when `wait` said: the level stays >= 0,
        unless watchers came in between, which later frames then pay back)."""
        self._level = self._refilled(cost, now) - cost
        self._at = now

    def _refilled(self, cost: int, now: float) -> float:
        return min(max(self._burst, float(cost)), self._level + (now - self._at) * self._rate)
