"""The shared limiter's scripts step by step, read back from Redis: what each writes.

`test_shared` checks the whole (no window over the limit, whatever the timing);
these pin the moments it depends on, each one a way a count could fall short:
a correction absorbing a later one, a header charged against grants it could not
have counted, an answer told late, a request outliving `max_flight_s`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from ctsd.ratelimit import BucketSpec, Demand, Lane
from ctsd.ratelimit.fleet_link import RedisClock
from ctsd.ratelimit.ledger import OwnCharge
from ctsd.ratelimit.shared import SharedBucket
from tests.ratelimit.test_shared import KEY, start_fleet

SPEC = BucketSpec(12, 1.0, safety_margin=1.0, guard_s=0.0)
SLACK_MS = 250
"""How far a daemon's reading of the server's clock may be off (it is an estimate)."""


@pytest_asyncio.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def redis_ms(client: aioredis.Redis) -> float:
    seconds, micros = await client.time()
    return float(seconds) * 1000 + float(micros) / 1000


async def piece_ends(client: aioredis.Redis, bucket: SharedBucket) -> list[float]:
    """The moments (Redis ms) at which the bucket's logged pieces stop counting."""
    log = await client.zrangebyscore(f"{bucket.name}:c", "-inf", "+inf", withscores=True)
    return sorted({float(entry[1]) for entry in log})


async def counted_after(client: aioredis.Redis, bucket: SharedBucket, ms: float,
                        corrections: bool) -> float:
    """The weight of the bucket's charges (or correction pieces) still counting at `ms`."""
    log = await client.zrangebyscore(f"{bucket.name}:c", f"({ms!r}", "+inf")
    members = [m.decode() if isinstance(m, bytes) else str(m) for m in log]
    return sum(float(m.rsplit("|", 1)[1]) for m in members if m.startswith("~") == corrections)


@pytest.mark.asyncio
async def test_a_later_correction_outlives_an_earlier_larger_one(
        redis_url: str, redis_client: aioredis.Redis) -> None:
    """7 outside units seen 0.95 s ago, then 4 new ones now (the exchange no longer
    counts the 7): the fleet counts 7 until the first ends, then 4 for a window."""
    (a,) = await start_fleet(redis_url, 1)
    try:
        bucket = a.bucket(KEY, SPEC)
        await a.link.observe(bucket, 7.0, a.clock.monotonic() - 0.95)
        before = await redis_ms(redis_client)
        await a.link.observe(bucket, 4.0, a.clock.monotonic())
        after = await redis_ms(redis_client)
        # Judged at the pieces' own ends, not at a reading taken later: on a busy machine
        # that reading came more than the 10 ms to spare after the second observation.
        ends = await piece_ends(redis_client, bucket)
        assert len(ends) == 2, ends
        first, last = ends
        assert before + 1000 - SLACK_MS <= last <= after + 1000 + SLACK_MS, (before, after, last)
        assert last - first >= 940, ends  # 4 for a window after the 7 ended
        assert await counted_after(redis_client, bucket, first - 1, True) == pytest.approx(7)
        assert await counted_after(redis_client, bucket, first, True) == pytest.approx(4)
        assert await counted_after(redis_client, bucket, last - 1, True) == pytest.approx(4)
        assert await counted_after(redis_client, bucket, last, True) == 0
    finally:
        await a.close()


@pytest.mark.asyncio
async def test_a_header_is_not_charged_against_grants_made_after_it(
        redis_url: str, redis_client: aioredis.Redis) -> None:
    """A header that reached daemon a before b's grant cannot have counted it: its 3
    units beyond a's own are outside usage, however late the script runs."""
    a, b = await start_fleet(redis_url, 2)
    try:
        ba, bb = a.bucket(KEY, SPEC), b.bucket(KEY, SPEC)
        seen = a.clock.monotonic()
        permit = await b.acquire([Demand(bb, 3)], Lane.POLL)
        permit.land()
        await b.link.settled()
        await a.link.observe(ba, 3.0, seen)
        now = await redis_ms(redis_client)
        assert await counted_after(redis_client, ba, now, True) == pytest.approx(3)
        assert await counted_after(redis_client, ba, now, False) == pytest.approx(3)
    finally:
        await asyncio.gather(a.close(), b.close())


