"""The engine's `EngineBackend` on connections and the exchange layer.

Why here: the engine (`ctsd.engine.ports`) knows neither connections nor ccxt;
this module is the one place that turns a connection id into engine clients.
It decides whether a connection may run an engine (it exists, is enabled, its
last test did not fail) and hands out market data through the shared
`ExchangeClientFactory`, so engine polling waits for the same rate-limit
budget as every other request to that venue.

PAPER needs only public market data, so no credentials are opened for it.
LIVE additionally unseals the connection's credentials (through the connection
layer's `CredentialResolver`, the one holder of the vault) into an
authenticated client on the ORDER lane, so order calls go ahead of polling in
the shared limiter; `ExchangeOrders` adapts it to the engine. LIVE is allowed
only on a connection that was tested and did not fail and, where the venue reports key
permissions, granted trading: real orders go out on a key known to work.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from ctsd.clock import SystemClock
from ctsd.connections.checks.results import TestStatus
from ctsd.connections.credentials import CredentialResolver
from ctsd.connections.model import Connection, MarketDataMethod
from ctsd.connections.ports import ConnectionStore
from ctsd.engine.config import TradingMode
from ctsd.engine.ports import EngineResources, MarketDataSource, MarketEvents
from ctsd.errors import CredentialsUnavailable, FailedPrecondition, InvalidArgument
from ctsd.exchanges import model as exchange_model
from ctsd.exchanges.client import ExchangeClient
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ApiCredentials, ConnectionTarget
from ctsd.exchanges.streams import OrderBook, PublicTrade
from ctsd.ratelimit import Lane
from ctsd.strategies.model import BookLevel, Candle, MarketInfo, OrderBookTop, Ticker, Trade
from ctsd.wiring.engine_order_stream import OrderFeed
from ctsd.wiring.engine_orders import ExchangeOrders

_TIMEFRAME = re.compile(r"^([1-9][0-9]*)([smhdw])$")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def timeframe_ms(timeframe: str) -> int:
    """`5m` -> 300000; the length of one candle, to tell a closed one from a forming one."""
    match = _TIMEFRAME.match(timeframe)
    if match is None:
        raise InvalidArgument.field("timeframe", f"{timeframe!r} is not like 1m, 4h or 1d")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


class ExchangeMarketData:
    """`MarketDataSource` over one `ExchangeClient` (the poll lane, the shared limiter)."""

    def __init__(self, client: ExchangeClient,
                 now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self._client = client
        self._now_ms = now_ms

    async def market(self, symbol: str) -> MarketInfo:
        terms = await self._client.market_terms(symbol)
        return MarketInfo(symbol, terms.base, terms.quote, terms.taker_fee, terms.maker_fee)

    async def ticker(self, symbol: str) -> Ticker:
        return engine_ticker(await self._client.fetch_ticker(symbol), self._now_ms())

    async def candles(self, symbol: str, timeframe: str, limit: int) -> tuple[Candle, ...]:
        """One more than asked, then the still-forming candle is dropped."""
        length = timeframe_ms(timeframe)
        raw = await self._client.fetch_ohlcv(symbol, timeframe, limit + 1)
        now = self._now_ms()
        closed = [c for c in raw if c.open_ms + length <= now]
        return tuple(Candle(c.open_ms, c.open, c.high, c.low, c.close, c.volume)
                     for c in closed[-limit:])

    async def order_book(self, symbol: str, depth: int) -> OrderBookTop:
        return engine_book(await self._client.fetch_order_book(symbol, depth), self._now_ms())

    async def trades(self, symbol: str, limit: int) -> tuple[Trade, ...]:
        return engine_trades(await self._client.fetch_trades(symbol, limit), limit)


def engine_ticker(raw: exchange_model.Ticker, now_ms: int) -> Ticker:
    """Venues may omit bid or ask (a quiet market); the last price stands in for them."""
    return Ticker(raw.symbol, raw.bid if raw.bid is not None else raw.last,
                  raw.ask if raw.ask is not None else raw.last, raw.last,
                  raw.timestamp_ms or now_ms)


def engine_book(raw: OrderBook, now_ms: int) -> OrderBookTop:
    return OrderBookTop(tuple(BookLevel(lv.price, lv.amount) for lv in raw.bids),
                        tuple(BookLevel(lv.price, lv.amount) for lv in raw.asks),
                        raw.timestamp_ms or now_ms)


def engine_trades(raw: Iterable[PublicTrade], limit: int) -> tuple[Trade, ...]:
    trades = [Trade(t.price, t.amount, t.side, t.timestamp_ms) for t in raw]
    return tuple(trades[-limit:])


class StreamingSource(MarketDataSource, MarketEvents, Protocol):
    """Market data from streams that also wakes the engine (`engine_streams`)."""

    def wake(self) -> None:
        """An event of the engine's own (its order stream): cycle as soon as allowed."""
        ...


StreamSource = Callable[[ConnectionTarget, "ExchangeMarketData"], StreamingSource]
"""Builds a WebSocket connection's market data over its REST source."""


@dataclass(frozen=True)
class Opened:
    """What one `open` handed out, for its `close`."""

    target: ConnectionTarget
    trading: ExchangeClient | None
    streams: StreamingSource | None
    orders: OrderFeed | None


