"""The shared limiter against a real Redis: several limiters (daemons) on one scope.

Every request is recorded on this process's clock from when its grant returned
(it leaves) to when its answer came (it lands); the exchange counts it somewhere
in between. The guarantee checked: no window of `interval` can hold more than
the capacity, whatever instant in its flight the exchange counted each request,
counting outside usage once a usage header revealed it to the fleet (from the
header's moment, for grants decided after the correction reached Redis).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
import uuid
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.exceptions import RedisError

from ctsd.errors import Unavailable
from ctsd.ratelimit import BucketSpec, Demand, Lane, ScopeKey
from ctsd.ratelimit.config import FleetSettings
from ctsd.ratelimit.fleet_link import RedisDown
from ctsd.ratelimit.shared import SharedBucket, SharedRateLimiter
from tests.support.servers import PrivateRedis

pytestmark = pytest.mark.long

INTERVAL = 0.25
EXAMPLES = int(os.environ.get("CTS_FLEET_EXAMPLES", "4"))
"""Scenarios per property test: 4 here (the outage test half as many), 100 in `make soak`."""
MAX_FLIGHT_S = 0.5
"""In the property tests: a request counts from when it leaves until its answer is
*processed*, and a stalled event loop (a loaded machine stalls for half a second) holds
its answers that long while it renews nothing; production's 15 s covers its own stalls."""
KEY = ScopeKey.ip("binance", "request_weight")


@dataclass
class Flight:
    left: float
    landed: float
    weight: float
    outside: bool = False
    """Another program's usage, revealed by a usage header: once known, it counts."""
    asked: float = 0.0
    """When the request asked for budget (its grant was decided between then and `left`)."""
    known: float = 0.0
    """Outside usage: when every daemon's grants count it (its correction reached Redis)."""


def fleet_settings(url: str, prefix: str, member: str, max_flight_s: float = 0.2,
                   timeout_s: float = 0.2) -> FleetSettings:
    """Short timings: a heartbeat every 50 ms, a Redis call over `timeout_s` (0.2 s) counts
    as an outage (a loaded machine makes some: the fallback gets exercised)."""
    return FleetSettings(redis_url=url, member=member, egress="office", prefix=prefix,
                         heartbeat_s=0.05, stale_after_s=0.15, max_flight_s=max_flight_s,
                         fallback_limit_s=30.0, poll_s=0.02, lease_s=0.5, timeout_s=timeout_s)


async def start_fleet(url: str, n: int, max_flight_s: float = 0.2, timeout_s: float = 0.2,
                      ) -> list[SharedRateLimiter]:
    """`n` limiters (daemons) on one fleet; joining is retried (a loaded machine may make
    Redis's first answer slower than the short timeout)."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    fleet = []
    for i in range(n):
        for attempt in range(3):
            try:
                limiter = SharedRateLimiter(
                    fleet_settings(url, prefix, f"d{i}", max_flight_s, timeout_s))
                fleet.append(await limiter.start())
                break
            except Unavailable:
                if attempt == 2:
                    raise
    return fleet


_AIRBORNE: dict[int, dict[int, float]] = {}
"""Per run (its flights list): requests sent and not answered yet, by permit."""


def worst_window(flights: list[Flight], interval: float) -> float:
    """The most any window of `interval` could hold by our doing: every flight touching
    it counted, and the outside usage we knew of at our last grant in it."""
    worst = 0.0
    for start in {f.landed for f in flights}:
        inside = [f for f in flights if f.left <= start + interval and f.landed >= start]
        ours = [f for f in inside if not f.outside]
        if ours:
            last = max(f.asked for f in ours)  # known before that grant was decided
            worst = max(worst, sum(f.weight for f in ours)
                        + sum(f.weight for f in inside if f.outside and f.known <= last))
    return worst


async def fleet_count(limiter: SharedRateLimiter, bucket: SharedBucket) -> float:
    """What Redis counts of the fleet's own requests now (corrections left out)."""
    client = aioredis.Redis.from_url(limiter.settings.redis_url,
                                     socket_timeout=limiter.settings.timeout_s)
    try:
        members = await client.zrange(f"{bucket.name}:c", 0, -1)
    finally:
        await client.aclose()
    names = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
    return sum(float(n.rsplit("|", 1)[1]) for n in names if not n.startswith("~"))


