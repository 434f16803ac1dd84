"""A clock for the limiter that only moves when the test says so.

`sleep` parks the caller until `advance_to` (or `run`) moves time past its
wake-up time; between steps the event loop is given a fixed number of turns
so every task reacts to the new time before the next step. Nothing sleeps
for real, and grant times are exact, so window guarantees can be checked
to the microsecond.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Iterable
from typing import Any


class VirtualClock:
    def __init__(self, start: float = 1000.0, turns: int = 40) -> None:
        self.now = start
        self._turns = turns
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._seq), future))
        await future

    async def settle(self) -> None:
        for _ in range(self._turns):
            await asyncio.sleep(0)

    def _next_wake(self) -> float | None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def advance_to(self, when: float) -> None:
        """Move to `when`, waking every sleeper due on the way at its own time."""
        await self.settle()
        while (wake := self._next_wake()) is not None and wake <= when:
            _, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, wake)
            future.set_result(None)
            await self.settle()
        self.now = max(self.now, when)
        await self.settle()

    async def run(self, tasks: Iterable[asyncio.Future[Any]], limit_s: float = 1e6) -> None:
        """Advance from wake-up to wake-up until every task is done."""
        pending = list(tasks)
        deadline = self.now + limit_s
        await self.settle()
        while not all(t.done() for t in pending):
            wake = self._next_wake()
            if wake is None or wake > deadline:
                raise AssertionError("tasks are stuck: nobody sleeps and nobody finished")
            await self.advance_to(wake)
