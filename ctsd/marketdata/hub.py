"""`MarketDataHub`: per venue and market type, one subscription per stream, on few connections.

Why the hub and not ccxt.pro alone: ccxt.pro reconnects only when called again
and notices a dead socket only from missing pongs (Binance: six minutes), and a
silent stall (pings go on, data stops) never. So the hub owns liveness:

- Subscriptions are shared: `subscribe` hands out a `Lease`; the last release
  drops the subscription (no memory kept for forgotten streams).
- A *shard* is one ccxt.pro instance holding up to the venue's streams per
  connection (`StreamLimits`); a new shard is opened only when the others are
  full, and every socket waits for the venue's connection-rate budget (`Pacer`)
  at its dial, ccxt.pro's own redials included (`MarketStream.pace_dials`).
  Subscribe requests of a shard are batched and spaced by the venue's subscribe
  interval, so a thousand engines starting at once cost a handful of requests.
- One feed task per shard and stream kind races every subscribe group of that
  kind (`MarketStream.updates`) and fans values out to listeners.
- The watchdog marks a subscription STALE when its data is older than its
  cadence, and resubscribes its shard (a new connection); a failed connection
  is DOWN and is retried with backoff. Consumers fall back to REST while a
  subscription is not LIVE (`Subscription.fallbacks`).
- A venue refusing a subscription (or a symbol it does not stream) fails only
  that subscription, with the venue's reason: a group that fails is split until
  the failing key is found.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field, replace

from ctsd.clock import Clock
from ctsd.errors import ExchangeFailure
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.streams import (
    ConnectionPacers,
    MarketStream,
    StreamKind,
    StreamLimits,
    stream_limits,
)
from ctsd.marketdata.feeds import (
    CandleSeries,
    Listener,
    StreamState,
    StreamStatus,
    SubKey,
    Subscription,
)
from ctsd.tasks import AsyncClosing, cancel_and_wait

log = logging.getLogger("ctsd.marketdata")

OpenStream = Callable[[ConnectionTarget], Awaitable[MarketStream]]
NEVER_LIVE_RECONNECTS = 2
"""A subscription that got no data across this many resubscriptions is refused."""


@dataclass(frozen=True)
class HubSettings:
    ticker_cadence_s: float = 10.0
    book_cadence_s: float = 10.0
    trades_cadence_s: float = 120.0
    candle_cadence_min_s: float = 10.0
    """Candles are stale after half a candle, but never sooner than this."""
    gather_s: float = 0.2
    """New subscriptions wait this long for others to share their subscribe request."""
    check_s: float = 1.0
    """How often the watchdog looks at data ages."""
    retry_s: float = 1.0
    max_retry_s: float = 30.0
    streams_per_connection: int | None = None
    """Fewer subscriptions a connection than the venue allows (None: the venue's figure)."""


@dataclass(eq=False)
class Shard:
    target: ConnectionTarget
    limits: StreamLimits
    number: int
    subs: dict[SubKey, Subscription] = field(default_factory=dict)
    stream: MarketStream | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    failures: int = 0
    reconnect: bool = False
    redials: int = 0
    """Reconnects ccxt.pro made by itself on the current stream, counted so far."""
    split: set[Hashable] = field(default_factory=set)
    """Keys subscribed alone after their group failed."""
    wakes: dict[StreamKind, asyncio.Event] = field(
        default_factory=lambda: {kind: asyncio.Event() for kind in StreamKind})

    def poke(self) -> None:
        """The subscriptions changed: feeds regroup, the shard loop looks again."""
        self.changed.set()
        for event in self.wakes.values():
            event.set()

    @property
    def full(self) -> bool:
        return len(self.subs) >= self.limits.streams_per_connection

    def groups(self, kind: StreamKind) -> list[tuple[Hashable, ...]]:
        keys = sorted((s.key.key for s in self.subs.values()
                       if s.key.kind is kind and s.state is not StreamState.FAILED), key=str)
        alone = [(k,) for k in keys if k in self.split]
        together = [k for k in keys if k not in self.split]
        size = self.limits.batch if kind in (StreamKind.TICKER, StreamKind.CANDLES) else 1
        return alone + [tuple(together[i:i + size]) for i in range(0, len(together), size)]


class Lease:
    """One consumer's hold on a subscription; `release` it when done."""

    def __init__(self, hub: MarketDataHub, sub: Subscription, listener: Listener | None) -> None:
        self._hub = hub
        self.subscription = sub
        self._listener = listener
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._hub._release(self.subscription, self._listener)


class MarketDataHub(AsyncClosing):
    def __init__(self, open_stream: OpenStream, clock: Clock,
                 settings: HubSettings | None = None,
                 pacers: ConnectionPacers | None = None) -> None:
        """`pacers`: the daemon's, shared with the private order streams (the venue
        counts both); a hub of its own paces on `clock`."""
        self._open_stream = open_stream
        self._clock = clock
        self.settings = settings or HubSettings()
        self._subs: dict[SubKey, Subscription] = {}
        self._shards: dict[ConnectionTarget, list[Shard]] = {}
        self._pacers = pacers or ConnectionPacers(clock)
        self._watchdog: asyncio.Task[None] | None = None
        self._activity = asyncio.Event()
        self._closed = False

    # --- consumers ---------------------------------------------------------------------------

    def subscribe(self, key: SubKey, listener: Listener | None = None, *,
                  candle_ms: int = 0, keep: int = 0) -> Lease:
        """A lease on `key`'s shared subscription, created (and placed on a shard) if new.

        `listener(sub)` is called on each change (a ticker that moved, a candle that
        closed); candles need the timeframe's length and how many to keep."""
        if self._closed:
            raise RuntimeError("market-data hub is closed")
        sub = self._subs.get(key)
        if sub is None:
            sub = Subscription(key, self._cadence(key, candle_ms), self._clock.monotonic())
            self._subs[key] = sub
            self._place(sub)
        if key.kind is StreamKind.CANDLES:
            if sub.candles is None:
                sub.candles = CandleSeries(candle_ms, keep)
            elif keep > sub.candles.keep:
                sub.candles.keep = keep
                sub.candles.needs_seed = True
        sub.users += 1
        if listener is not None:
            sub.listeners.add(listener)
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch_ages(), name="marketdata-watchdog")
        return Lease(self, sub, listener)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Until `predicate()` holds, re-checked after every batch of data, state change
        and watchdog round (a key test waiting for first data; tests)."""
        while not predicate():
            self._activity.clear()
            await self._activity.wait()

    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subs.values())

    def statuses(self) -> list[StreamStatus]:
        now = self._clock.monotonic()
        return [sub.status(now) for sub in self._subs.values()]

    def shard_count(self, target: ConnectionTarget | None = None) -> int:
        return sum(len(v) for t, v in self._shards.items() if target in (None, t))

    def _cadence(self, key: SubKey, candle_ms: int) -> float:
        s = self.settings
        quiet = stream_limits(key.target.exchange).ticker_cadence_s
        return {StreamKind.TICKER: max(s.ticker_cadence_s, quiet or 0.0),
                StreamKind.BOOK: s.book_cadence_s, StreamKind.TRADES: s.trades_cadence_s,
                StreamKind.CANDLES: max(s.candle_cadence_min_s, candle_ms / 2000)}[key.kind]

    def _release(self, sub: Subscription, listener: Listener | None) -> None:
        if listener is not None:
            sub.listeners.discard(listener)
        sub.users -= 1
        if sub.users > 0:
            return
        del self._subs[sub.key]
        shards = self._shards.get(sub.key.target, [])
        for shard in shards:
            if shard.subs.pop(sub.key, None) is not None:
                shard.poke()
                if not shard.subs:
                    shards.remove(shard)
                    self._stop_shard(shard)
                break

    # --- shards ----------------------------------------------------------------------------------

    def _place(self, sub: Subscription) -> None:
        target = sub.key.target
        shards = self._shards.setdefault(target, [])
        shard = next((s for s in shards if not s.full), None)
        if shard is None:
            limits = stream_limits(target.exchange)
            cap = self.settings.streams_per_connection
            if cap is not None and cap < limits.streams_per_connection:
                limits = replace(limits, streams_per_connection=cap)
            shard = Shard(target, limits, len(shards))
            shards.append(shard)
            shard.task = asyncio.create_task(self._run_shard(shard),
                                             name=f"marketdata:{target.exchange}:{shard.number}")
        shard.subs[sub.key] = sub
        shard.poke()

    def _stop_shard(self, shard: Shard) -> None:
        if shard.task is not None:
            shard.task.cancel()

    async def _run_shard(self, shard: Shard) -> None:
        """Open (its sockets paced at each dial), run one feed per kind, and start over on a
        reconnect."""
        while shard.subs:
            if shard.failures:
                await self._backoff(shard)
            try:
                shard.stream = await self._open_stream(shard.target)
            except ExchangeFailure as exc:
                self._down(shard, StreamState.DOWN, f"connecting: {exc.detail}")
                continue
            shard.stream.pace_dials(self._pacers.pacer(shard.target.exchange).wait)
            shard.reconnect = False
            shard.redials = 0
            opened = self._clock.monotonic()
            for sub in shard.subs.values():  # data age counts from this subscription on
                sub.subscribed_at = opened
            feeds = [asyncio.create_task(self._feed(shard, kind)) for kind in StreamKind]
            for feed in feeds:
                feed.add_done_callback(_log_crash)
            try:
                await self._until_reconnect(shard)
            finally:
                for feed in feeds:
                    feed.cancel()
                await asyncio.gather(*feeds, return_exceptions=True)
                stream, shard.stream = shard.stream, None
                await stream.close()
            for sub in shard.subs.values():
                sub.reconnects += 1

    async def _until_reconnect(self, shard: Shard) -> None:
        while not shard.reconnect and shard.subs:
            shard.changed.clear()
            await shard.changed.wait()

    async def _feed(self, shard: Shard, kind: StreamKind) -> None:
        wake = shard.wakes[kind]
        asked: list[tuple[Hashable, ...]] = []
        while True:
            wake.clear()
            groups = shard.groups(kind)
            if not groups:
                await wake.wait()
                continue
            if groups != asked:  # new keys: a moment for others to join the same request
                await self._clock.sleep(self.settings.gather_s)
                wake.clear()
                asked = groups = shard.groups(kind)
                if not groups:
                    continue
            assert shard.stream is not None
            unlisted = shard.stream.unlisted([k for g in groups for k in g])
            if unlisted:
                for key in unlisted:
                    self._refuse(shard, SubKey(shard.target, kind, key),
                                 f"{shard.target.exchange} does not list it")
                continue
            updates = asyncio.ensure_future(shard.stream.updates(kind, groups))
            woken = asyncio.ensure_future(wake.wait())
            try:
                done, _ = await asyncio.wait((updates, woken),
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                woken.cancel()
                if not updates.done():
                    updates.cancel()  # the groups changed; their watches stay pending
            if updates not in done:
                continue
            for group, outcome in updates.result():
                if isinstance(outcome, ExchangeFailure):
                    self._failed(shard, group, outcome)
                    continue
                shard.failures = 0
                self._count_redials(shard)
                now = self._clock.monotonic()
                for key, value in outcome:
                    sub = shard.subs.get(SubKey(shard.target, kind, key))
                    if sub is not None and sub.receive(value, now):
                        sub.notify()
            self._activity.set()

    @staticmethod
    def _count_redials(shard: Shard) -> None:
        """A socket the venue closed and ccxt.pro reopened on the next watch counts as the
        reconnect it is, though no watch failed."""
        assert shard.stream is not None
        redials = shard.stream.redials()
        if redials > shard.redials:
            log.info("stream reconnected", extra={"exchange": shard.target.exchange,
                                                  "shard": shard.number})
            for sub in shard.subs.values():
                sub.reconnects += redials - shard.redials
            shard.redials = redials

    def _failed(self, shard: Shard, group: tuple[Hashable, ...], exc: ExchangeFailure) -> None:
        if exc.failure.retryable:  # the connection: every subscription of the shard is down
            self._down(shard, StreamState.DOWN, exc.detail)
            shard.reconnect = True
            shard.poke()
            return
        if exc.code == "sequence_gap":  # ccxt resyncs the book from REST on the next watch
            for key in group:
                sub = shard.subs.get(SubKey(shard.target, StreamKind.BOOK, key))
                if sub is not None:
                    sub.resyncs += 1
            return
        if len(group) > 1:
            shard.split.update(group)
            shard.poke()
            return
        for sub in list(shard.subs.values()):
            if sub.key.key == group[0]:
                self._refuse(shard, sub.key, exc.detail)

    def _refuse(self, shard: Shard, key: SubKey, error: str) -> None:
        """The venue will not stream `key`: its consumers fail with the reason."""
        sub = shard.subs.get(key)
        if sub is None or sub.state is StreamState.FAILED:
            return
        log.warning("stream refused", extra={"stream": key.describe(), "error": error})
        sub.state, sub.error = StreamState.FAILED, error
        sub.notify()

    def _down(self, shard: Shard, state: StreamState, error: str) -> None:
        shard.failures += 1
        for sub in shard.subs.values():
            sub.interrupted(state, error)
            sub.notify()

    async def _backoff(self, shard: Shard) -> None:
        s = self.settings
        await self._clock.sleep(min(s.max_retry_s, s.retry_s * 2 ** max(0, shard.failures - 1)))

    async def _watch_ages(self) -> None:
        """Stale data → STALE at once (consumers use REST) and a new connection."""
        while True:
            await self._clock.sleep(self.settings.check_s)
            now = self._clock.monotonic()
            for shards in list(self._shards.values()):
                for shard in shards:
                    self._check(shard, now)
            self._activity.set()

    def _check(self, shard: Shard, now: float) -> None:
        stale = False
        for sub in list(shard.subs.values()):
            sub.sample_rate(now)
            since = max(sub.last_data, sub.subscribed_at)
            # A STALE one is watched again once its shard redialled (data age counts from
            # the resubscription): a new socket that stalls too must be redialled as well,
            # or the subscription stays STALE, its readers on REST, as long as it lasts.
            watched = sub.state in (StreamState.LIVE, StreamState.STARTING) or (
                sub.state is StreamState.STALE and not shard.reconnect)
            if watched and now - since > sub.cadence_s:
                if not sub.last_data and sub.reconnects >= NEVER_LIVE_RECONNECTS:
                    self._refuse(shard, sub.key, f"no data in {now - since:.0f} s and "
                                 f"{sub.reconnects} resubscriptions: the venue does not "
                                 "stream it")
                    continue
                if not sub.last_data:  # alone next time, in case its group is the trouble
                    shard.split.add(sub.key.key)
                sub.interrupted(StreamState.STALE, f"no data for {now - since:.1f} s")
                sub.notify()
                stale = True
        if stale and shard.stream is not None:
            log.warning("stream stale; reconnecting", extra={
                "exchange": shard.target.exchange, "shard": shard.number})
            shard.reconnect = True
            shard.poke()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        tasks = [s.task for shards in self._shards.values() for s in shards if s.task]
        if self._watchdog is not None:
            tasks.append(self._watchdog)
        await cancel_and_wait(*tasks)
        self._shards.clear()
        self._subs.clear()


def _log_crash(task: asyncio.Task[None]) -> None:
    """A feed raising something not the venue's is a bug; the watchdog reconnects it."""
    if not task.cancelled() and task.exception() is not None:
        log.error("market-data feed crashed", exc_info=task.exception())
