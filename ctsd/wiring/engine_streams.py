"""`StreamingMarketData`: an engine's market data from the shared hub, REST while a stream is down.

Why here: it bridges the engine's seams (`MarketDataSource`, `MarketEvents`)
and the market-data hub, which know nothing of each other. One per engine
session: `follow` takes leases on the hub's shared subscriptions (a ticker per
symbol; candles, book or trades when the strategy reads them) and registers
the one listener that wakes the engine — a closed candle when the strategy
reads candles, else a ticker change. Reads come from memory while the
subscription is LIVE; otherwise from the REST source through the shared rate
limiter, counted as a fallback on the subscription and shown on the engine
(`streaming`), until the stream is LIVE again. A subscription the venue
refused fails the read with the venue's reason (never a silent stall).
Candle history the stream cannot carry is seeded once from REST per
subscription, shared by every engine on it.

After a cycle the engine may hand over quiet bands (`quiet`, `ctsd.engine.wakes`):
a ticker change inside them wakes nothing (counted, `quiet_events`) until the bands
lapse or the next cycle reads the market. A subscription changing state (down, or back
to live), `wake` (the private stream's fills), `wake_after` and the idle timeout are no
ticker changes and wake as before. Bands that the latest prices (which moved while the
cycle ran) already leave wake the engine at once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping

from ctsd.clock import Clock
from ctsd.engine.market_ports import MarketDataSource
from ctsd.engine.wakes import Bands, quiet
from ctsd.errors import FailedPrecondition
from ctsd.exchanges import model as exchange_model
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.streams import StreamKind
from ctsd.marketdata.feeds import StreamState, SubKey, Subscription
from ctsd.marketdata.hub import Lease, MarketDataHub
from ctsd.strategies.base import DataNeeds
from ctsd.strategies.model import (
    Candle,
    MarketInfo,
    MarketSnapshot,
    OrderBookTop,
    SymbolMarket,
    Ticker,
    Trade,
)
from ctsd.wiring.engine_exchange import (
    engine_book,
    engine_ticker,
    engine_trades,
    timeframe_ms,
)


class StreamingMarketData:
    def __init__(self, hub: MarketDataHub, target: ConnectionTarget, rest: MarketDataSource,
                 clock: Clock,
                 now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self._hub = hub
        self._target = target
        self._rest = rest
        self._clock = clock
        self._now_ms = now_ms
        self._leases: dict[SubKey, Lease] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._first_event: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.fallbacks = 0
        self._bands: Bands = {}
        self._lapse: asyncio.TimerHandle | None = None
        self._down: set[SubKey] = set()
        """Subscriptions last heard of not live: their return wakes the engine."""
        self.quiet_events = 0

    # --- MarketEvents -----------------------------------------------------------------------

    def follow(self, symbols: tuple[str, ...], needs: DataNeeds) -> None:
        self.close()
        trigger_candles = needs.candles > 0
        length = timeframe_ms(needs.timeframe) if needs.candles else 0
        for symbol in symbols:
            self._lease(SubKey(self._target, StreamKind.TICKER, symbol),
                        listen=not trigger_candles)
            if needs.candles:
                self._lease(SubKey(self._target, StreamKind.CANDLES, (symbol, needs.timeframe)),
                            listen=True, candle_ms=length, keep=needs.candles)
            if needs.book_depth:
                self._lease(SubKey(self._target, StreamKind.BOOK, (symbol, needs.book_depth)))
            if needs.trades:
                self._lease(SubKey(self._target, StreamKind.TRADES, symbol))
        self.wake()  # the first cycle runs at once

    def _lease(self, key: SubKey, listen: bool = False, candle_ms: int = 0,
               keep: int = 0) -> None:
        self._leases[key] = self._hub.subscribe(key, self._on_event if listen else None,
                                                candle_ms=candle_ms, keep=keep)

    def wake(self) -> None:
        if self._first_event is None:
            self._first_event = self._clock.monotonic()
        self._resolve()

    def _on_event(self, sub: Subscription) -> None:
        """New data (stamped when the hub received it), or a change of the stream's
        state (now: the engine switches to REST, or back, at once)."""
        if not sub.live:
            self._down.add(sub.key)
        elif sub.key in self._down:
            self._down.discard(sub.key)
        elif self._bands and sub.key.kind is StreamKind.TICKER and quiet(
                self._bands, sub.key.key, engine_ticker(sub.value, 0)):
            self.quiet_events += 1
            return
        if self._first_event is None:
            self._first_event = sub.last_data if sub.live and sub.last_data else (
                self._clock.monotonic())
        self._resolve()

    def interrupt(self) -> None:
        self._resolve()

    def wake_after(self, delay_s: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay_s, self.wake)

    def quiet(self, bands: Bands, until: float) -> None:
        self._drop_bands()
        if not bands or not self.streaming:
            return
        for symbol in bands:
            sub = self._usable(SubKey(self._target, StreamKind.TICKER, symbol))
            if sub is None or sub.value is None or not quiet(
                    bands, symbol, engine_ticker(sub.value, 0)):
                self.wake()  # the market moved on while the cycle ran
                return
        self._bands = bands
        if until < math.inf:
            self._lapse = asyncio.get_running_loop().call_later(
                max(0.0, until - self._clock.monotonic()), self._lapsed)

    def _lapsed(self) -> None:
        self._bands, self._lapse = {}, None
        self.wake()

    def _drop_bands(self) -> None:
        self._bands = {}
        if self._lapse is not None:
            self._lapse.cancel()
            self._lapse = None

    def _resolve(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next_event(self, timeout_s: float) -> float | None:
        """One future and one timer per wait: a thousand engines waiting cost no tasks.
        The timeout runs on the event loop's clock."""
        if self._first_event is None:
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            timer = loop.call_later(timeout_s, _settle, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                if self._waiter is waiter:
                    self._waiter = None
        first, self._first_event = self._first_event, None
        return first

    def snapshot_now(self, infos: Mapping[str, MarketInfo], needs: DataNeeds, now_ms: int,
                     ) -> MarketSnapshot | None:
        self._drop_bands()  # they were the last cycle's
        markets = []
        for info in infos.values():
            symbol = info.symbol
            ticker = self._usable(SubKey(self._target, StreamKind.TICKER, symbol))
            if ticker is None or ticker.value is None:
                return None
            candles: tuple[Candle, ...] = ()
            if needs.candles:
                series = self._usable(SubKey(self._target, StreamKind.CANDLES,
                                             (symbol, needs.timeframe)))
                found = None if series is None or series.candles is None else (
                    series.candles.closed(now_ms, needs.candles))
                if found is None:
                    return None
                candles = tuple(Candle(c.open_ms, c.open, c.high, c.low, c.close, c.volume)
                                for c in found)
            book = None
            if needs.book_depth:
                books = self._usable(SubKey(self._target, StreamKind.BOOK,
                                            (symbol, needs.book_depth)))
                if books is None or books.value is None:
                    return None
                book = engine_book(books.value, now_ms)
            trades: tuple[Trade, ...] = ()
            if needs.trades:
                tape = self._usable(SubKey(self._target, StreamKind.TRADES, symbol))
                if tape is None or len(tape.trades) < min(needs.trades, tape.trades.maxlen or 0):
                    return None
                trades = engine_trades(tape.trades, needs.trades)
            markets.append(SymbolMarket(info, engine_ticker(ticker.value, now_ms), candles,
                                        book=book, trades=trades))
        return MarketSnapshot(now_ms, tuple(markets))

    def _usable(self, key: SubKey) -> Subscription | None:
        lease = self._leases.get(key)
        return lease.subscription if lease is not None and lease.subscription.live else None

    @property
    def streaming(self) -> bool:
        return all(lease.subscription.live for lease in self._leases.values())

    @property
    def problem(self) -> str:
        for key, lease in self._leases.items():
            sub = lease.subscription
            if not sub.live:
                return f"{key.describe()} {sub.state.value}" + (
                    f": {sub.error}" if sub.error else "")
        return ""

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._drop_bands()
        self._down.clear()
        leases, self._leases = self._leases, {}
        for lease in leases.values():
            lease.release()

    # --- MarketDataSource ----------------------------------------------------------------------

    async def market(self, symbol: str) -> MarketInfo:
        return await self._rest.market(symbol)

    async def ticker(self, symbol: str) -> Ticker:
        sub = self._live(SubKey(self._target, StreamKind.TICKER, symbol))
        if sub is not None:
            return engine_ticker(sub.value, self._now_ms())
        return await self._rest.ticker(symbol)

    async def candles(self, symbol: str, timeframe: str, limit: int) -> tuple[Candle, ...]:
        sub = self._live(SubKey(self._target, StreamKind.CANDLES, (symbol, timeframe)))
        if sub is None or sub.candles is None:
            return await self._rest.candles(symbol, timeframe, limit)
        found = sub.candles.closed(self._now_ms(), limit)
        if found is not None:
            return tuple(Candle(c.open_ms, c.open, c.high, c.low, c.close, c.volume)
                         for c in found)
        history = await self._rest.candles(symbol, timeframe, sub.candles.keep)
        sub.candles.seed(exchange_model.Candle(c.timestamp_ms, c.open, c.high, c.low, c.close,
                                               c.volume) for c in history)
        return history[-limit:]

    async def order_book(self, symbol: str, depth: int) -> OrderBookTop:
        sub = self._live(SubKey(self._target, StreamKind.BOOK, (symbol, depth)))
        if sub is not None:
            return engine_book(sub.value, self._now_ms())
        return await self._rest.order_book(symbol, depth)

    async def trades(self, symbol: str, limit: int) -> tuple[Trade, ...]:
        sub = self._live(SubKey(self._target, StreamKind.TRADES, symbol))
        if sub is not None and len(sub.trades) >= min(limit, sub.trades.maxlen or limit):
            return engine_trades(sub.trades, limit)
        return await self._rest.trades(symbol, limit)

    def _live(self, key: SubKey) -> Subscription | None:
        """The subscription if its data may be used now; counts a fallback otherwise.

        A refused subscription raises with the venue's reason."""
        lease = self._leases.get(key)
        if lease is None:
            return None
        sub = lease.subscription
        if sub.state is StreamState.FAILED:
            raise FailedPrecondition(f"{key.describe()} cannot be streamed: {sub.error}; "
                                     "use market_data_method rest for this connection")
        if sub.live and (sub.value is not None or key.kind is not StreamKind.TICKER):
            return sub
        sub.fallbacks += 1
        self.fallbacks += 1
        return None


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