@pytest.mark.asyncio
async def test_an_answer_told_late_counts_from_when_it_arrived(
        redis_url: str, redis_client: aioredis.Redis) -> None:
    (a,) = await start_fleet(redis_url, 1)
    try:
        bucket = a.bucket(KEY, SPEC)
        permit = await a.acquire([Demand(bucket, 2)], Lane.POLL)
        ((_, charge),) = permit.charges
        assert isinstance(charge, OwnCharge)
        await asyncio.sleep(0.5)  # sent 0.5 s ago (on Redis's clock too)
        before = await redis_ms(redis_client)
        charge.landed = a.clock.monotonic() - 0.4  # answered 0.4 s ago, told only now
        await a.link.settled()  # a heartbeat's renewal of it, queued before, goes first
        await a.link.land(bucket, charge)
        after = await redis_ms(redis_client)
        (end,) = await piece_ends(redis_client, bucket)
        assert before + 600 - SLACK_MS <= end <= after + 600 + SLACK_MS, (before, after, end)
        assert await counted_after(redis_client, bucket, end - 1, False) == 2
        assert await counted_after(redis_client, bucket, end, False) == 0
    finally:
        await a.close()


@pytest.mark.asyncio
async def test_a_request_outliving_max_flight_counts_until_answered(
        redis_url: str, redis_client: aioredis.Redis) -> None:
    """Each heartbeat renews the daemon's unanswered charges (max_flight_s is 0.2 s)."""
    (a,) = await start_fleet(redis_url, 1)
    try:
        bucket = a.bucket(KEY, BucketSpec(12, 0.1, safety_margin=1.0, guard_s=0.0))
        permit = await a.acquire([Demand(bucket, 5)], Lane.POLL)
        held_until = time.monotonic() + 1.0  # five times max_flight_s and the window
        while time.monotonic() < held_until:
            await asyncio.sleep(0.05)
            now = await redis_ms(redis_client)
            assert await counted_after(redis_client, bucket, now, False) == 5
        permit.land()
        await a.link.settled()
        now = await redis_ms(redis_client)
        assert await counted_after(redis_client, bucket, now + 150, False) == 0
    finally:
        await a.close()



@pytest.mark.asyncio
async def test_usage_handed_over_adds_to_the_corrections_standing(
        redis_url: str, redis_client: aioredis.Redis) -> None:
    """A key's usage handed to its UID's bucket counts on top of what the bucket holds
    (a header would only raise the count to its value)."""
    (a,) = await start_fleet(redis_url, 1)
    try:
        bucket = a.bucket(KEY, SPEC)
        await a.link.observe(bucket, 5.0, a.clock.monotonic())
        bucket.add_usage(3.0)
        await a.link.settled()
        now = await redis_ms(redis_client)
        assert await counted_after(redis_client, bucket, now, True) == pytest.approx(8)
    finally:
        await a.close()


def test_redis_clock_places_our_moments_no_later_than_they_were() -> None:
    """Each call's reply bounds the offset from below (Redis read its clock before we
    read the reply); the tightest recent bound wins, older ones are dropped."""
    clock = RedisClock()
    clock.sample(after=10.0, redis_ms=5_000.0)  # offset >= -5000 ms
    clock.sample(after=10.5, redis_ms=5_503.0)  # offset >= -4997 ms: tighter
    assert clock.no_later_than(11.0) == pytest.approx(11_000 - 4_997)
    clock.sample(after=13.0, redis_ms=7_990.0)  # the two first are over 2 s old now
    assert clock.no_later_than(13.0) == pytest.approx(7_990.0)
