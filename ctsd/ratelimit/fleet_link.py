"""This daemon's line to the fleet's Redis: scripts, heartbeat, membership, outages.

`FleetLink` runs the scripts of `ctsd.ratelimit.lua` for `SharedRateLimiter`,
keeps this daemon's heartbeat (and so its view of the fleet's members), sends
the limiter's feedback (answers landed, pauses, usage corrections) in order on
one task, and notices when Redis cannot be reached: then it says so once
(`on_down`), retries each heartbeat, and on success hands this daemon's own
charges back to Redis before saying it is back (`on_back`). Every task here
is owned by the link and ended by `close()`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ctsd.clock import Clock
from ctsd.errors import Unavailable
from ctsd.ratelimit import lua
from ctsd.ratelimit.config import FleetSettings, redacted
from ctsd.ratelimit.model import ScopeKey
from ctsd.tasks import cancel_and_wait

if TYPE_CHECKING:
    from ctsd.ratelimit.ledger import OwnCharge
    from ctsd.ratelimit.limiter import Demand
    from ctsd.ratelimit.shared import SharedBucket

log = logging.getLogger("ctsd.ratelimit")


class RedisDown(Exception):
    """The call did not reach Redis, or Redis lost its data: the link is down now."""


@dataclass
class FleetView:
    """The members as last seen: member → (local time of its heartbeat, its count)."""

    me: str
    members: dict[str, tuple[float, int]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return max(len(self.members), 1)

    def share(self) -> float:
        """The fraction of each limit this daemon may use alone: 1 / members, or less
        when another member counted fewer (it takes more; our shares must add up)."""
        others = sum(1 / max(n, 1) for m, (_, n) in self.members.items() if m != self.me)
        return max(0.0, min(1 / self.count, 1 - others))


class RedisClock:
    """Redis's clock against ours, learned from the calls that read it (every ACQUIRE and
    heartbeat): Redis read its TIME after we sent the call, so `redis_ms - after` is a
    lower bound of the offset. The largest bound of the last `WINDOW_S` gives a Redis
    time no later than a moment of ours (clocks drift apart slowly: older bounds are
    dropped, the newest is kept)."""

    WINDOW_S = 2.0

    def __init__(self) -> None:
        self._bounds: collections.deque[tuple[float, float]] = collections.deque()

    def sample(self, after: float, redis_ms: float) -> None:
        self._bounds.append((after, redis_ms - after * 1000))
        while len(self._bounds) > 1 and self._bounds[0][0] < after - self.WINDOW_S:
            self._bounds.popleft()

    def no_later_than(self, local: float) -> float:
        """A Redis time (ms) at or before our moment `local` (seconds)."""
        return local * 1000 + max(low for _, low in self._bounds)


def _ms(seconds: float) -> str:
    return repr(seconds * 1000)


def _counted(bucket: SharedBucket) -> list[str]:
    """A bucket's keys of what it counts: charges, sums, grant times."""
    return [f"{bucket.name}:c", f"{bucket.name}:s", f"{bucket.name}:g"]


