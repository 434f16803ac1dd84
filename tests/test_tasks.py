"""`unless_set`: a read a stop may abandon, and nothing left running after it."""

from __future__ import annotations

import asyncio

import pytest

from ctsd.tasks import Interrupted, unless_set


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
