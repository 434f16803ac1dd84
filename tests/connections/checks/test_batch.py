"""BatchProcessor on a virtual clock: concurrency, priority, retries, timeouts, cancellation."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest

from ctsd.connections.checks.batch import (
    Abandoned,
    BatchOptions,
    BatchProcessor,
    Finished,
    Job,
    PrioritySlots,
)
from ctsd.connections.checks.settings import RetryPolicy
from tests.support.virtual_clock import VirtualClock

Result = str


def retryable(result: Result) -> bool:
    return result == "retry"


def fallback(key: str, abandoned: Abandoned) -> Result:
    return "timeout" if abandoned.timed_out else "crashed"


def processor(clock: VirtualClock, workers: int = 32, draw: float = 0.5) -> BatchProcessor:
    return BatchProcessor(workers, clock=clock.monotonic, sleep=clock.sleep, random=lambda: draw)


async def collect(
    proc: BatchProcessor, jobs: list[Job[str, Result]], options: BatchOptions
) -> list[Finished[str, Result]]:
    return [f async for f in proc.process(jobs, options, retryable=retryable, fallback=fallback)]


def taking(
    clock: VirtualClock, seconds: float, result: Result = "ok"
) -> Callable[[int], Awaitable[Result]]:
    async def run(_attempt: int) -> Result:
        await clock.sleep(seconds)
        return result

    return run


@pytest.mark.asyncio
async def test_at_most_concurrency_jobs_run_at_once_and_results_come_as_they_finish() -> None:
    clock = VirtualClock()
    running, peak = 0, 0

    def job(seconds: float) -> Callable[[int], Awaitable[Result]]:
        async def run(_attempt: int) -> Result:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await clock.sleep(seconds)
            running -= 1
            return f"done-{seconds:g}"

        return run

    jobs = [Job(f"j{i}", job(s)) for i, s in enumerate([5, 1, 1, 1, 1, 1, 1])]
    finished = await clock.run_coroutine(
        collect(processor(clock), jobs, BatchOptions(concurrency=3)))
    assert peak == 3
    assert len(finished) == 7
    assert finished[-1].key == "j0"  # the slow one started first and finished last
    assert clock.now == 5


@pytest.mark.asyncio
async def test_a_higher_priority_batch_takes_free_slots_first() -> None:
    clock = VirtualClock()
    proc = processor(clock, workers=1)
    order: list[str] = []

    def job(name: str) -> Callable[[int], Awaitable[Result]]:
        async def run(_attempt: int) -> Result:
            order.append(name)
            await clock.sleep(1)
            return "ok"

        return run

    async def both() -> None:
        low = [Job(f"low{i}", job(f"low{i}")) for i in range(3)]
        high = [Job(f"high{i}", job(f"high{i}")) for i in range(2)]
        first = asyncio.ensure_future(collect(proc, low, BatchOptions(priority=1)))
        await asyncio.sleep(0)  # low0 takes the only slot
        second = asyncio.ensure_future(collect(proc, high, BatchOptions(priority=9)))
        await asyncio.gather(first, second)

    await clock.run_coroutine(both())
    assert order == ["low0", "high0", "high1", "low1", "low2"]


@pytest.mark.asyncio
async def test_retryable_results_are_retried_with_exponential_backoff_and_jitter() -> None:
    clock = VirtualClock()
    answers = iter(["retry", "retry", "ok"])

    async def flaky(_attempt: int) -> Result:
        return next(answers)

    policy = RetryPolicy(max_attempts=5, base_delay_s=1.0, max_delay_s=8.0, jitter=0.5)
    finished = await clock.run_coroutine(
        collect(processor(clock, draw=0.5), [Job("k", flaky)], BatchOptions(retry=policy))
    )
    assert [(f.result, f.attempts) for f in finished] == [("ok", 3)]
    # Deadline timer, backoff, the remaining deadline, backoff, the remaining deadline:
    # backoffs of 1 s then 2 s, each scaled to 75 % by the draw, counted against 30 s.
    assert clock.sleeps == [30.0, 0.75, 29.25, 1.5, 27.75]


def test_backoff_is_capped_and_jitter_stays_within_bounds() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=4.0, jitter=0.5)
    assert policy.delay_s(10, 0.999999) == pytest.approx(4.0, rel=1e-5)
    assert policy.delay_s(10, 0.0) == 2.0
    assert [policy.delay_s(n, 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 4.0]


@pytest.mark.asyncio
async def test_a_result_that_is_not_retryable_is_final_at_once() -> None:
    clock = VirtualClock()
    calls = itertools.count(1)

    async def refused(_attempt: int) -> Result:
        next(calls)
        return "refused"

    finished = await clock.run_coroutine(
        collect(processor(clock), [Job("k", refused)], BatchOptions()))
    assert [(f.result, f.attempts) for f in finished] == [("refused", 1)]
    assert next(calls) == 2


@pytest.mark.asyncio
async def test_retries_stop_at_max_attempts_with_the_last_result() -> None:
    clock = VirtualClock()
    finished = await clock.run_coroutine(
        collect(
            processor(clock),
            [Job("k", taking(clock, 0.1, "retry"))],
            BatchOptions(retry=RetryPolicy(max_attempts=3)),
        )
    )
    assert [(f.result, f.attempts, f.timed_out) for f in finished] == [("retry", 3, False)]


@pytest.mark.asyncio
async def test_a_job_past_its_deadline_gets_a_timeout_result_and_others_are_unaffected() -> None:
    clock = VirtualClock()
    jobs = [Job("hang", taking(clock, 1000)), Job("quick", taking(clock, 1))]
    finished = await clock.run_coroutine(
        collect(processor(clock), jobs, BatchOptions(item_timeout_s=30)))
    by_key = {f.key: f for f in finished}
    assert by_key["quick"].result == "ok"
    assert by_key["hang"].result == "timeout" and by_key["hang"].timed_out
    assert clock.now == 30


@pytest.mark.asyncio
async def test_the_deadline_covers_retries_and_backoff() -> None:
    clock = VirtualClock()
    options = BatchOptions(item_timeout_s=30, retry=RetryPolicy(max_attempts=10, base_delay_s=4))
    finished = await clock.run_coroutine(
        collect(processor(clock), [Job("k", taking(clock, 10, "retry"))], options)
    )
    assert len(finished) == 1
    assert clock.now <= 30
    assert finished[0].attempts < 10


@pytest.mark.asyncio
async def test_a_crashing_job_still_gets_a_result() -> None:
    clock = VirtualClock()

    async def broken(_attempt: int) -> Result:
        raise RuntimeError("bug")

    finished = await clock.run_coroutine(
        collect(processor(clock), [Job("k", broken)], BatchOptions()))
    assert [(f.result, f.timed_out) for f in finished] == [("crashed", False)]


@pytest.mark.asyncio
async def test_closing_the_stream_early_cancels_the_jobs_still_running() -> None:
    clock = VirtualClock()
    cancelled: list[str] = []

    def job(name: str, seconds: float) -> Callable[[int], Awaitable[Result]]:
        async def run(_attempt: int) -> Result:
            try:
                await clock.sleep(seconds)
            except asyncio.CancelledError:
                cancelled.append(name)
                raise
            return "ok"

        return run

    async def first_only() -> str:
        proc = processor(clock)
        jobs = [Job("fast", job("fast", 1)), Job("slow", job("slow", 50))]
        stream = proc.process(jobs, BatchOptions(), retryable=retryable, fallback=fallback)
        first = await anext(stream)
        await stream.aclose()
        return first.key

    assert await clock.run_coroutine(first_only()) == "fast"
    assert cancelled == ["slow"]


@pytest.mark.asyncio
async def test_priority_slots_pass_on_a_slot_handed_to_a_cancelled_waiter() -> None:
    slots = PrioritySlots(1)
    await slots.acquire(1)
    waiter = asyncio.ensure_future(slots.acquire(5))
    other = asyncio.ensure_future(slots.acquire(1))
    await asyncio.sleep(0)
    slots.release()  # hands the slot to `waiter` ...
    waiter.cancel()  # ... which is cancelled before it runs: `other` must get it
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert other.done()
    assert slots.free == 0
