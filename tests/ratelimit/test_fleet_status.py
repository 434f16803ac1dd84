"""Where a fleet daemon counts each bucket, as health answers, metrics and `cts status` show it.

Shared while Redis answers; blocked once it is gone, until what the other members
may have granted has stopped counting; then this daemon's share (1 / members).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from cts.cli.health import counting_text
from cts.v1 import health_service_pb2 as hpb
from ctsd.api.health import encode_usage
from ctsd.errors import Unavailable
from ctsd.ratelimit import BucketSpec, Counting, Demand, Lane
from ctsd.ratelimit.shared import SharedBucket, SharedRateLimiter
from tests.ratelimit.test_shared import KEY, fleet_settings, start_fleet
from tests.support.servers import PrivateRedis


async def counting_becomes(bucket: SharedBucket, wanted: Counting) -> hpb.RateLimitUsage:
    """The bucket's usage as GetSystemStatus encodes it, once it is counted `wanted`."""
    deadline = time.monotonic() + 5
    while bucket.snapshot().counting is not wanted:
        assert time.monotonic() < deadline, f"still {bucket.snapshot().counting}"
        await asyncio.sleep(0.02)
    return encode_usage(bucket.snapshot(), datetime.now(UTC))


@pytest.mark.asyncio
async def test_shared_then_blocked_then_a_share_when_redis_dies(
        private_redis: PrivateRedis) -> None:
    fleet = await start_fleet(private_redis.url, 2)
    try:
        bucket = fleet[0].bucket(KEY, BucketSpec(10, 0.25, safety_margin=1.0))
        (await fleet[0].acquire([Demand(bucket, 1)], Lane.POLL)).land()
        for _ in range(250):  # each knows the other (their heartbeats say so)
            if all(limiter.link.view.count == 2 for limiter in fleet):
                break
            await asyncio.sleep(0.02)
        shared = await counting_becomes(bucket, Counting.SHARED)
        assert counting_text(shared) == "shared"
        private_redis.kill()
        blocked = await counting_becomes(bucket, Counting.BLOCKED)
        assert blocked.counting == hpb.RATE_LIMIT_COUNTING_BLOCKED
        assert counting_text(blocked) == "blocked"
        fallback = await counting_becomes(bucket, Counting.FALLBACK)
        assert fallback.fleet_share == pytest.approx(0.5)
        assert counting_text(fallback) == "fallback 50%"
        assert bucket.snapshot().share == pytest.approx(0.5)
    finally:
        await asyncio.gather(*(limiter.close() for limiter in fleet))


@pytest.mark.asyncio
async def test_a_member_whose_share_others_hold_sends_nothing_in_an_outage(
        private_redis: PrivateRedis) -> None:
    """a joined alone and has not beaten since b joined: a's count says it takes the whole
    limit in an outage, so b's share is none (shares never add up to more than the limit)."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    slow = replace(fleet_settings(private_redis.url, prefix, "a"), heartbeat_s=30.0,
                   stale_after_s=60.0, max_flight_s=40.0)
    a = await SharedRateLimiter(slow).start()
    b = await SharedRateLimiter(fleet_settings(private_redis.url, prefix, "b")).start()
    try:
        spec = BucketSpec(10, 0.25, safety_margin=1.0)
        bucket = b.bucket(KEY, spec)
        assert b.link.view.count == 2 and a.link.view.count == 1
        private_redis.kill()
        with pytest.raises(Unavailable, match="hold every share"):
            await b.acquire([Demand(bucket, 1)], Lane.POLL)
        assert b.link.down and bucket.snapshot().counting is Counting.BLOCKED
    finally:
        await asyncio.gather(a.close(), b.close())
