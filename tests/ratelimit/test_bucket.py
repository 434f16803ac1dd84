"""One bucket under a virtual clock: lanes, pauses, corrections, cancellation, closing."""

from __future__ import annotations

import asyncio

import pytest

from ctsd.errors import LimiterClosed, RequestTooHeavy
from ctsd.ratelimit import BucketSpec, Lane, MeterKind, RateLimitBucket
from ctsd.ratelimit.meters import Sent
from ctsd.ratelimit.model import ScopeKey
from tests.support.virtual_clock import VirtualClock

KEY = ScopeKey.ip("binance", "request_weight")


def bucket(clock: VirtualClock, limit: float = 10, interval: float = 1.0) -> RateLimitBucket:
    return RateLimitBucket(KEY, BucketSpec(limit, interval, safety_margin=1.0, guard_s=0), clock)


def answered(b: RateLimitBucket, sent: Sent | None) -> None:
    """The request was answered at once."""
    assert sent is not None
    b.land(sent)


async def take(b: RateLimitBucket, clock: VirtualClock, weight: float, lane: Lane,
               log: list[tuple[str, float]], name: str) -> None:
    reservation = await b.reserve(weight, lane)
    answered(b, reservation.commit(clock.monotonic()))
    log.append((name, clock.monotonic()))


@pytest.mark.asyncio
async def test_lanes_are_served_in_priority_then_arrival_order() -> None:
    clock = VirtualClock(start=0.0)
    b = bucket(clock)
    log: list[tuple[str, float]] = []
    await take(b, clock, 10, Lane.POLL, log, "fill")
    tasks = [asyncio.ensure_future(take(b, clock, 5, lane, log, name)) for name, lane in [
        ("poll-1", Lane.POLL), ("test-1", Lane.TEST), ("order-1", Lane.ORDER),
        ("poll-2", Lane.POLL), ("order-2", Lane.ORDER)]]
    await clock.run(tasks)
    assert [name for name, _ in log] == ["fill", "order-1", "order-2", "test-1", "poll-1",
                                         "poll-2"]
    assert [at for _, at in log] == [0.0, 1.0, 1.0, 2.0, 2.0, 3.0]
    usage = b.snapshot()
    assert (usage.waits, usage.grants, usage.wait_time_s) == (5, 6, 1 + 1 + 2 + 2 + 3)
    await b.close()


@pytest.mark.asyncio
async def test_head_of_line_is_not_overtaken_by_lighter_requests_of_its_lane() -> None:
    clock = VirtualClock(start=0.0)
    b = bucket(clock)
    log: list[tuple[str, float]] = []
    await take(b, clock, 6, Lane.TEST, log, "first")
    heavy = asyncio.ensure_future(take(b, clock, 8, Lane.TEST, log, "heavy"))
    light = asyncio.ensure_future(take(b, clock, 1, Lane.TEST, log, "light"))
    await clock.run([heavy, light])
    assert log == [("first", 0.0), ("heavy", 1.0), ("light", 1.0)]
    await b.close()


@pytest.mark.asyncio
async def test_pause_holds_every_lane_until_it_ends() -> None:
    clock = VirtualClock(start=0.0)
    b = bucket(clock)
    b.pause(5.0)
    log: list[tuple[str, float]] = []
    order = asyncio.ensure_future(take(b, clock, 1, Lane.ORDER, log, "order"))
    await clock.run([order])
    assert log == [("order", 5.0)]
    usage = b.snapshot()
    assert usage.rejections == 1
    assert usage.paused_for_s == 0
    await b.close()


@pytest.mark.asyncio
async def test_usage_header_correction_delays_the_next_request() -> None:
    clock = VirtualClock(start=0.0)
    b = bucket(clock)
    b.observe_usage(9.5)  # another process on this IP used most of the window
    log: list[tuple[str, float]] = []
    task = asyncio.ensure_future(take(b, clock, 2, Lane.POLL, log, "poll"))
    await clock.run([task])
    assert log == [("poll", 1.0)]
    assert b.snapshot().usage_corrections == 1
    await b.close()


@pytest.mark.asyncio
async def test_announced_lower_limit_is_adopted_never_a_higher_one() -> None:
    clock = VirtualClock(start=0.0)
    b = bucket(clock, limit=10)
    b.observe_limit(50)
    assert b.spec.limit == 10
    b.observe_limit(4)
    assert b.spec.limit == 4
    await b.close()


def spec(limit: float, interval: float = 1.0, kind: MeterKind = MeterKind.WINDOW) -> BucketSpec:
    return BucketSpec(limit, interval, kind, safety_margin=1.0, guard_s=0)


