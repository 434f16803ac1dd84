"""The process's buckets, and taking budget from several of them for one request.

A request usually counts against more than one limit (Binance: the IP's
request weight and the account's order count; Bybit: the IP, the UID and the
endpoint group). `acquire` reserves in every bucket, in `ScopeKey` order,
then charges them all at one instant, just before the request is sent, and
`Permit.land` moves the charges to the answer's time when it arrives: a
request counts at least from when it leaves until a window after its answer,
which is what the window guarantee is about.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ctsd.clock import Clock, SystemClock
from ctsd.errors import LimiterClosed
from ctsd.ratelimit.bucket import RateLimitBucket, Reservation
from ctsd.ratelimit.model import BucketSpec, Lane, LimitChange, ScopeKey, ScopeUsage
from ctsd.ratelimit.protocol import Bucket, relimit_all
from ctsd.tasks import AsyncClosing


@dataclass(frozen=True)
class Demand:
    """`weight` units of one bucket."""

    bucket: Bucket
    weight: float


@dataclass(frozen=True)
class Permit:
    """Proof that a request was granted: which buckets it was charged to, and the wait.

    `land()` when the answer (or the error) arrives: the charges then count from
    then on, covering a request that left or arrived late (see `ctsd.ratelimit.meters`).
    """

    demands: tuple[Demand, ...]
    lane: Lane
    waited_s: float
    charges: tuple[tuple[Bucket, Any], ...] = ()
    """(bucket, what it charged): each bucket lands its own kind of charge."""

    def land(self) -> None:
        for bucket, sent in self.charges:
            bucket.land(sent)

    @property
    def buckets(self) -> tuple[Bucket, ...]:
        return tuple(d.bucket for d in self.demands)

    def pause(self, seconds: float) -> None:
        """The exchange refused the request for its rate: pause every scope it counted in."""
        for bucket in self.buckets:
            bucket.pause(seconds)


def _merged(demands: Sequence[Demand]) -> tuple[Demand, ...]:
    """One demand per bucket (weights summed), in `ScopeKey` order."""
    weights: dict[ScopeKey, float] = {}
    buckets: dict[ScopeKey, Bucket] = {}
    for demand in demands:
        key = demand.bucket.key
        weights[key] = weights.get(key, 0.0) + demand.weight
        buckets[key] = demand.bucket
    return tuple(Demand(buckets[key], weights[key]) for key in sorted(weights))


def _local(bucket: Bucket) -> RateLimitBucket:
    if not isinstance(bucket, RateLimitBucket):
        raise TypeError(f"{bucket.key.label} is not a bucket of this process's limiter")
    return bucket


class RateLimiter(AsyncClosing):
    """Owns every bucket of the process; `close()` (or `async with`) stops them all."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._buckets: dict[ScopeKey, RateLimitBucket] = {}
        self._closed = False

    def bucket(self, key: ScopeKey, spec: BucketSpec) -> RateLimitBucket:
        """The bucket for `key`, created with `spec` on first use (later specs are ignored:
        every connection of a scope derives the same spec from the same config)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if self._closed:
                raise LimiterClosed("rate limiter closed")
            bucket = self._buckets[key] = RateLimitBucket(key, spec, self.clock)
        return bucket

    def buckets(self) -> list[RateLimitBucket]:
        return list(self._buckets.values())

    def relimit(self, spec_of: Callable[[ScopeKey], BucketSpec]) -> list[LimitChange]:
        return relimit_all(self._buckets, spec_of)

    async def acquire(self, demands: Sequence[Demand], lane: Lane) -> Permit:
        """Wait for every demand, then charge them all now; the caller sends at once."""
        ordered = _merged(demands)
        local = [_local(d.bucket) for d in ordered]
        started = self.clock.monotonic()
        while True:
            held = await self._reserve_all(ordered, lane)
            now = self.clock.monotonic()
            paused = max((b.paused_until for b in local), default=now) - now
            if paused <= 0:
                charges = tuple((bucket, sent) for bucket, reservation
                                in zip(local, held, strict=True)
                                if (sent := reservation.commit(now)) is not None)
                return Permit(ordered, lane, now - started, charges)
            # A scope was paused while we waited for another: give everything back.
            for reservation in held:
                reservation.release()
            await self.clock.sleep(paused)

    @staticmethod
    async def _reserve_all(demands: tuple[Demand, ...], lane: Lane) -> list[Reservation]:
        held: list[Reservation] = []
        try:
            for demand in demands:
                held.append(await _local(demand.bucket).reserve(demand.weight, lane))
        except BaseException:
            for reservation in held:
                reservation.release()
            raise
        return held

    def snapshot(self) -> list[ScopeUsage]:
        """Every scope's usage, sorted by exchange, limit and owner."""
        usages = [b.snapshot() for b in self._buckets.values()]
        return sorted(usages, key=lambda u: (u.key.exchange, u.key.limit, u.key.owner))

    async def close(self) -> None:
        self._closed = True
        await asyncio.gather(*(b.close() for b in self._buckets.values()))

