"""Rate limits shared by a fleet of daemons, counted in Redis, exact.

Several `ctsd` behind one egress IP share the exchange's per-IP budget, and
every daemon holding a key shares its account's. Each such scope is one bucket
in Redis, kept by the scripts of `ctsd.ratelimit.lua` with the accounting of
`ctsd.ratelimit.meters` (a request counts from its grant until a window after
its answer, 429/418 pauses, usage-header corrections), on Redis's clock. One
script call takes every bucket of a request at once, so there is no holding
one scope while waiting for another.

Waiting: requests queue in this process by (lane, arrival), and the queue's
pump asks Redis for the first of them per bucket; a refused request is
registered in the bucket's queue in Redis, so requests of every daemon take
their turn by lane and arrival, not by who polls faster.

When Redis is unreachable (`FleetLink`), the daemon falls back to a share of
each limit, `capacity * share` (about 1 / members, see `FleetView.share`),
counted on its own `OwnLedger`, and never exceeds the limit:

- Others' grants made before the outage are unknown: a bucket grants nothing
  until they can no longer count (`max_flight` plus a window after the outage
  began, or after our last heartbeat went stale, whichever is later), even when
  our view held no other member (one may have joined since).
- Members that still reach Redis reserve the share of every member whose
  heartbeat is stale, for as long as it may be granting on its own.
- A daemon that cannot reach Redis for `fallback_limit_s` stops granting: the
  others' reservation for it ends then.
- Coming back, it hands its charges to Redis (`PUSH`) before its heartbeat
  counts again, and grants nothing meanwhile (a grant after its push would reach
  Redis never). If Redis lost its data meanwhile (the epoch changed), the
  members it knew are put back as stale and nothing is granted until what was
  granted before the outage has stopped counting.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

from ctsd.clock import Clock, SystemClock
from ctsd.errors import LimiterClosed, RequestTooHeavy, Unavailable
from ctsd.ratelimit import model
from ctsd.ratelimit.config import FleetSettings
from ctsd.ratelimit.fleet_link import FleetLink, RedisDown
from ctsd.ratelimit.ledger import OwnCharge, OwnLedger
from ctsd.ratelimit.limiter import Demand, Permit, _merged
from ctsd.ratelimit.meters import EPSILON
from ctsd.ratelimit.protocol import relimit_all
from ctsd.tasks import cancel_and_wait

log = logging.getLogger("ctsd.ratelimit")


class SharedBucket:
    """One scope: its Redis keys, this daemon's ledger, the last fleet usage seen."""

    def __init__(self, limiter: SharedRateLimiter, key: model.ScopeKey, spec: model.BucketSpec,
                 name: str) -> None:
        self._limiter = limiter
        self._key = key
        self._spec = spec
        self.name = name
        self.ledger = OwnLedger(spec)
        self.blocked_until = -math.inf
        """Local time before which fallback grants nothing (others' unknown charges)."""
        self.paused_until = -math.inf
        self.fleet_used = 0.0
        self._waits = self._grants = self._rejections = self._corrections = 0
        self._wait_time = 0.0
        self.queued = 0

    @property
    def key(self) -> model.ScopeKey:
        return self._key

    @property
    def spec(self) -> model.BucketSpec:
        return self._spec

    @property
    def kind(self) -> str:
        return "d" if self._spec.kind is model.MeterKind.DECAYING else "w"

    @property
    def span_s(self) -> float:
        return self._spec.interval_s + self._spec.guard_s

    def land(self, sent: Any) -> None:
        if isinstance(sent, OwnCharge) and sent.landed is None:
            self.ledger.land(sent, self._limiter.clock.monotonic())
            self._limiter._landed(self, sent)

    def pause(self, seconds: float) -> None:
        self._rejections += 1
        self.paused_until = max(self.paused_until, self._limiter.clock.monotonic() + seconds)
        self._limiter._tell(self._limiter.link.pause, [self], seconds)

    def observe_usage(self, used: float) -> None:
        if used > self.fleet_used + EPSILON:
            self._corrections += 1
        self._limiter._tell(self._limiter.link.observe, self, used,
                            self._limiter.clock.monotonic())

    def add_usage(self, units: float) -> None:
        self._limiter._tell(self._limiter.link.observe, self, units,
                            self._limiter.clock.monotonic(), True)

    def observe_limit(self, limit: float) -> None:
        if 0 < limit < self._spec.limit:
            self.relimit(replace(self._spec, limit=limit))

    def relimit(self, spec: model.BucketSpec) -> None:
        if spec.kind is not self._spec.kind:
            raise ValueError(f"{self._key.label}: a {self._spec.kind.value} bucket cannot "
                             f"become {spec.kind.value}")
        self._spec = spec
        self.ledger.adopt(self._limiter.share_spec(spec))
        self._limiter._wake.set()

    def granted(self, waited: float) -> None:
        self._grants += 1
        if waited > 0:
            self._waits += 1
            self._wait_time += waited

    def counting(self, now: float) -> tuple[model.Counting, float]:
        """Where this bucket is counted now, and the share of its capacity it may use."""
        link = self._limiter.link
        if not link.down:
            return model.Counting.SHARED, 1.0
        share = link.view.share()
        if link.cut_off(now) or now < self.blocked_until or share <= EPSILON:
            return model.Counting.BLOCKED, 0.0
        return model.Counting.FALLBACK, share

    def snapshot(self) -> model.ScopeUsage:
        now = self._limiter.clock.monotonic()
        counting, share = self.counting(now)
        used = self.fleet_used if counting is model.Counting.SHARED else self.ledger.used(now)
        spec = self._spec
        return model.ScopeUsage(
            key=self._key, kind=spec.kind, used=used, capacity=spec.capacity,
            limit=spec.limit, interval_s=spec.interval_s, queued=self.queued,
            waits=self._waits, wait_time_s=self._wait_time, grants=self._grants,
            rejections=self._rejections, paused_for_s=max(self.paused_until - now, 0.0),
            usage_corrections=self._corrections, counting=counting, share=share)