class ExchangeEngineBackend:
    """`EngineBackend`: checks the connection, opens its clients per `open`.

    Without a `credentials` resolver (tests of PAPER alone) LIVE is refused.
    """

    def __init__(self, connections: ConnectionStore, factory: ExchangeClientFactory,
                 credentials: CredentialResolver | None = None, *,
                 streams: StreamSource | None = None) -> None:
        self._connections = connections
        self._factory = factory
        self._credentials = credentials
        self._streams = streams
        """Builds the market data of a WebSocket connection (the hub); None: REST only."""
        self._opened: dict[str, list[Opened]] = {}
        self._public: dict[ConnectionTarget, tuple[ExchangeClient, int]] = {}
        """One public market-data client per target, shared by every engine on it (a ccxt
        instance per engine would cost a thousand engines gigabytes); with its users."""

    async def open(self, connection_id: str, mode: TradingMode) -> EngineResources:
        conn = await self._connections.get(connection_id)  # NotFound for an unknown id
        name = f"connections/{connection_id}"
        if not conn.enabled:
            raise FailedPrecondition(f"{name} is disabled; enable it to run an engine")
        if conn.last_test is not None and conn.last_test.status is TestStatus.FAILED:
            raise FailedPrecondition(
                f"the last test of {name} failed ({conn.last_test.message or 'no reason given'}); "
                "test it again once fixed")
        if mode is TradingMode.LIVE:
            self._check_live(conn, name)
        target = ConnectionTarget(conn.exchange, conn.api_type, conn.testnet)
        market = await self._market_client(target)
        trading = credentials = None
        if mode is TradingMode.LIVE:
            try:
                trading, credentials = await self._trading_client(conn, target, name)
            except BaseException:
                await self._release_market(target)
                raise
        rest = ExchangeMarketData(market)
        streaming = feed = None
        orders = None if trading is None else ExchangeOrders(trading)
        if self._streams is not None and conn.market_data_method is MarketDataMethod.WEBSOCKET:
            streaming = self._streams(target, rest)
            if orders is not None and credentials is not None:
                reopen = partial(self._factory.order_stream, target, credentials,
                                 conn.account_uid)
                try:
                    feed = OrderFeed(await reopen(), reopen, orders.streamed, streaming.wake,
                                     SystemClock())
                except BaseException:
                    await self._abandon(Opened(target, trading, streaming, None))
                    raise
                feed.start()
        # A dry run (TestEngine) may open more clients while the engine holds its own.
        self._opened.setdefault(connection_id, []).append(
            Opened(target, trading, streaming, feed))
        if streaming is None:
            return EngineResources(rest, orders)
        return EngineResources(streaming, orders, streaming, feed)

    async def _market_client(self, target: ConnectionTarget) -> ExchangeClient:
        shared = self._public.get(target)
        if shared is None:
            client = await self._factory.client(target, None, lane=Lane.POLL)
            shared = self._public.get(target)  # another open may have made one meanwhile
            if shared is not None:
                await client.close()
            else:
                shared = (client, 0)
        self._public[target] = (shared[0], shared[1] + 1)
        return shared[0]

    async def _release_market(self, target: ConnectionTarget) -> None:
        client, users = self._public[target]
        if users > 1:
            self._public[target] = (client, users - 1)
            return
        del self._public[target]
        await client.close()

    def _check_live(self, conn: Connection, name: str) -> None:
        if self._credentials is None:
            raise FailedPrecondition(f"{name} cannot trade LIVE: this daemon has no vault")
        if conn.last_test is None:
            raise FailedPrecondition(
                f"{name} has never been tested; LIVE trading needs a passed connection test")
        spec = self._factory.registry.get(conn.exchange)
        reports = spec is not None and spec.client is not None and (
            spec.client.permissions is not None)
        if reports and "trade" not in conn.last_test.capabilities:
            raise FailedPrecondition(
                f"the key of {name} may not trade (last test: "
                f"{', '.join(conn.last_test.capabilities) or 'no permissions'}); "
                "enable trading on the key and test again")

    async def _trading_client(self, conn: Connection, target: ConnectionTarget,
                              name: str) -> tuple[ExchangeClient, ApiCredentials]:
        assert self._credentials is not None
        try:
            credentials = await self._credentials.resolve(conn)
        except CredentialsUnavailable as exc:
            raise FailedPrecondition(f"{name} cannot trade LIVE: {exc.message}") from exc
        client = await self._factory.client(target, credentials, lane=Lane.ORDER,
                                            account_uid=conn.account_uid)
        return client, credentials

    async def close(self, connection_id: str) -> None:
        opened = self._opened.get(connection_id)
        if not opened:
            return
        last = opened.pop()
        if not opened:
            del self._opened[connection_id]
        await self._abandon(last)

    async def _abandon(self, opened: Opened) -> None:
        """Release what one `open` handed out."""
        if opened.streams is not None:
            opened.streams.close()
        if opened.orders is not None:
            await opened.orders.close()
        try:
            if opened.trading is not None:
                await opened.trading.close()
        finally:
            await self._release_market(opened.target)
