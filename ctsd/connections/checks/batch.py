"""BatchProcessor: runs many jobs through shared worker slots, by priority.

One processor serves the whole daemon. Each batch brings its own
concurrency (how many of its jobs run at once) and priority (which batch's
jobs take a free slot first); the processor's `max_workers` caps everything
running at once, across batches.

Per job: a deadline that starts when the job first gets a slot and covers
every attempt and every backoff; retries with exponential backoff and jitter
when `retryable(result)` says so; and always a result, even when the job
times out or crashes (`fallback` makes one). Results are yielded in the
order they finish.

Time, sleep and randomness are injected so tests can drive the processor on
a virtual clock and a seeded random source, without waiting.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random as random_module
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ctsd.connections.checks.settings import RetryPolicy
from ctsd.tasks import cancel_and_wait

log = logging.getLogger("ctsd.connections.checks.batch")

K = TypeVar("K")
R = TypeVar("R")

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class BatchOptions:
    concurrency: int = 3
    priority: int = 5
    """Higher runs first when batches compete for slots."""
    item_timeout_s: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class Job(Generic[K, R]):
    key: K
    run: Callable[[int], Awaitable[R]]
    """Called with the attempt number (1-based); returns a result, retryable or not."""


@dataclass(frozen=True)
class Abandoned:
    """Why a job has no result of its own: `fallback` turns this into one."""

    timed_out: bool
    reason: str


@dataclass(frozen=True)
class Finished(Generic[K, R]):
    key: K
    result: R
    attempts: int
    timed_out: bool = False


class PrioritySlots:
    """A counting semaphore whose waiters are served highest priority first, then FIFO."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def free(self) -> int:
        return self._free

    async def acquire(self, priority: int) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (-priority, next(self._order), waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class _TimedOut:
    pass


@dataclass(frozen=True)
class _Batch(Generic[K, R]):
    """What every job of one `process` call shares."""

    options: BatchOptions
    gate: asyncio.Semaphore
    """The batch's own concurrency, inside the processor's shared slots."""
    retryable: Callable[[R], bool]
    fallback: Callable[[K, Abandoned], R]
    finished: asyncio.Queue[Finished[K, R]]


_TIMED_OUT = _TimedOut()


class BatchProcessor:
    def __init__(
        self,
        max_workers: int = 32,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        random: Callable[[], float] = random_module.random,
    ) -> None:
        self._slots = PrioritySlots(max_workers)
        self._clock = clock
        self._sleep = sleep
        self._random = random

    async def process(
        self,
        jobs: Iterable[Job[K, R]],
        options: BatchOptions,
        *,
        retryable: Callable[[R], bool],
        fallback: Callable[[K, Abandoned], R],
    ) -> AsyncGenerator[Finished[K, R], None]:
        """Yields one `Finished` per job as it completes; closing early cancels the rest."""
        pending = list(jobs)
        batch = _Batch(options, asyncio.Semaphore(max(1, options.concurrency)), retryable,
                       fallback, asyncio.Queue())
        tasks = [asyncio.create_task(self._item(job, batch)) for job in pending]
        try:
            for _ in pending:
                yield await batch.finished.get()
        finally:
            await cancel_and_wait(*tasks)

    async def _item(self, job: Job[K, R], batch: _Batch[K, R]) -> None:
        try:
            done = await self._attempts(job, batch)
        except Exception:
            log.exception("batch job crashed", extra={"job": str(job.key)})
            crashed = Abandoned(timed_out=False, reason="internal error (see daemon log)")
            done = Finished(job.key, batch.fallback(job.key, crashed), 1)
        batch.finished.put_nowait(done)

    async def _attempts(self, job: Job[K, R], batch: _Batch[K, R]) -> Finished[K, R]:
        options, fallback = batch.options, batch.fallback
        policy = options.retry
        deadline: float | None = None
        attempt = 0
        while True:
            attempt += 1
            async with batch.gate:
                await self._slots.acquire(options.priority)
                try:
                    if deadline is None:
                        deadline = self._clock() + options.item_timeout_s
                    outcome = await self._within(job.run(attempt), deadline - self._clock())
                finally:
                    self._slots.release()
            if isinstance(outcome, _TimedOut):
                reason = f"timed out after {options.item_timeout_s:g} s ({attempt} attempts)"
                abandoned = Abandoned(timed_out=True, reason=reason)
                return Finished(job.key, fallback(job.key, abandoned), attempt, timed_out=True)
            if attempt >= policy.max_attempts or not batch.retryable(outcome):
                return Finished(job.key, outcome, attempt)
            delay = policy.delay_s(attempt, self._random())
            if self._clock() + delay >= deadline:
                return Finished(job.key, outcome, attempt)  # no time for another try
            await self._sleep(delay)

    async def _within(self, work: Awaitable[R], budget_s: float) -> R | _TimedOut:
        """`work`'s result, or _TIMED_OUT when the injected sleep of `budget_s` ends first."""
        if budget_s <= 0:
            if asyncio.iscoroutine(work):
                work.close()
            return _TIMED_OUT
        task = asyncio.ensure_future(work)
        timer = asyncio.ensure_future(self._sleep(budget_s))
        try:
            await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            return _TIMED_OUT
        finally:
            await cancel_and_wait(task, timer)
