"""The queue of writes waiting for the writer thread, taken in batches.

Why not one `run_in_executor` per write: each costs a wake-up of the writer
thread and three callbacks back to the loop (the read model's publish, the
reachability note, the caller's future), and every statement the writer runs
retakes the GIL from a loop that, in a burst, is busy deciding for the next
engine. Taken together, a burst of N writes is one wake-up, one transaction
(`Backend.run_many`) and one callback that publishes every committed result in
commit order and then wakes every caller.

Cancellation keeps `Database.write`'s contract: a write whose caller is
cancelled while it is still queued is dropped and never starts; once the
writer has taken it, it runs to the end and its result is published whether or
not anyone still waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from ctsd.store.database_tx import Outcome, Transaction

log = logging.getLogger("ctsd.store")

Batch = Callable[[list[Callable[[Transaction], Any]]], list[Outcome]]


@dataclass(eq=False)
class _Write:
    unit: Callable[[Transaction], Any]
    publish: Callable[[Any], None] | None
    waiter: asyncio.Future[Any]
    taken: bool = field(default=False)


class WriteQueue:
    """`write` from the loop; `run_batch` runs queued writes on the writer (the executor's
    one thread). `took_write` is called on the loop after any batch that committed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, executor: Executor, batch: Batch,
                 took_write: Callable[[], None]) -> None:
        self._loop = loop
        self._executor = executor
        self._batch = batch
        self._took_write = took_write
        self._lock = threading.Lock()
        self._queued: list[_Write] = []
        self._draining = False

    async def write(self, unit: Callable[[Transaction], Any],
                    publish: Callable[[Any], None] | None) -> Any:
        job = _Write(unit, publish, self._loop.create_future())
        with self._lock:
            self._queued.append(job)
            start, self._draining = not self._draining, True
        if start:
            self._executor.submit(self._drain)
        try:
            return await job.waiter
        except asyncio.CancelledError:
            with self._lock:
                if not job.taken and job in self._queued:
                    self._queued.remove(job)  # never starts
            raise

    def _drain(self) -> None:
        """On the writer thread: batches until the queue is empty."""
        while True:
            with self._lock:
                # A waiter already done was cancelled (`Task.cancel` cancels the future
                # its task awaits at once; the task hears of it only later): not started.
                jobs = [job for job in self._queued if not job.waiter.done()]
                self._queued = []
                if not jobs:
                    self._draining = False
                    return
                for job in jobs:
                    job.taken = True
            try:
                outcomes = self._batch([job.unit for job in jobs])
            except BaseException as exc:  # the whole batch failed: each caller hears why
                outcomes = [(False, exc, []) for _ in jobs]
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                self._loop.call_soon_threadsafe(self._settle, jobs, outcomes)

    def _settle(self, jobs: list[_Write], outcomes: list[Outcome]) -> None:
        """On the loop: publish what committed, in commit order, then wake the callers."""
        for job, (ok, value, _notes) in zip(jobs, outcomes, strict=True):
            if ok and job.publish is not None:
                try:
                    job.publish(value)
                except Exception:  # a bug in a read model; the row is committed regardless
                    log.exception("publishing a committed write failed")
        if any(ok for ok, _, _ in outcomes):
            self._took_write()
        for job, (ok, value, _notes) in zip(jobs, outcomes, strict=True):
            if job.waiter.done():
                continue  # its caller was cancelled after the writer took it
            if ok:
                job.waiter.set_result(value)
            else:
                job.waiter.set_exception(value)