@pytest.mark.asyncio
async def test_a_lower_limit_counts_what_the_window_in_progress_has_used() -> None:
    clock = VirtualClock(start=0.0)
    b = bucket(clock, limit=10)
    log: list[tuple[str, float]] = []
    await take(b, clock, 6, Lane.POLL, log, "before")
    b.relimit(spec(4))
    tasks = [asyncio.ensure_future(take(b, clock, w, Lane.POLL, log, f"after-{w}"))
             for w in (1, 3)]
    await clock.run(tasks)
    assert log == [("before", 0.0), ("after-1", 1.0), ("after-3", 1.0)]
    usage = b.snapshot()
    assert (usage.used, usage.capacity, usage.limit) == (4, 4, 4)
    await b.close()


@pytest.mark.asyncio
async def test_a_higher_limit_lets_queued_requests_go_at_once() -> None:
    clock = VirtualClock(start=0.0)
    b = bucket(clock, limit=10)
    log: list[tuple[str, float]] = []
    await take(b, clock, 10, Lane.POLL, log, "fill")
    queued = asyncio.ensure_future(take(b, clock, 5, Lane.ORDER, log, "queued"))
    await clock.settle()
    assert log == [("fill", 0.0)]
    b.relimit(spec(20))
    await clock.run([queued])
    assert log == [("fill", 0.0), ("queued", 0.0)]
    assert b.snapshot().used == 15
    await b.close()


@pytest.mark.asyncio
async def test_a_queued_request_heavier_than_the_new_limit_fails_and_the_next_goes() -> None:
    clock = VirtualClock(start=0.0)
    b = bucket(clock, limit=10)
    log: list[tuple[str, float]] = []
    await take(b, clock, 10, Lane.POLL, log, "fill")
    heavy = asyncio.ensure_future(b.reserve(8, Lane.ORDER))
    light = asyncio.ensure_future(take(b, clock, 2, Lane.POLL, log, "light"))
    await clock.settle()
    b.relimit(spec(5))
    with pytest.raises(RequestTooHeavy, match="exceeds the usable limit of 5"):
        await heavy
    await clock.run([light])
    assert log == [("fill", 0.0), ("light", 1.0)]
    await b.close()


@pytest.mark.asyncio
async def test_a_decaying_counter_keeps_its_level_and_drains_at_the_new_rate() -> None:
    clock = VirtualClock(start=0.0)
    b = RateLimitBucket(KEY, spec(10, 10.0, MeterKind.DECAYING), clock)
    log: list[tuple[str, float]] = []
    await take(b, clock, 10, Lane.POLL, log, "fill")  # drains 1 per second
    b.relimit(spec(5, 10.0, MeterKind.DECAYING))  # now 0.5 per second, capped at 5
    with pytest.raises(ValueError, match="cannot become window"):
        b.relimit(spec(5))
    await clock.run([asyncio.ensure_future(take(b, clock, 1, Lane.POLL, log, "next"))])
    assert log == [("fill", 0.0), ("next", 12.0)]  # the level must fall from 10 to 4
    await b.close()


@pytest.mark.asyncio
async def test_cancelled_waiter_gives_way_to_the_next() -> None:
    clock = VirtualClock(start=0.0)
    b = bucket(clock)
    log: list[tuple[str, float]] = []
    await take(b, clock, 10, Lane.POLL, log, "fill")
    first = asyncio.ensure_future(take(b, clock, 10, Lane.ORDER, log, "cancelled"))
    second = asyncio.ensure_future(take(b, clock, 4, Lane.POLL, log, "second"))
    await clock.settle()
    first.cancel()
    await clock.run([second])
    assert log == [("fill", 0.0), ("second", 1.0)]
    assert b.snapshot().used == 4
    await b.close()


@pytest.mark.asyncio
async def test_too_heavy_request_fails_at_once() -> None:
    b = bucket(VirtualClock(start=1000.0), limit=10)
    with pytest.raises(RequestTooHeavy, match="exceeds the usable limit of 10"):
        await b.reserve(11, Lane.TEST)
    await b.close()


@pytest.mark.asyncio
async def test_close_fails_waiters_and_stops_the_pump() -> None:
    clock = VirtualClock(start=0.0)
    b = bucket(clock)
    answered(b, (await b.reserve(10, Lane.TEST)).commit(0.0))
    waiter = asyncio.ensure_future(b.reserve(1, Lane.TEST))
    await clock.settle()
    await b.close()
    with pytest.raises(LimiterClosed):
        await waiter
    with pytest.raises(LimiterClosed):
        await b.reserve(1, Lane.TEST)
    assert all(not t.get_name().startswith("ratelimit") for t in asyncio.all_tasks())
