"""Task and lifecycle helpers shared by packages that own background tasks or resources.

Lost cancellations
------------------
asyncio delivers a cancellation once, as one CancelledError at the task's next
await. Code that catches it and goes on loses it for good, and Python 3.11's own
`asyncio.wait_for` does so when what it waits for completes in the same loop
iteration as the cancellation arrives (CPython gh-86296, fixed in 3.12): it returns
the result instead. Libraries use it: psycopg_pool waits for a free connection
with it, so a task cancelled while the read pool is busy could go on reading, then
sleep or wait for the next notification as if never cancelled, and an owner that
awaited it after `cancel()` waited for ever (a PostgreSQL daemon that never exited
after SIGTERM). Two defences:

- `keep_cancellation(work)` around calls into such libraries: the caller's
  cancellation reaches the caller whatever `work` does with it;
- `cancel_and_wait` cancels again a task that is still running a while after its
  cancellation, and logs where it was, so one more swallower costs a delay and a
  warning, not a hang. `wait_for` itself is banned from ctsd (ruff's banned-api):
  `asyncio.timeout` does not lose cancellations.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

T = TypeVar("T")
log = logging.getLogger("ctsd")

RECANCEL_AFTER_S = 1.0
"""How long a cancelled task may run on before it is cancelled again (doubling up to
`RECANCEL_MAX_S`): far longer than a task needs to end, which is one loop iteration
unless its clean-up awaits something."""
RECANCEL_MAX_S = 8.0


async def cancel_and_wait(*tasks: asyncio.Future[Any],
                          recancel_after_s: float = RECANCEL_AFTER_S) -> None:
    """Cancel `tasks` and wait until they end, without swallowing our own cancellation.

    A CancelledError while waiting is the caller's own and propagates. A task still
    running `recancel_after_s` after its cancellation lost it (see the module
    docstring): it is logged with where it waits, and cancelled again.
    """
    for task in tasks:
        task.cancel()
    pending = {task for task in tasks if not task.done()}
    delay = recancel_after_s
    while pending:
        _, pending = await asyncio.wait(pending, timeout=delay)
        for task in pending:
            log.warning("a task went on after its cancellation; cancelling it again",
                        extra={"task": _name(task), "waiting_at": waiting_at(task),
                               "after_s": delay})
            task.cancel()
        delay = min(delay * 2, max(RECANCEL_MAX_S, recancel_after_s))
    for task in tasks:
        retrieve_outcome(task)  # the task's own error: its owner reports it


async def keep_cancellation(work: Awaitable[T]) -> T:
    """`work`'s result; a cancellation of the caller always reaches the caller.

    For calls into code that may lose a cancellation (the module docstring): `work`
    runs as a child task awaited under `shield`, so the caller's cancellation ends
    the caller's await whatever the child does with it. The child is then cancelled
    and waited for (`cancel_and_wait`): a read that lost the cancellation finishes
    first, and the caller's cancellation follows.
    """
    child = asyncio.ensure_future(work)
    child.add_done_callback(retrieve_outcome)  # a caller that left never sees its outcome
    try:
        return await asyncio.shield(child)
    except asyncio.CancelledError:
        await cancel_and_wait(child)
        raise


def waiting_at(task: asyncio.Future[Any]) -> str:
    """Where a task waits: its chain of coroutine frames, outermost first."""
    frames = []
    current: Any = task.get_coro() if isinstance(task, asyncio.Task) else None
    while current is not None:
        frame = getattr(current, "cr_frame", None) or getattr(current, "ag_frame", None) \
            or getattr(current, "gi_frame", None)
        if frame is not None:
            code = frame.f_code
            frames.append(f"{code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno} {code.co_name}")
        current = getattr(current, "cr_await", None) or getattr(current, "ag_await", None) \
            or getattr(current, "gi_yieldfrom", None)
    return " > ".join(frames) or "unknown"


def retrieve_outcome(task: asyncio.Future[Any]) -> None:
    """Mark a finished task's outcome as seen (as a done callback): its owner does not
    await it, and asyncio would otherwise log an error nobody retrieved as lost."""
    if not task.cancelled():
        task.exception()


def _name(task: asyncio.Future[Any]) -> str:
    return task.get_name() if isinstance(task, asyncio.Task) else repr(task)


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
        retrieve_outcome(task)  # a caller that left would never see it

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