async def reveal_outside_usage(limiter: SharedRateLimiter, bucket: SharedBucket,
                               spec: BucketSpec, flights: list[Flight],
                               airborne: dict[int, float]) -> None:
    """Another program uses 2 units now, and a usage header reveals it.

    The header reports all of ours the exchange may count now (answered within a
    window and guard, or asked and unanswered) or, if more, what the fleet counts of
    ours (Redis holds some charges a little longer: an answer told late, a grant
    whose reply was lost), plus the outside usage it counts. A header below the
    fleet's own count would hide as much outside usage, by design (`meters`' doc).
    Told to Redis at once: in an outage no other daemon could learn of it anyway.
    """
    now = time.monotonic()
    outside = Flight(now, now, 2.0, outside=True, known=math.inf)
    flights.append(outside)  # later headers count it too
    recent = [f for f in flights if f.landed >= now - INTERVAL - spec.guard_s]
    ours = sum(f.weight for f in recent if not f.outside) + sum(airborne.values())
    try:
        ours = max(ours, await fleet_count(limiter, bucket))
        await limiter.link.observe(bucket, ours + sum(f.weight for f in recent if f.outside),
                                   now)
        outside.known = time.monotonic()  # every daemon's grants count it now
    except (RedisDown, RedisError, OSError):
        pass  # never known to the fleet: beyond any limiter


async def drive(limiter: SharedRateLimiter, spec: BucketSpec, rng: random.Random,
                requests: int, flights: list[Flight], *, pause_every: int = 0,
                correct_every: int = 0) -> None:
    bucket = limiter.bucket(KEY, spec)
    airborne = _AIRBORNE.setdefault(id(flights), {})
    for i in range(requests):
        weight = rng.choice((1.0, 1.0, 2.0, 3.0))
        asked, token = time.monotonic(), object()
        airborne[id(token)] = weight  # from the ask: Redis may have granted it already
        try:
            permit = await limiter.acquire([Demand(bucket, weight)], Lane(rng.randrange(3)))
        except Unavailable:
            del airborne[id(token)]
            await asyncio.sleep(0.01)  # over our share while cut off: not sent
            continue
        left = time.monotonic()
        try:
            await asyncio.sleep(rng.uniform(0, 0.03))
            if pause_every and i % pause_every == pause_every - 1:
                permit.pause(0.05)  # a 429: the whole scope waits
            if correct_every and i % correct_every == correct_every - 1:
                await reveal_outside_usage(limiter, bucket, spec, flights, airborne)
        finally:
            flights.append(Flight(left, time.monotonic(), weight, asked=asked))
            del airborne[id(token)]
            permit.land()


@pytest.mark.asyncio
async def test_two_daemons_share_one_ip_scope_exactly(redis_url: str) -> None:
    spec = BucketSpec(10, INTERVAL, safety_margin=1.0, guard_s=0.005)
    a, b = await start_fleet(redis_url, 2, MAX_FLIGHT_S)
    flights: list[Flight] = []
    try:
        await asyncio.gather(*(drive(lim, spec, random.Random(i), 15, flights)
                               for i, lim in enumerate((a, b, a, b))))
    finally:
        await asyncio.gather(a.close(), b.close())
    assert len(flights) == 60
    assert worst_window(flights, INTERVAL) <= spec.capacity + 1e-9


@pytest.mark.asyncio
async def test_an_order_goes_before_queued_polls_of_another_daemon(redis_url: str) -> None:
    spec = BucketSpec(2, 0.3, safety_margin=1.0, guard_s=0.0)
    # The order of the shared queue is under test, not the fallback: a loaded machine must
    # not make a slow Redis answer look like an outage (a poll of weight 2 exceeds a share).
    a, b = await start_fleet(redis_url, 2, timeout_s=5.0)
    order: list[str] = []
    try:
        ba, bb = a.bucket(KEY, spec), b.bucket(KEY, spec)
        for permit in [await a.acquire([Demand(ba, 1)], Lane.POLL) for _ in range(2)]:
            permit.land()

        async def one(limiter: SharedRateLimiter, bucket: SharedBucket, lane: Lane, name: str,
                      ) -> None:  # a poll takes the whole bucket: it must wait for the order
            weight = 2 if lane is Lane.POLL else 1
            permit = await limiter.acquire([Demand(bucket, weight)], lane)
            order.append(name)
            permit.land()

        polls = [asyncio.create_task(one(a, ba, Lane.POLL, f"poll{i}")) for i in range(3)]
        await queued_in_redis(redis_url, ba)  # the polls queue first, in a and in Redis
        await one(b, bb, Lane.ORDER, "order")
        await asyncio.gather(*polls)
    finally:
        await asyncio.gather(a.close(), b.close())
    assert order[0] == "order"