@dataclass(order=True)
class _Pending:
    lane: int
    seq: int
    demands: tuple[Demand, ...] = field(compare=False)
    enqueued_at: float = field(compare=False)
    future: asyncio.Future[Permit] = field(compare=False)
    waiter: str = field(compare=False, default="")


class SharedRateLimiter:
    """`Limiter` over Redis: `await start()` joins the fleet; `close()` leaves it."""

    def __init__(self, settings: FleetSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.link = FleetLink(settings, self.clock, on_down=self._went_down,
                              on_back=self._came_back, buckets=self.buckets)
        self._buckets: dict[model.ScopeKey, SharedBucket] = {}
        self._queue: list[_Pending] = []
        self._seq = itertools.count()
        self._charge_ids = itertools.count()
        self._wake = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> SharedRateLimiter:
        await self.link.start()
        return self

    # --- buckets ----------------------------------------------------------------------------------

    def bucket(self, key: model.ScopeKey, spec: model.BucketSpec) -> SharedBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if self._closed:
                raise LimiterClosed("rate limiter closed")
            bucket = SharedBucket(self, key, spec, self.link.bucket_name(key))
            bucket.ledger.adopt(self.share_spec(spec))
            self._buckets[key] = bucket
        return bucket

    def buckets(self) -> list[SharedBucket]:
        return list(self._buckets.values())

    def share_spec(self, spec: model.BucketSpec) -> model.BucketSpec:
        """`spec` as this daemon enforces it alone: its share of the capacity, exactly."""
        if not self.link.down:
            return spec
        share = self.link.view.share()
        if share <= EPSILON:  # others took it all (`FleetView.share`): `_try_local` refuses
            return spec
        return replace(spec, limit=spec.capacity * share, safety_margin=1.0)

    def relimit(
        self, spec_of: Callable[[model.ScopeKey], model.BucketSpec],
    ) -> list[model.LimitChange]:
        return relimit_all(self._buckets, spec_of)

    def snapshot(self) -> list[model.ScopeUsage]:
        usages = [b.snapshot() for b in self._buckets.values()]
        return sorted(usages, key=lambda u: (u.key.exchange, u.key.limit, u.key.owner))

    # --- taking budget ----------------------------------------------------------------------------

    async def acquire(self, demands: Sequence[Demand], lane: model.Lane) -> Permit:
        if self._closed:
            raise LimiterClosed("rate limiter closed")
        ordered = _merged(demands)
        buckets = [self._own(d.bucket) for d in ordered]
        for bucket, demand in zip(buckets, ordered, strict=True):
            if demand.weight > bucket.spec.capacity + EPSILON:
                raise RequestTooHeavy(
                    f"{bucket.key.label}: a request of weight {demand.weight:g} exceeds the "
                    f"usable limit of {bucket.spec.capacity:g}; raise the limit or the "
                    "safety margin")
        now = self.clock.monotonic()
        pending = _Pending(int(lane), next(self._seq), ordered, now,
                           asyncio.get_running_loop().create_future())
        pending.waiter = f"{self.link.member}:{pending.seq}"
        if not self._queue:
            permit, _ = await self._try(pending)
            if permit is not None:
                return permit
        heapq.heappush(self._queue, pending)
        for bucket in buckets:
            bucket.queued += 1
        self._kick()
        try:
            return await pending.future
        except asyncio.CancelledError:
            if pending.future.done() and not pending.future.cancelled():
                pending.future.result().land()  # granted as we were cancelled: it never left
            else:
                self._tell(self.link.withdraw, pending.waiter,
                           [(b, d.weight) for b, d in zip(buckets, ordered, strict=True)])
            self._wake.set()
            raise
        finally:
            for bucket in buckets:
                bucket.queued -= 1

    def _own(self, bucket: Any) -> SharedBucket:
        if not isinstance(bucket, SharedBucket) or bucket._limiter is not self:
            raise TypeError(f"{bucket.key.label} is not a bucket of this shared limiter")
        return bucket

    async def _try(self, pending: _Pending) -> tuple[Permit | None, float]:
        """Grant `pending` now if every bucket lets it, else how long to wait at most."""
        buckets = [self._own(d.bucket) for d in pending.demands]
        now = self.clock.monotonic()
        paused = max(b.paused_until for b in buckets) - now
        if paused > 0:
            return None, paused
        if not self.link.down:
            try:
                return await self._try_shared(pending, buckets)
            except RedisDown:
                pass  # the link is down now: the same request, on this daemon's share
        if self.link.rejoining:  # our charges are being handed back: shared again soon
            return None, self.settings.poll_s
        return self._try_local(pending, buckets, self.clock.monotonic())

    async def _try_shared(self, pending: _Pending, buckets: list[SharedBucket],
                          ) -> tuple[Permit | None, float]:
        members = [f"{self.link.member}.{next(self._charge_ids)}|{d.weight!r}"
                   for d in pending.demands]
        granted, wait_s, redis_ms, used = await self.link.acquire(
            pending.waiter, pending.lane, list(zip(buckets, pending.demands, members,
                                                   strict=True)))
        for bucket, fleet_used in zip(buckets, used, strict=True):
            bucket.fleet_used = fleet_used
        if not granted:
            return None, wait_s
        return self._permit(pending, buckets, members, redis_ms), 0.0

    def _try_local(self, pending: _Pending, buckets: list[SharedBucket], now: float,
                   ) -> tuple[Permit | None, float]:
        if self.link.cut_off(now):
            raise Unavailable(
                f"rate limits are shared through Redis, unreachable for over "
                f"{self.settings.fallback_limit_s:g}s: no request may go until it is back")
        if self.link.view.share() <= EPSILON:
            raise Unavailable(
                "rate limits are shared through Redis, unreachable: the other members "
                "hold every share of the limits, so this daemon sends nothing until it is back")
        wait = 0.0
        for bucket, demand in zip(buckets, pending.demands, strict=True):
            share = bucket.ledger.spec.capacity
            if demand.weight > share + EPSILON:
                raise Unavailable(
                    f"{bucket.key.label}: a request of weight {demand.weight:g} exceeds this "
                    f"daemon's share ({share:g}) of the limit while Redis is unreachable")
            wait = max(wait, bucket.blocked_until - now,
                       bucket.ledger.delay(demand.weight, share, now))
        if wait > 0:
            return None, wait
        members = [f"{self.link.member}.{next(self._charge_ids)}|{d.weight!r}"
                   for d in pending.demands]
        return self._permit(pending, buckets, members, 0.0), 0.0

    def _permit(self, pending: _Pending, buckets: list[SharedBucket], members: list[str],
                redis_ms: float) -> Permit:
        now = self.clock.monotonic()
        charges: list[tuple[SharedBucket, OwnCharge]] = []
        for bucket, demand, member in zip(buckets, pending.demands, members, strict=True):
            charges.append((bucket, bucket.ledger.add(member, demand.weight, now, redis_ms)))
            bucket.granted(now - pending.enqueued_at)
        return Permit(pending.demands, model.Lane(pending.lane), now - pending.enqueued_at,
                      tuple(charges))

    # --- the pump ---------------------------------------------------------------------------------

    def _kick(self) -> None:
        if self._closed:
            return
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._serve(), name="shared ratelimit")
        else:
            self._wake.set()

    async def _serve(self) -> None:
        """Try queued requests in (lane, arrival) order; a bucket that refused one refuses
        the later ones this round (they are behind it, here and in Redis)."""
        while self._queue:
            self._wake.clear()
            blocked: set[str] = set()
            soonest = self.settings.poll_s
            for pending in sorted(self._queue):
                if pending.future.done():
                    continue
                names = {self._own(d.bucket).name for d in pending.demands}
                if names & blocked:
                    continue
                try:
                    permit, wait = await self._try(pending)
                except Exception as exc:  # Unavailable, a bucket relimited below the request
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                    continue
                if permit is None:
                    blocked |= names
                    soonest = min(soonest, wait)
                elif pending.future.done():
                    permit.land()  # cancelled while we asked
                else:
                    pending.future.set_result(permit)
            self._queue = [p for p in self._queue if not p.future.done()]
            heapq.heapify(self._queue)
            if self._queue:
                await self._sleep_or_wake(max(soonest, 0.001))

    async def _sleep_or_wake(self, delay: float) -> None:
        wake = asyncio.ensure_future(self._wake.wait())
        sleep = asyncio.ensure_future(self.clock.sleep(delay))
        try:
            await asyncio.wait({wake, sleep}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (wake, sleep):
                task.cancel()
            await asyncio.gather(wake, sleep, return_exceptions=True)

    # --- telling the fleet ------------------------------------------------------------------------

    def _landed(self, bucket: SharedBucket, charge: OwnCharge) -> None:
        if charge.sent_redis_ms:  # granted by (or handed to) Redis: move its end there too
            self._tell(self.link.land, bucket, charge)
        self._wake.set()

    def _tell(self, op: Callable[..., Any], *args: Any) -> None:
        """Queue a write for the fleet; our own state changed already."""
        self.link.send(op, *args)

    def _went_down(self, since: float) -> None:
        """Redis is unreachable: each bucket on its share, after others' grants expired.

        Always blocked first, even when our view of the fleet held us alone: a member
        that joined since our last heartbeat may have been granted already."""
        for bucket in self._buckets.values():
            bucket.ledger.adopt(self.share_spec(bucket.spec))
            bucket.blocked_until = since + self.settings.max_flight_s + bucket.span_s
        log.warning("rate limits: Redis unreachable, counting on this daemon's share",
                    extra={"share": self.link.view.share(), "members": self.link.view.count})
        self._wake.set()

    def _came_back(self) -> None:
        for bucket in self._buckets.values():
            bucket.ledger.adopt(bucket.spec)
            bucket.blocked_until = -math.inf
        log.warning("rate limits: Redis is back, sharing the fleet's buckets again")
        self._wake.set()

    # --- closing ----------------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(LimiterClosed("rate limiter closed"))
        self._queue.clear()
        if self._pump is not None:
            await cancel_and_wait(self._pump)
        await self.link.close()

    async def __aenter__(self) -> SharedRateLimiter:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
