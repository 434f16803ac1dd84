"""`MarketStream` and `OrderStream`: ccxt.pro WebSockets of one target, as frozen values.

Why a thin class per ccxt.pro instance: the market-data hub (`ctsd.marketdata`)
decides which subscriptions share a connection and when a connection is given
up; this module only turns ccxt.pro's watch calls into the exchange layer's
values and errors, so nothing outside `ctsd.exchanges` imports ccxt.

One instance is one *shard*: ccxt.pro keeps one WebSocket per URL, and
`STREAM_LIMITS` makes Binance put every subscription of the instance on one
connection (ccxt spreads them over 50 by default, the opposite of what a venue
with a connection-rate limit wants). A watch call names a *group* of keys the
venue subscribes in one request (`StreamLimits.batch`); `updates` races every
group of a feed and returns what arrived, so one task per feed serves any
number of symbols.

A book out of sequence (ccxt's ChecksumError / InvalidNonce on a gap) is
`StreamGap`: the next watch of that book resyncs from a REST snapshot (ccxt
does it), and the hub counts it. Kraken's checksum and Bybit's update ids,
which ccxt.pro leaves unchecked, are checked by `ctsd.exchanges.book_checks`,
and such a book found wrong is unsubscribed, so the next watch subscribes it
again and gets the venue's snapshot.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import partial
from typing import Any

from ctsd.clock import Clock
from ctsd.errors import ExchangeFailure, FailureClass
from ctsd.exchanges import answers
from ctsd.exchanges.book_checks import book_checks
from ctsd.exchanges.ccxt_errors import malformed
from ctsd.exchanges.model import ConnectionTarget, Order, Position
from ctsd.exchanges.spec import ApiType
from ctsd.tasks import AsyncClosing, retrieve_outcome


class StreamKind(enum.Enum):
    TICKER = "ticker"
    CANDLES = "candles"
    BOOK = "book"
    TRADES = "trades"


@dataclass(frozen=True)
class StreamLimits:
    """What a venue allows one IP and one connection (sources: venue-facts.md)."""

    streams_per_connection: int
    """Subscriptions one connection may hold; a shard is opened beyond it."""
    connections: int
    window_s: float
    """At most `connections` new connections per `window_s` per IP."""
    subscribes: int
    subscribe_window_s: float
    """At most `subscribes` subscribe requests per `subscribe_window_s` on one connection
    (Binance counts them in its 5 messages a second, OKX in its 480 operations an hour)."""
    batch: int
    """Keys one subscribe request may carry (Bybit spot: 10 args)."""
    book_depths: tuple[int, ...] = ()
    """Depths the venue streams (the next one up is subscribed); empty: any."""
    ticker_cadence_s: float | None = None
    """A venue that sends tickers only on change (Kraken) is quiet longer than others."""


STREAM_LIMITS: Mapping[str, StreamLimits] = {
    # 1,024 streams a connection, 300 connections per 5 min, 5 incoming messages a second
    # (pongs included: 2 subscribes a second leave room).
    "binance": StreamLimits(1000, 300, 300.0, 2, 1.0, 200),
    # 500 connections per 5 min; spot 10 args a request, 21,000 characters of args.
    "bybit": StreamLimits(500, 500, 300.0, 5, 1.0, 10, (1, 50, 200, 1000)),
    # 3 connection requests a second; 480 operations an hour a connection.
    "okx": StreamLimits(500, 3, 1.0, 480, 3600.0, 100, (5, 400)),
    # 150 connections per 10 min (Cloudflare); message rate unpublished.
    "kraken": StreamLimits(500, 150, 600.0, 5, 1.0, 50, (10, 25, 100, 500, 1000), 60.0),
}

SHARD_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "binance": {"streamLimits": {t: 1 for t in ("spot", "margin", "linear", "inverse")},
                "subscriptionLimitByStream": {t: 1024 for t in ("spot", "margin", "linear",
                                                                "inverse")}},
}
"""ccxt.pro options that keep a shard on one connection per URL."""

Translate = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]
Key = Any
"""A stream's key: a symbol, or (symbol, timeframe), or (symbol, depth)."""