class FleetLink:
    def __init__(self, settings: FleetSettings, clock: Clock, *,
                 on_down: Callable[[float], None], on_back: Callable[[], None],
                 buckets: Callable[[], Sequence[SharedBucket]]) -> None:
        self.settings = settings
        self.member = f"{settings.member}#{secrets.token_hex(4)}"
        self._clock = clock
        self._on_down, self._on_back, self._buckets = on_down, on_back, buckets
        self.view = FleetView(self.member)
        self.redis_clock = RedisClock()
        self.epoch = ""
        self.down = False
        self.rejoining = False
        """Redis answers again and our charges are on their way to it: grant nothing."""
        self._down_since = 0.0
        self._last_heartbeat = -math.inf
        p = settings.prefix
        self._fleet_keys = [f"{p}:members", f"{p}:members:n", f"{p}:epoch", f"{p}:recovery"]
        self._redis = aioredis.Redis.from_url(
            settings.redis_url, socket_timeout=settings.timeout_s,
            socket_connect_timeout=settings.timeout_s, retry=Retry(NoBackoff(), 0),
            health_check_interval=0)
        self._scripts = {name: self._redis.register_script(getattr(lua, name)) for name in (
            "ACQUIRE", "LAND", "WITHDRAW", "PAUSE", "REFRESH", "OBSERVE", "HEARTBEAT", "REJOIN",
            "PUSH", "LEAVE")}
        self._outbox: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = (
            collections.deque())
        self._flushing = asyncio.Event()
        self._settled = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    def bucket_name(self, key: ScopeKey) -> str:
        """The Redis name of a scope: per-IP scopes under the egress, account scopes
        under the account, so every daemon that shares one names it alike."""
        p = self.settings.prefix
        if key.scope == "ip":
            return f"{p}:b:ip:{self.settings.egress}:{key.exchange}:{key.limit}:{key.owner}"
        return f"{p}:b:acct:{key.exchange}:{key.limit}:{key.owner}"

    # --- joining and leaving ----------------------------------------------------------------------

    async def start(self) -> None:
        """Join the fleet; fails with `Unavailable` when Redis cannot be reached."""
        try:
            await self._redis.set(self._fleet_keys[2], secrets.token_hex(8), nx=True)
            epoch = await self._redis.get(self._fleet_keys[2])
            self.epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch or "")
            if not await self._heartbeat():
                raise RedisDown("Redis lost its data while we joined")
        except (RedisError, OSError, RedisDown) as exc:
            await self._redis.aclose()
            raise Unavailable(f"rate limits: cannot reach Redis at "
                              f"{redacted(self.settings.redis_url)}: {exc}") from exc
        self._tasks = [asyncio.create_task(self._beat(), name="fleet heartbeat"),
                       asyncio.create_task(self._flush(), name="fleet outbox")]

    async def close(self) -> None:
        self._closing = True  # redis-py may turn a cancellation mid-call into an error
        await cancel_and_wait(*self._tasks)
        if not self.down:  # a clean stop: nothing of ours is unknown to Redis
            with contextlib.suppress(RedisError, OSError):
                await self._run("LEAVE", self._fleet_keys[:2], [self.member])
        await self._redis.aclose()

    # --- scripts ----------------------------------------------------------------------------------

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._scripts[name](keys=keys, args=args)

    async def acquire(self, waiter: str, lane: int,
                      items: list[tuple[SharedBucket, Demand, str]],
                      ) -> tuple[bool, float, float, list[float]]:
        """(granted, seconds to wait, Redis time of the grant in ms, fleet usage per bucket)."""
        s = self.settings
        keys = list(self._fleet_keys)
        args: list[Any] = [self.epoch, waiter, lane, _ms(s.lease_s), _ms(s.stale_after_s),
                           _ms(s.fallback_limit_s + s.max_flight_s), _ms(s.max_flight_s),
                           len(items)]
        for bucket, demand, member in items:
            n = bucket.name
            keys += [f"{n}:c", f"{n}:s", f"{n}:w", f"{n}:l", f"{n}:g"]
            spec = bucket.spec
            args += [bucket.kind, repr(demand.weight), repr(spec.capacity),
                     _ms(spec.interval_s + spec.guard_s), _ms(spec.interval_s), member]
        reply = await self._call("ACQUIRE", keys, args)
        if reply[0] == b"E":
            self._went_down()
            raise RedisDown("Redis lost its data")
        self.redis_clock.sample(self._clock.monotonic(), float(reply[2]))
        used = [float(u) for u in reply[3:]]
        if reply[0] == b"1":
            return True, 0.0, float(reply[1]), used
        return False, float(reply[1]) / 1000, float(reply[2]), used

    async def _call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        if self.down:
            raise RedisDown("Redis is unreachable")
        try:
            return await self._run(name, keys, args)
        except (RedisError, OSError) as exc:
            self._went_down()
            raise RedisDown(str(exc)) from exc

    # --- feedback, in order, on one task ----------------------------------------------------------

    def send(self, op: Callable[..., Any], *args: Any) -> None:
        if not self.down and self._tasks:
            self._outbox.append((op, args))
            self._flushing.set()

    async def _flush(self) -> None:
        while not self._closing:
            await self._flushing.wait()
            self._flushing.clear()
            while self._outbox:
                op, args = self._outbox[0]
                try:
                    await op(*args)
                except RedisDown:
                    self._outbox.clear()  # our ledger has it; handed back on return
                else:
                    self._outbox.popleft()
            self._settled.set()

    async def settled(self) -> None:
        """Return once everything sent so far reached Redis (or was dropped, Redis down)."""
        while self._outbox:
            self._settled.clear()
            await self._settled.wait()

    async def land(self, bucket: SharedBucket, charge: OwnCharge) -> None:
        await self._call("LAND", _counted(bucket), self._land_args(bucket, charge))

    def _land_args(self, bucket: SharedBucket, charge: OwnCharge) -> list[Any]:
        spec = bucket.spec
        now = self._clock.monotonic()
        landed = charge.landed if charge.landed is not None else now
        return [bucket.kind, charge.member, repr(charge.sent_redis_ms), repr(charge.weight),
                _ms(spec.interval_s), _ms(spec.guard_s), repr(spec.capacity),
                _ms(max(now - landed, 0.0))]

    async def refresh(self, bucket: SharedBucket, members: list[str]) -> None:
        """Our unanswered charges in `bucket` count another `max_flight_s` and window."""
        spec = bucket.spec
        await self._call("REFRESH", _counted(bucket), [
            _ms(self.settings.max_flight_s + spec.interval_s + spec.guard_s), *members])

    async def pause(self, buckets: list[SharedBucket], seconds: float) -> None:
        await self._call("PAUSE", [f"{b.name}:s" for b in buckets], [_ms(seconds)])

    async def observe(self, bucket: SharedBucket, used: float, seen: float,
                      added: bool = False) -> None:
        """A usage header read at local time `seen` reported `used`; or, `added`, `used`
        units counted elsewhere until then (`Bucket.add_usage`)."""
        spec = bucket.spec
        await self._call("OBSERVE", _counted(bucket), [
            bucket.kind, repr(used), _ms(spec.interval_s + spec.guard_s), repr(spec.capacity),
            _ms(spec.interval_s), f"{self.member}.{secrets.token_hex(4)}",
            repr(self.redis_clock.no_later_than(seen)), "add" if added else "header",
            _ms(max(self._clock.monotonic() - seen, 0.0))])

    async def withdraw(self, waiter: str, items: list[tuple[SharedBucket, float]]) -> None:
        """A request gave up waiting: out of the buckets' queues in Redis at once."""
        keys: list[str] = []
        for bucket, _ in items:
            keys += [f"{bucket.name}:w", f"{bucket.name}:l"]
        await self._call("WITHDRAW", keys, [f"{waiter}|{weight!r}" for _, weight in items])

    # --- heartbeat, outage, return ----------------------------------------------------------------

    async def _heartbeat(self) -> bool:
        """Refresh our heartbeat and the view; False when Redis lost its data."""
        s = self.settings
        prune = s.stale_after_s + s.fallback_limit_s + s.max_flight_s + 3600
        reply = await self._run("HEARTBEAT", self._fleet_keys[:3],
                                [self.member, self.epoch, _ms(prune)])
        if reply[0] == b"E":
            return False
        now = self._clock.monotonic()
        redis_now = float(reply[0])
        self.redis_clock.sample(now, redis_now)
        members: dict[str, tuple[float, int]] = {}
        for i in range(1, len(reply), 3):
            age = (redis_now - float(reply[i + 1])) / 1000
            members[reply[i].decode()] = (now - age, int(float(reply[i + 2])))
        self.view.members = members
        self._last_heartbeat = now
        return True

    async def _beat(self) -> None:
        while not self._closing:
            await self._clock.sleep(self.settings.heartbeat_s)
            try:
                if self.down:
                    await self._rejoin()
                elif not await self._heartbeat():
                    self._went_down()
                else:
                    self._renew_flights()
            except (RedisError, OSError):
                self._went_down()
            except Exception:  # a bug must not end the heartbeat: log it, try again
                log.exception("fleet heartbeat failed")

    def _renew_flights(self) -> None:
        """Our requests still unanswered keep counting in Redis while we live (a request
        may outlast `max_flight_s`; a daemon that died stops renewing them)."""
        for bucket in self._buckets():
            members = bucket.ledger.unanswered()
            if members:
                self.send(self.refresh, bucket, members)

    def _went_down(self) -> None:
        if self.down:
            return
        now = self._clock.monotonic()
        self.down = True
        self._down_since = now
        self._outbox.clear()
        # Others see our heartbeat stale (and reserve our share) only after stale_after_s.
        since = max(now, self._last_heartbeat + self.settings.stale_after_s)
        self._on_down(since)

    def cut_off(self, now: float) -> bool:
        return self.down and now - self._last_heartbeat > self.settings.fallback_limit_s

    async def _rejoin(self) -> None:
        """Hand our charges back, then count again (our heartbeat last: until it is fresh,
        the others keep our share reserved)."""
        now = self._clock.monotonic()
        seeds: list[Any] = []
        for member, (seen, count) in self.view.members.items():
            if member != self.member:
                age = max(now - seen - self.settings.heartbeat_s, 0.0)
                seeds += [member, _ms(age), count]
        new_epoch = secrets.token_hex(8)
        reply = await self._run("REJOIN", self._fleet_keys,
                                [self.epoch, new_epoch, _ms(now - self._down_since), *seeds])
        self.epoch = reply[0].decode()
        self.rejoining = True  # a grant of ours from here on would reach Redis in no push
        try:
            for bucket in self._buckets():
                await self._push(bucket, self._clock.monotonic())
            if await self._heartbeat():
                self.down = False
                self._on_back()
        finally:
            self.rejoining = False

    async def _push(self, bucket: SharedBucket, now: float) -> None:
        spec = bucket.spec
        unanswered = self.settings.max_flight_s + spec.interval_s + spec.guard_s
        args: list[Any] = [bucket.kind, _ms(max(bucket.paused_until - now, 0.0)),
                           repr(bucket.ledger.used(now) if bucket.kind == "d" else 0.0)]
        flying: list[OwnCharge] = []
        if bucket.kind == "w":
            for charge, remaining in bucket.ledger.live(now, unanswered):
                args += [charge.member, _ms(remaining)]
                if charge.landed is None:
                    flying.append(charge)
        pushed_at = float(await self._run("PUSH", _counted(bucket), args))
        for charge in flying:  # Redis holds them now: renewed, then landed, as its own grants
            charge.sent_redis_ms = charge.sent_redis_ms or pushed_at
            if charge.landed is not None:  # answered while we pushed
                await self._run("LAND", _counted(bucket), self._land_args(bucket, charge))
