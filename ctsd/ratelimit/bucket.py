"""One shared budget: a priority queue in front of a meter, pausable after a refusal.

Why not `aiolimiter.AsyncLimiter`: it is a leaky bucket, which admits up to
twice its rate within one interval (a full bucket, then the refill), so it
cannot give the "never more than the limit in any window" guarantee that
keeps us unbanned; and it has no priority lanes, no pause for Retry-After,
no reservations across several buckets and no injectable clock. Its drain
arithmetic survives here as `DecayingCounter`, the shape of Kraken's counter;
aiolimiter itself guards the daemon's own API (`ctsd.api.request_rate`), where
a burst then an average is exactly the shape wanted.

Waiters queue by (lane, arrival). Only the head of the queue may take
budget, so a heavy request is not starved by a stream of light ones and
lanes are strict: a queued order always goes before a queued test. The
queue is served by one pump task, started when someone has to wait and
finished when the queue is empty; `close()` cancels it and fails whoever
still waits.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from ctsd.clock import Clock
from ctsd.errors import LimiterClosed, RequestTooHeavy
from ctsd.ratelimit.meters import EPSILON, Meter, Sent, meter_for
from ctsd.ratelimit.model import BucketSpec, Lane, ScopeKey, ScopeUsage
from ctsd.tasks import cancel_and_wait


@dataclass(order=True)
class _Waiter:
    lane: int
    seq: int
    weight: float = field(compare=False)
    enqueued_at: float = field(compare=False)
    future: asyncio.Future[Reservation] = field(compare=False)


class Reservation:
    """Budget held in one bucket: `commit` when the request is sent, else `release`."""

    __slots__ = ("_bucket", "_open", "weight")

    def __init__(self, bucket: RateLimitBucket, weight: float) -> None:
        self._bucket = bucket
        self.weight = weight
        self._open = True

    def commit(self, now: float) -> Sent | None:
        """Charge the held budget as sent at `now`; the charge, to `land` on the answer."""
        if not self._open:
            return None
        self._open = False
        return self._bucket._settle(self.weight, now)

    def release(self) -> None:
        if self._open:
            self._open = False
            self._bucket._settle(self.weight, None)


class RateLimitBucket:
    def __init__(self, key: ScopeKey, spec: BucketSpec, clock: Clock) -> None:
        self.key = key
        self._meter: Meter = meter_for(spec)
        self._clock = clock
        self._queue: list[_Waiter] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._closed = False
        self.paused_until = -math.inf
        self._waits = self._grants = self._rejections = self._corrections = 0
        self._wait_time = 0.0

    @property
    def spec(self) -> BucketSpec:
        return self._meter.spec

    # --- taking budget -----------------------------------------------------------

    async def reserve(self, weight: float, lane: Lane) -> Reservation:
        """Wait until `weight` fits (and no pause, and nobody ahead), then hold it."""
        if self._closed:
            raise LimiterClosed(f"rate limiter closed ({self.key.label})")
        if weight > self.spec.capacity + EPSILON:
            raise self._too_heavy(weight)
        now = self._clock.monotonic()
        if not self._queue and self._delay(weight, now) <= 0:
            return self._grant(weight)
        loop = asyncio.get_running_loop()
        waiter = _Waiter(int(lane), next(self._seq), weight, now, loop.create_future())
        heapq.heappush(self._queue, waiter)
        self._waits += 1
        self._kick()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                waiter.future.result().release()  # granted as we were cancelled
            self._kick()  # the head may have gone: let the next one through
            raise

    def _too_heavy(self, weight: float) -> RequestTooHeavy:
        return RequestTooHeavy(
            f"{self.key.label}: a request of weight {weight:g} exceeds the usable "
            f"limit of {self.spec.capacity:g}; raise the limit or the safety margin")

    def _grant(self, weight: float) -> Reservation:
        self._meter.reserve(weight)
        self._grants += 1
        return Reservation(self, weight)

    def _delay(self, weight: float, now: float) -> float:
        return max(self.paused_until - now, self._meter.delay(weight, now))

    def _settle(self, weight: float, sent_at: float | None) -> Sent | None:
        sent = None
        if sent_at is None:
            self._meter.release(weight)
        else:
            sent = self._meter.commit(weight, sent_at)
        if self._queue:
            self._kick()
        return sent

    def land(self, sent: Sent) -> None:
        """The answer to a request charged as `sent` arrived: its charge now has an end,
        so whoever waits may learn when it can go."""
        self._meter.land(sent, self._clock.monotonic())
        if self._queue:
            self._kick()

    # --- the pump ------------------------------------------------------------------

    def _kick(self) -> None:
        if self._closed:
            return
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._serve(), name=f"ratelimit {self.key.label}")
        else:
            self._wake.set()

    async def _serve(self) -> None:
        while self._queue:
            head = self._queue[0]
            if head.future.done():  # cancelled while waiting
                heapq.heappop(self._queue)
                continue
            now = self._clock.monotonic()
            delay = self._delay(head.weight, now)
            if delay <= 0:
                heapq.heappop(self._queue)
                self._wait_time += now - head.enqueued_at
                head.future.set_result(self._grant(head.weight))
                continue
            self._wake.clear()
            await self._sleep_or_wake(delay)

    async def _sleep_or_wake(self, delay: float) -> None:
        """Sleep `delay` on the injected clock, or less if the queue or the meter changed."""
        tasks: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait())}
        if math.isfinite(delay):
            tasks.add(asyncio.ensure_future(self._clock.sleep(delay)))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- what the exchange tells us -------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Stop granting for `seconds` (Retry-After, a ban); counts one refusal."""
        self._rejections += 1
        self.paused_until = max(self.paused_until, self._clock.monotonic() + seconds)

    def observe_usage(self, used: float) -> None:
        """The exchange's own count of this scope (a usage header), to correct ours."""
        if self._meter.observe(used, self._clock.monotonic()):
            self._corrections += 1

    def add_usage(self, units: float) -> None:
        now = self._clock.monotonic()
        self._meter.observe(self._meter.used(now) + units, now)

    def observe_limit(self, limit: float) -> None:
        """The exchange announced its limit; adopt it when it is lower than ours."""
        spec = self.spec
        if 0 < limit < spec.limit:
            self._meter.adopt(BucketSpec(limit, spec.interval_s, spec.kind,
                                         spec.safety_margin, spec.guard_s))

    def relimit(self, spec: BucketSpec) -> None:
        """Enforce `spec` from now on (a reloaded config), keeping what is already counted.

        The meter keeps its grants, so a lower limit holds within the window in
        progress: nothing more is granted until the usage counted so far fits under
        it. A higher one lets queued requests go at once. A queued request heavier
        than the new capacity could never go: it fails as a new one would.
        """
        if spec.kind is not self.spec.kind:
            raise ValueError(f"{self.key.label}: a {self.spec.kind.value} bucket cannot "
                             f"become {spec.kind.value}")
        self._meter.adopt(spec)
        for waiter in self._queue:
            if not waiter.future.done() and waiter.weight > spec.capacity + EPSILON:
                waiter.future.set_exception(self._too_heavy(waiter.weight))
        if self._queue:
            self._kick()

    # --- reading and closing -------------------------------------------------------------

    def snapshot(self) -> ScopeUsage:
        now = self._clock.monotonic()
        spec = self.spec
        return ScopeUsage(
            key=self.key, kind=spec.kind, used=self._meter.used(now), capacity=spec.capacity,
            limit=spec.limit, interval_s=spec.interval_s,
            queued=sum(1 for w in self._queue if not w.future.done()),
            waits=self._waits, wait_time_s=self._wait_time, grants=self._grants,
            rejections=self._rejections, paused_for_s=max(self.paused_until - now, 0.0),
            usage_corrections=self._corrections)

    async def close(self) -> None:
        """Fail every waiter and stop the pump; reserving afterwards raises `LimiterClosed`."""
        self._closed = True
        for waiter in self._queue:
            if not waiter.future.done():
                waiter.future.set_exception(
                    LimiterClosed(f"rate limiter closed ({self.key.label})"))
        self._queue.clear()
        if self._pump is not None:
            await cancel_and_wait(self._pump)
            self._pump = None