@dataclass(frozen=True)
class BookLevel:
    price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class OrderBook:
    symbol: str
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    timestamp_ms: int | None
    nonce: int | None


@dataclass(frozen=True)
class PublicTrade:
    id: str
    symbol: str
    side: str
    price: Decimal
    amount: Decimal
    timestamp_ms: int


def stream_limits(exchange: str) -> StreamLimits:
    return STREAM_LIMITS.get(exchange, StreamLimits(200, 10, 60.0, 1, 1.0, 1))


def public_stream_target(target: ConnectionTarget) -> ConnectionTarget:
    """The target whose public streams carry `target`'s market data: a margin pair trades
    on the spot book (every venue here lists its margin pairs as spot markets), so margin
    engines share the spot subscriptions rather than opening sockets of their own."""
    if target.api_type is ApiType.MARGIN:
        return replace(target, api_type=ApiType.SPOT)
    return target


class Pacer:
    """At most `count` starts per `window_s` (a sliding window) on `clock`."""

    def __init__(self, count: int, window_s: float, clock: Clock) -> None:
        self._count = max(1, count)
        self._window = window_s
        self._clock = clock
        self._starts: deque[float] = deque()

    async def wait(self) -> None:
        while True:
            now = self._clock.monotonic()
            while self._starts and now - self._starts[0] >= self._window:
                self._starts.popleft()
            if len(self._starts) < self._count:
                self._starts.append(now)
                return
            await self._clock.sleep(self._starts[0] + self._window - now)


class ConnectionPacers:
    """One `Pacer` per venue for every WebSocket this daemon opens to it: a venue counts
    new connections per IP, public (the market-data hub's shards) and private (LIVE
    engines' order streams, reopened after each failure) alike."""

    def __init__(self, clock: Clock, margin_s: float = 0.0) -> None:
        """`margin_s` widens each venue's window: every socket is paced at its dial
        (`ccxt_internals.pace_opens`), but its handshake reaches the venue a loaded
        loop's turn or more later, so two connects can land closer together than their
        pacing (OKX's 3 a second was breached so when sockets were paced as made)."""
        self._clock = clock
        self._margin_s = margin_s
        self._pacers: dict[str, Pacer] = {}

    def pacer(self, exchange: str) -> Pacer:
        found = self._pacers.get(exchange)
        if found is None:
            limits = stream_limits(exchange)
            found = self._pacers[exchange] = Pacer(
                limits.connections, limits.window_s + self._margin_s, self._clock)
        return found


def order_book(raw: Any, symbol: str, depth: int) -> OrderBook:
    if not isinstance(raw, Mapping):
        raise malformed(f"order book of {symbol} is not an object")

    def side(rows: Any) -> tuple[BookLevel, ...]:
        levels = []
        for row in list(rows or ())[:depth]:
            price, amount = answers.decimal(row[0]), answers.decimal(row[1])
            if price is None or amount is None:
                raise malformed(f"a level of {symbol}'s book is not [price, amount]")
            levels.append(BookLevel(price, amount))
        return tuple(levels)

    stamp, nonce = raw.get("timestamp"), raw.get("nonce")
    return OrderBook(symbol, side(raw.get("bids")), side(raw.get("asks")),
                     stamp if isinstance(stamp, int) else None,
                     nonce if isinstance(nonce, int) else None)


def public_trades(raw: Any, symbol: str) -> list[PublicTrade]:
    if not isinstance(raw, list):
        raise malformed(f"trades of {symbol} are not a list")
    found = []
    for item in raw:
        price, amount = answers.decimal(item.get("price")), answers.decimal(item.get("amount"))
        stamp = item.get("timestamp")
        if price is None or amount is None or not isinstance(stamp, int):
            raise malformed(f"a trade of {symbol} lacks price, amount or time")
        found.append(PublicTrade(str(item.get("id") or ""), symbol, str(item.get("side") or ""),
                                 price, amount, stamp))
    return found