async def queued_in_redis(url: str, bucket: SharedBucket) -> None:
    """Return once a request waits in the bucket's queue in Redis (bounded)."""
    client = aioredis.Redis.from_url(url)
    try:
        for _ in range(500):
            if await client.zcard(f"{bucket.name}:w"):
                return
            await asyncio.sleep(0.01)
        raise AssertionError("nothing queued in Redis")
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_a_pause_reaches_every_daemon(redis_url: str) -> None:
    spec = BucketSpec(100, 1.0, safety_margin=1.0)
    a, b = await start_fleet(redis_url, 2)
    try:
        permit = await a.acquire([Demand(a.bucket(KEY, spec), 1)], Lane.POLL)
        permit.pause(0.3)
        permit.land()
        await asyncio.sleep(0.05)  # the pause travels on a's outbox
        started = time.monotonic()
        (await b.acquire([Demand(b.bucket(KEY, spec), 1)], Lane.ORDER)).land()
        assert time.monotonic() - started >= 0.2
    finally:
        await asyncio.gather(a.close(), b.close())


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32), daemons=st.integers(2, 3),
       capacity=st.sampled_from([6.0, 9.0, 12.0]), pause_every=st.sampled_from([0, 9]),
       correct_every=st.sampled_from([0, 7]))
def test_no_window_exceeds_the_limit_with_pauses_and_corrections(
        redis_url: str, seed: int, daemons: int, capacity: float, pause_every: int,
        correct_every: int) -> None:
    spec = BucketSpec(capacity, INTERVAL, safety_margin=1.0, guard_s=0.005)

    async def scenario() -> list[Flight]:
        fleet = await start_fleet(redis_url, daemons, MAX_FLIGHT_S)
        flights: list[Flight] = []
        try:
            await asyncio.gather(*(
                drive(lim, spec, random.Random(seed + i), 15, flights,
                      pause_every=pause_every, correct_every=correct_every)
                for i, lim in enumerate(fleet * 2)))
        finally:
            await asyncio.gather(*(lim.close() for lim in fleet))
        return flights

    flights = asyncio.run(scenario())
    assert worst_window(flights, INTERVAL) <= capacity + 1e-9


@settings(max_examples=max(EXAMPLES // 2, 1), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32), kill_after=st.floats(0.1, 0.6),
       down_for=st.floats(0.3, 2.0))
def test_redis_killed_mid_run_fallback_then_return_never_exceeds(
        private_redis: PrivateRedis, seed: int, kill_after: float, down_for: float) -> None:
    """Redis dies (everything it counted is gone), daemons go on with their shares,
    then Redis comes back empty and they share it again."""
    spec = BucketSpec(9, INTERVAL, safety_margin=1.0, guard_s=0.005)

    async def scenario() -> tuple[list[Flight], list[bool]]:
        fleet = await start_fleet(private_redis.url, 3, MAX_FLIGHT_S)
        flights: list[Flight] = []
        seen_down: list[bool] = []

        async def outage() -> None:
            await asyncio.sleep(kill_after)
            private_redis.kill()
            await asyncio.sleep(down_for)
            seen_down.append(all(lim.link.down for lim in fleet))
            private_redis.start()

        try:
            await asyncio.gather(outage(), *(
                drive(lim, spec, random.Random(seed + i), 25, flights)
                for i, lim in enumerate(fleet * 2)))
            for _ in range(100):  # each comes back within a few heartbeats
                if not any(lim.link.down for lim in fleet):
                    break
                await asyncio.sleep(0.05)
            assert not any(lim.link.down for lim in fleet)
            for lim in fleet:  # and is granted by the shared bucket again
                (await lim.acquire([Demand(lim.bucket(KEY, spec), 1)], Lane.ORDER)).land()
        finally:
            await asyncio.gather(*(lim.close() for lim in fleet))
        return flights, seen_down

    flights, seen_down = asyncio.run(scenario())
    assert seen_down == [True]  # every daemon noticed, and went on on its own
    assert worst_window(flights, INTERVAL) <= 9 + 1e-9
    assert len(flights) > 40

