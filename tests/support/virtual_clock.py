"""The one virtual clock of the tests: `ctsd.clock.Clock` where time moves only when told.

`sleep` parks the caller until time is moved past its wake-up; between steps
the event loop is given a fixed number of turns (`settle`) so every task
reacts to the new time before the next step. Nothing sleeps for real, and
wake-up times are exact, so rate-limit windows can be checked to the
microsecond and hours of engine life pass in milliseconds. Three ways to
move time:

- `advance(seconds)` / `advance_to(when)`: to a point, waking each sleeper due
  on the way at its own time, one at a time;
- `run(tasks)`: from wake-up to wake-up until every task is done;
- `run_coroutine(coro)`: the same for one coroutine, whose result it returns;
  sleepers due at the same time wake together.

Both `run` forms fail (instead of hanging) when every task waits and nobody
sleeps, or when time would pass `limit_s`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

START_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
SETTLE_ROUNDS = 60


class VirtualClock:
    def __init__(self, start: float = 0.0, start_ms: int = START_MS) -> None:
        self.now = start
        """Seconds on the monotonic scale."""
        self._wall_offset_ms = start_ms - round(start * 1000)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self.sleeps: list[float] = []
        """Every duration slept, in order."""

    def now_ms(self) -> int:
        return self._wall_offset_ms + round(self.now * 1000)

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._order), waiter))
        await waiter

    async def settle(self) -> None:
        for _ in range(SETTLE_ROUNDS):
            await asyncio.sleep(0)

    def _next_wake(self) -> float | None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)  # cancelled sleeps
        return self._sleepers[0][0] if self._sleepers else None

    async def advance(self, seconds: float) -> None:
        await self.advance_to(self.now + seconds)

    async def advance_to(self, when: float) -> None:
        """Move to `when`, waking every sleeper due on the way at its own time."""
        await self.settle()
        while (wake := self._next_wake()) is not None and wake <= when:
            _, _, waiter = heapq.heappop(self._sleepers)
            self.now = max(self.now, wake)
            waiter.set_result(None)
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

    async def run_coroutine(self, coro: Coroutine[Any, Any, T], limit_s: float = 1e6) -> T:
        """Drive `coro` to completion: whenever every task is blocked, time jumps to the
        earliest pending sleep and wakes every sleeper due then."""
        task = asyncio.ensure_future(coro)
        while True:
            await self.settle()
            if task.done():
                return task.result()
            wake = self._next_wake()
            if wake is None or wake > limit_s:
                task.cancel()
                problem = "every task waits and no sleep is pending" if wake is None else (
                    f"virtual time ran past {limit_s} s")
                raise AssertionError(f"deadlock: {problem}")
            self.now = max(self.now, wake)
            while (due := self._next_wake()) is not None and due <= self.now:
                heapq.heappop(self._sleepers)[2].set_result(None)