class MarketStream(AsyncClosing):
    """Public streams of one target on one ccxt.pro instance (a shard of the hub)."""

    def __init__(self, exchange: Any, target: ConnectionTarget, translate: Translate,
                 limits: StreamLimits, clock: Clock) -> None:
        self._exchange = exchange
        self.target = target
        self._translate = translate
        self._limits = limits
        self._pending: dict[tuple[StreamKind, tuple[Key, ...]], asyncio.Future[Any]] = {}
        self._subscribes = Pacer(limits.subscribes, limits.subscribe_window_s, clock)
        self._seen: dict[tuple[StreamKind, Key], Any] = {}
        self._closed = False
        self._clients: dict[str, Any] = {}
        self._redials = 0
        self._subscribed: set[tuple[StreamKind, tuple[Key, ...]]] = set()
        """Groups ccxt.pro holds a subscription for on the current sockets: watching one
        again sends the venue nothing, so it does not wait for the subscribe pacer."""
        self._subscribed_redials = 0
        self._book_checks = book_checks(target.exchange, exchange)

    def pace_dials(self, wait: Callable[[], Awaitable[None]]) -> None:
        """Every socket of the shard waits for `wait()` (the venue's connection pacer) as
        it dials: its first, and each one ccxt.pro dials again by itself on the next
        watch after the venue closed one, which a wait before the shard was made misses."""
        from ctsd.exchanges import ccxt_internals

        ccxt_internals.pace_opens(self._exchange, wait)

    def redials(self) -> int:
        """Sockets ccxt.pro dialled again by itself so far (the venue closed one and a later
        watch reopened it, resubscribing): reconnects no watch saw fail."""
        from ctsd.exchanges import ccxt_internals

        for url, client in ccxt_internals.ws_clients(self._exchange).items():
            seen = self._clients.get(url)
            if seen is not client:
                self._redials += seen is not None
                self._clients[url] = client
        return self._redials

    def supports(self, kind: StreamKind) -> bool:
        has = self._exchange.has
        return bool(has.get({StreamKind.TICKER: "watchTicker", StreamKind.CANDLES: "watchOHLCV",
                             StreamKind.BOOK: "watchOrderBook",
                             StreamKind.TRADES: "watchTrades"}[kind]))

    def unlisted(self, keys: Sequence[Key]) -> list[Key]:
        """The keys whose symbol the venue does not list (ccxt would subscribe them anyway
        on some venues, and wait for data that never comes)."""
        markets = self._exchange.markets or {}
        return [k for k in keys if (k if isinstance(k, str) else k[0]) not in markets]

    async def updates(self, kind: StreamKind, groups: Sequence[tuple[Key, ...]],
                      ) -> list[tuple[tuple[Key, ...], list[tuple[Key, Any]] | ExchangeFailure]]:
        """The next values of any of `groups` (each one subscribe request): per group that
        answered, its (key, value)s — Ticker, Candles (closed and forming), OrderBook,
        PublicTrades — or the `ExchangeFailure` it raised. Other groups' watches stay
        pending for the next call; a group no longer asked for is dropped."""
        wanted = {(kind, group) for group in groups}
        for stale in [k for k in self._pending if k[0] is kind and k not in wanted]:
            self._drop(stale)
            self._subscribed.discard(stale)
        if self.redials() != self._subscribed_redials:  # a new socket subscribes them all
            self._subscribed.clear()
            self._subscribed_redials = self._redials
        for group in groups:
            if (kind, group) not in self._pending:
                if (kind, group) not in self._subscribed:  # one subscribe request
                    await self._subscribes.wait()
                self._pending[(kind, group)] = asyncio.ensure_future(
                    self._translate(partial(self._watch, kind, group)))
        futures = {self._pending[(kind, g)]: g for g in groups}
        done, _ = await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
        result: list[tuple[tuple[Key, ...], list[tuple[Key, Any]] | ExchangeFailure]] = []
        for future in done:
            group = futures[future]
            self._pending.pop((kind, group), None)
            error = future.exception()
            if error is not None:
                self._subscribed.discard((kind, group))
            if isinstance(error, ExchangeFailure):
                result.append((group, error))
            elif error is not None:
                raise error
            else:
                self._subscribed.add((kind, group))
                result.append((group, self._parse(kind, group, future.result())))
        return result

    def _drop(self, key: tuple[StreamKind, tuple[Key, ...]]) -> None:
        future = self._pending.pop(key)
        future.cancel()

    async def _watch(self, kind: StreamKind, group: tuple[Key, ...]) -> Any:
        ex = self._exchange
        if kind is StreamKind.TICKER:
            if len(group) > 1 and ex.has.get("watchTickers"):
                return await ex.watch_tickers(list(group))
            if len(group) == 1:
                return {group[0]: await ex.watch_ticker(group[0])}
            return await _gather_dict(ex.watch_ticker, group)
        if kind is StreamKind.CANDLES:
            if len(group) > 1 and ex.has.get("watchOHLCVForSymbols"):
                return await ex.watch_ohlcv_for_symbols([[s, tf] for s, tf in group])
            symbol, timeframe = group[0]
            return {symbol: {timeframe: await ex.watch_ohlcv(symbol, timeframe)}}
        if kind is StreamKind.BOOK:
            return await self._watch_book(*group[0])
        return await ex.watch_trades(group[0])

    async def _watch_book(self, symbol: str, depth: int) -> Any:
        depths = [d for d in self._limits.book_depths if d >= depth]
        subscribed = depths[0] if depths else depth
        try:
            book = await self._exchange.watch_order_book(symbol, subscribed)
        except Exception as exc:
            if _is_gap(exc):
                raise self._gap(symbol, str(exc)) from exc
            raise
        problem = self._book_checks.problem(symbol, book) if self._book_checks else None
        if problem is not None and self._book_checks is not None:
            await self._subscribes.wait()  # the unsubscribe is a request like a subscribe
            await self._book_checks.resync(symbol, subscribed)
            raise self._gap(symbol, problem)
        return book

    def _gap(self, symbol: str, why: str) -> ExchangeFailure:
        return ExchangeFailure(FailureClass.EXCHANGE_ERROR, f"{self.target.exchange} book of "
                               f"{symbol} out of sequence: {why}", code="sequence_gap")

    def _parse(self, kind: StreamKind, group: tuple[Key, ...], raw: Any,
               ) -> list[tuple[Key, Any]]:
        if kind is StreamKind.TICKER:  # see `_news`: ccxt answers one symbol of many
            return [(symbol, answers.ticker(value, symbol))
                    for symbol, value in self._news(kind, group, self._exchange.tickers)]
        if kind is StreamKind.CANDLES:
            return [(key, answers.candles(list(rows), key[0]))
                    for key, rows in self._news(kind, group, self._exchange.ohlcvs)]
        if kind is StreamKind.BOOK:
            symbol, depth = group[0]
            book = order_book(raw, symbol, depth)
            return [(group[0], book)]
        return [(group[0], public_trades(list(raw), str(group[0])))]

    def _news(self, kind: StreamKind, group: tuple[Key, ...], cache: Any,
              ) -> list[tuple[Key, Any]]:
        """What changed in ccxt's cache for any key of `group` since last asked.

        ccxt.pro answers a watch of many symbols with the first symbol whose message
        arrived; messages of the others that arrive before the next watch update its
        cache but resolve no future, so reading the answer alone loses them. The cache
        holds every one: a ticker is a new dict per message, a candle row a new list.
        """
        found = []
        for key in group:
            if kind is StreamKind.CANDLES:
                rows = (cache or {}).get(key[0], {}).get(key[1])
                value, marker = rows, (len(rows), tuple(rows[-1])) if rows else None
            else:
                value = marker = (cache or {}).get(key)
            seen = self._seen.get((kind, key))
            if value is None or (seen == marker if kind is StreamKind.CANDLES
                                 else seen is marker):
                continue
            self._seen[(kind, key)] = marker
            found.append((key, value))
        return found

    async def close(self) -> None:
        """Cancel the pending watches and close every WebSocket of the shard."""
        if self._closed:
            return
        self._closed = True
        for key in list(self._pending):
            self._drop(key)
        await _close_exchange(self._exchange)


