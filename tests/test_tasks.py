"""`unless_set`: a read a stop may abandon, and nothing left running after it; a
cancellation lost by the code a task runs still ends the task (`cancel_and_wait`,
`keep_cancellation`)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from ctsd.tasks import Interrupted, cancel_and_wait, keep_cancellation, unless_set


@pytest.mark.asyncio
async def test_the_work_answers_when_it_finishes_first() -> None:
    async def work() -> int:
        await asyncio.sleep(0)
        return 7

    assert await unless_set(asyncio.Event(), work()) == 7


@pytest.mark.asyncio
async def test_setting_the_event_interrupts_and_cancels_the_work() -> None:
    event, cancelled = asyncio.Event(), asyncio.Event()

    async def work() -> int:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return 0

    pending = asyncio.ensure_future(unless_set(event, work()))
    await asyncio.sleep(0)
    event.set()
    with pytest.raises(Interrupted):
        await pending
    assert cancelled.is_set()


@pytest.mark.asyncio
async def test_an_event_already_set_never_runs_the_work_to_the_end() -> None:
    event = asyncio.Event()
    event.set()
    with pytest.raises(Interrupted):
        await unless_set(event, asyncio.sleep(10, result=1))


@pytest.mark.asyncio
async def test_the_works_own_error_propagates() -> None:
    async def work() -> int:
        raise ValueError("venue said no")

    with pytest.raises(ValueError, match="venue said no"):
        await unless_set(asyncio.Event(), work())


@pytest.mark.asyncio
async def test_cancelling_the_caller_cancels_the_work() -> None:
    cancelled = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    caller = asyncio.ensure_future(unless_set(asyncio.Event(), work()))
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert cancelled.is_set()
    assert len(asyncio.all_tasks()) == 1  # only this test's own task is left


# --- lost cancellations (ctsd.tasks' module docstring) ------------------------------------

async def _swallowing(event: asyncio.Event, then: asyncio.Event) -> str:
    """Waits as psycopg_pool waits for a connection; if the wait completes in the iteration
    its cancellation arrives, Python 3.11 loses the cancellation and this goes on to wait
    for `then`, as the daemon's follower went on to wait for the next notification."""
    await asyncio.wait_for(event.wait(), 10)
    await then.wait()
    return "went on"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="wait_for keeps cancellations")
@pytest.mark.asyncio
async def test_wait_for_loses_a_cancellation_that_meets_a_completion() -> None:
    """The premise: what the defences below are for happens on this Python."""
    event, then = asyncio.Event(), asyncio.Event()
    task = asyncio.ensure_future(_swallowing(event, then))
    await asyncio.sleep(0)
    event.set()
    task.cancel()
    for _ in range(10):  # loop turns, not time: only `then` could move the task on
        await asyncio.sleep(0)
    assert not task.done() and task.cancelling() == 1  # cancelled, yet waiting on
    then.set()
    assert await task == "went on"


@pytest.mark.asyncio
async def test_keep_cancellation_delivers_the_callers_cancellation_whatever_the_work_does(
) -> None:
    event, then = asyncio.Event(), asyncio.Event()
    then.set()  # the work, having lost the cancellation, finishes (a pooled read does)
    caller = asyncio.ensure_future(keep_cancellation(_swallowing(event, then)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the child is inside wait_for
    event.set()
    caller.cancel()
    assert not (await asyncio.wait({caller}, timeout=5))[1], "the caller lost it"
    assert caller.cancelled()
    assert len(asyncio.all_tasks()) == 1  # the child was cancelled again and ended


@pytest.mark.asyncio
async def test_keep_cancellation_passes_the_result_and_the_error_through() -> None:
    assert await keep_cancellation(asyncio.sleep(0, result=3)) == 3

    async def fails() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await keep_cancellation(fails())


@pytest.mark.asyncio
async def test_cancel_and_wait_cancels_again_a_task_that_lost_it_and_says_where(
        caplog: pytest.LogCaptureFixture) -> None:
    event = asyncio.Event()
    task = asyncio.create_task(_swallowing(event, asyncio.Event()), name="swallower")
    await asyncio.sleep(0)
    event.set()
    await asyncio.wait_for(cancel_and_wait(task, recancel_after_s=0.01), 5)
    assert task.cancelled()
    [record] = [r for r in caplog.records if "after its cancellation" in r.getMessage()]
    assert record.task == "swallower"  # type: ignore[attr-defined]
    assert "_swallowing" in record.waiting_at  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_cancel_and_wait_lets_the_owners_own_cancellation_through() -> None:
    release = asyncio.Event()

    async def slow_to_end() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()  # a clean-up that takes a while

    task = asyncio.create_task(slow_to_end())
    await asyncio.sleep(0)
    owner = asyncio.create_task(cancel_and_wait(task))
    await asyncio.sleep(0)
    owner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await owner
    release.set()
    await asyncio.wait({task}, timeout=5)
    assert task.cancelled()
