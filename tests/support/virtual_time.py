"""A virtual clock for asyncio code that takes injected `monotonic` and `sleep`.

`VirtualTime.run(coro)` drives `coro` to completion: whenever every task is
blocked, time jumps to the earliest pending `sleep` and wakes it. Code under
test never waits for real time, and the order in which things happen depends
only on the virtual clock, so tests are exact and fast.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

SETTLE_ROUNDS = 50


class VirtualTime:
    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + max(0.0, seconds), next(self._order), waiter))
        await waiter

    async def _settle(self) -> None:
        for _ in range(SETTLE_ROUNDS):
            await asyncio.sleep(0)

    async def run(self, coro: Coroutine[Any, Any, T], limit_s: float = 1e6) -> T:
        task = asyncio.ensure_future(coro)
        while True:
            await self._settle()
            if task.done():
                return task.result()
            while self._timers and self._timers[0][2].done():
                heapq.heappop(self._timers)  # cancelled sleeps
            if not self._timers:
                task.cancel()
                raise AssertionError("deadlock: every task waits and no sleep is pending")
            when = self._timers[0][0]
            if when > limit_s:
                task.cancel()
                raise AssertionError(f"virtual time ran past {limit_s} s")
            self.now = max(self.now, when)
            while self._timers and self._timers[0][0] <= self.now:
                _, _, waiter = heapq.heappop(self._timers)
                if not waiter.done():
                    waiter.set_result(None)