async def _gather_dict(watch: Callable[[str], Awaitable[Any]], symbols: Sequence[str],
                       ) -> dict[str, Any]:
    """One watch per symbol, the first to answer (venues without a batched ticker)."""
    tasks = {asyncio.ensure_future(watch(s)): s for s in symbols}
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return {tasks[t]: t.result() for t in done}


def _is_gap(exc: BaseException) -> bool:
    import ccxt

    return isinstance(exc, ccxt.InvalidNonce | ccxt.ChecksumError)


class OrderStream(AsyncClosing):
    """A LIVE connection's private order stream (fills and order states) on ccxt.pro, and
    on perpetuals its positions stream too (Binance USDⓈ-M `ACCOUNT_UPDATE` on the same
    listenKey socket, Bybit `position`, OKX `positions`: the same socket as the orders)."""

    def __init__(self, exchange: Any, target: ConnectionTarget, translate: Translate, *,
                 per_trade_fees: bool = False, filled_field: str | None = None) -> None:
        self._exchange = exchange
        self.target = target
        self._translate = translate
        self._per_trade_fees = per_trade_fees
        """The venue streams each trade's fee, not the order's (`ClientProfile`)."""
        self._filled_field = filled_field
        """Where the venue's update says what an order filled when ccxt.pro does not
        (`ClientProfile.stream_filled_field`)."""
        self._seen: dict[str, Any] = {}
        self._pending: dict[str, asyncio.Future[Any]] = {}
        """The watches not yet answered ("orders", "positions"), kept across calls: a
        watch dropped for the other's answer would lose the message it waits for."""

    def connected(self) -> bool:
        """Whether a WebSocket of this stream is open (ccxt says nothing until data)."""
        from ctsd.exchanges import ccxt_internals

        return ccxt_internals.ws_connected(self._exchange)

    def pacing(self) -> bool:
        """Whether its WebSocket waits for the venue's connection pacer to dial."""
        from ctsd.exchanges import ccxt_internals

        return ccxt_internals.ws_pacing(self._exchange)

    async def orders(self) -> list[Order]:
        """The next order updates (see `updates`)."""
        orders, _ = await self.updates(positions=False)
        return orders

    async def updates(self, positions: bool) -> tuple[list[Order], list[Position]]:
        """The next order updates (cumulative filled, average, fee; amounts in base units,
        as the REST client answers them), after logging in, or with `positions` the next
        position updates (a flat leg has amount 0), whichever comes first.

        ccxt.pro resolves a watch with the message that woke it; an update that arrives
        before the next watch only lands in its order cache, and an idle account may
        send nothing more to wake that watch. So the cache is read for what changed
        since the last answer, first without waiting, then after each watch. Positions
        come as ccxt parsed them, each message's legs (no REST snapshot: the broker
        reads positions over REST when it reconciles)."""
        news = self._news()
        if news:
            return self._orders(news), []
        self._start("orders", self._watch_orders)
        if positions:
            self._start("positions", self._watch_positions)
        done, _ = await asyncio.wait(self._pending.values(),
                                     return_when=asyncio.FIRST_COMPLETED)
        answered = {name: future for name, future in self._pending.items() if future in done}
        for name in answered:
            del self._pending[name]
        found: tuple[list[Order], list[Position]] = ([], [])
        for name, future in sorted(answered.items()):
            raw = future.result()  # a failure raises: the feed calls it a gap
            if name == "orders":
                found[0].extend(self._orders(self._news() or list(raw)))
            else:
                found[1].extend(self._positions(raw))
        return found

    def _start(self, name: str, watch: Callable[[], Awaitable[Any]]) -> None:
        if name not in self._pending:
            future = self._pending[name] = asyncio.ensure_future(self._translate(watch))
            future.add_done_callback(retrieve_outcome)  # one failing may end the other's wait

    def _orders(self, raw: list[Any]) -> list[Order]:
        markets = self._exchange.markets
        found = [answers.in_base(o, answers.contract_size(markets, o.symbol))
                 for o in map(answers.order, map(self._with_filled, raw))]
        return self._with_trades(found) if self._per_trade_fees else found

    def _with_filled(self, raw: Any) -> Any:
        """ccxt.pro's order, with the venue's own filled amount where ccxt left it unset
        (its cache merges each message's fields into `info`: the latest amount)."""
        field = self._filled_field
        if field is None or not isinstance(raw, Mapping) or raw.get("filled") is not None:
            return raw
        info = raw.get("info")
        filled = info.get(field) if isinstance(info, Mapping) else None
        return raw if filled is None else {**raw, "filled": filled}

    def _with_trades(self, orders: list[Order]) -> list[Order]:
        """Each order with the trades of it ccxt.pro cached (its own-trade cache holds
        every execution message it got, by trade id): ccxt's sum of their fees is only
        what this connection saw, so the broker is told which trades that was."""
        by_order: dict[str, list[Any]] = {}
        for item in list(self._exchange.myTrades or ()):
            by_order.setdefault(str(item.get("order")), []).append(item)
        markets = self._exchange.markets
        return [answers.with_trades(o, answers.trades(
                    by_order.get(o.id, []), answers.contract_size(markets, o.symbol)))
                for o in orders]

    def _positions(self, raw: Any) -> list[Position]:
        if not isinstance(raw, list):
            raise malformed(f"{self.target.exchange} position update is not a list")
        markets, found = self._exchange.markets, []
        for row in raw:
            contracts = answers.decimal(row.get("contracts")) if isinstance(row, Mapping) \
                else None
            if contracts is None or not row.get("symbol"):
                raise malformed(f"{self.target.exchange} position update lacks symbol or "
                                "contracts")
            found.append(answers.position_row(
                row, contracts, answers.contract_size(markets, str(row["symbol"])),
                self.target.exchange))
        return found

    async def _watch_positions(self) -> Any:
        # Updates only: the broker's REST read is the snapshot (through the rate limiter).
        self._exchange.options["watchPositions"] = {
            **self._exchange.options.get("watchPositions", {}),
            "fetchPositionsSnapshot": False, "awaitPositionsSnapshot": False}
        return await self._exchange.watch_positions()

    def _news(self) -> list[Any]:
        """Cached orders whose state moved since last returned (ccxt updates a cached
        order in place, so its state is compared, not its identity)."""
        found, seen = [], {}
        for item in list(self._exchange.orders or ()):
            key = str(item.get("id"))
            seen[key] = state = tuple(item.get(k) for k in (
                "status", "filled", "cost", "average", "lastTradeTimestamp",
                "lastUpdateTimestamp"))
            if self._seen.get(key) != state:
                found.append(dict(item))
        self._seen = seen  # only what ccxt still caches (it keeps 1,000 at most)
        return found

    async def _watch_orders(self) -> Any:
        try:
            return await self._exchange.watch_orders()
        except KeyError as exc:
            # ccxt 4.5.90's Binance spot: a refused login deletes one subscription twice
            # and surfaces as KeyError('spot') over the AuthenticationError.
            context = exc.__context__
            if context is not None:
                raise context from exc
            raise

    async def close(self) -> None:
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        await _close_exchange(self._exchange)


async def _close_exchange(exchange: Any) -> None:
    """Closed to the end even when the closer is cancelled meanwhile (a test's deadline,
    an engine stopping): a close abandoned halfway leaves a socket open for good."""
    from ctsd.exchanges import ccxt_internals

    closing = asyncio.ensure_future(ccxt_internals.close_ws(exchange))
    try:
        await asyncio.shield(closing)
    except asyncio.CancelledError:
        closing.add_done_callback(retrieve_outcome)  # a failed close is not worth a warning
        raise
    except Exception:  # closing a broken connection: nothing more to release
        return

