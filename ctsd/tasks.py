"""Task and lifecycle helpers shared by packages that own background tasks or resources."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

T = TypeVar("T")


async def cancel_and_wait(*tasks: asyncio.Future[Any]) -> None:
    """Cancel `tasks` and wait until they end, without swallowing our own cancellation.

    Awaiting a cancelled child raises CancelledError in the caller; that error
    is the child's, unless the caller itself is being cancelled, in which case
    it must propagate.
    """
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except Exception:  # the task's own error: its owner reports it
            pass


class Interrupted(Exception):
    """`unless_set`'s event was set first: the work was cancelled before it finished."""


async def unless_set(event: asyncio.Event, work: Awaitable[T]) -> T:
    """`work`'s result, or `Interrupted` as soon as `event` is set, `work` then cancelled.

    For work that is safe to abandon (reads): a stop need not wait for it, however
    long it waits for rate-limit budget or a slow venue.
    """
    task = asyncio.ensure_future(work)
    if event.is_set():
        await cancel_and_wait(task)
        raise Interrupted
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(waiter, *(() if task.done() else (task,)))
    if task.cancelled() and event.is_set():
        raise Interrupted
    return task.result()


class Uninterruptible:
    """Operations that run to the end once begun, whatever happens to their caller.

    A use case that writes the store and then changes in-memory state (start an
    engine, stop one) must not be cut between the two by a caller's cancellation (a
    client deadline, a dropped connection): the store and what the API shows would
    disagree until a restart. `run` starts the operation as a task of its own and
    waits for it under `asyncio.shield`: a cancelled caller stops waiting, the
    operation goes on. The owner calls `wait()` before it closes what they use.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self, work: Coroutine[Any, Any, T], name: str) -> T:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that left would never see it

    async def wait(self) -> None:
        """Until every operation begun so far has ended."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))


class AsyncClosing:
    """`async with owner:` closes it on the way out, however the block ends."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
