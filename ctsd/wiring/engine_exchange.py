"""The engine's `EngineBackend` on connections and the exchange layer.

Why here: the engine (`ctsd.engine.backend`) knows neither connections nor ccxt;
this module is the one place that turns a connection id into engine clients.
It decides whether a connection may run an engine (it exists, is enabled, its
last test did not fail) and hands out market data through the shared
`ExchangeClientFactory`, so engine polling waits for the same rate-limit
budget as every other request to that venue.

PAPER needs only public market data; where the connection has a key it is
opened too (the POLL lane, never for orders) for what venues tell keys only: the
account's own fee rates, which a paper engine must charge to trade like the live
one, and Binance's leverage brackets. Without a key PAPER uses what is public.
A perpetual-futures connection also hands out the perpetuals seams
(`ctsd.wiring.engine_perpetual`): public tiers and funding for every engine,
the account (settings, positions, funding payments, fills) for LIVE, and the
connection's margin and position modes.
LIVE additionally unseals the connection's credentials (through the connection
layer's `CredentialResolver`, the one holder of the vault) into an
authenticated client on the ORDER lane, so order calls go ahead of polling in
the shared limiter; `ExchangeOrders` adapts it to the engine. LIVE is allowed
only on a connection that was tested and did not fail and, where the venue reports key
permissions, granted trading: real orders go out on a key known to work.

On a WebSocket connection (`market_data_method`) market data comes from the
daemon's market-data hub (`ctsd.wiring.engine_streams`), which also triggers
the engine's cycles, and LIVE spot, margin and perpetuals engines get their fills and
order states from the private order stream (`ctsd.wiring.engine_order_stream`). Every engine on a
target shares one public REST client; trading and key-reading clients are
each `open`'s own.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Protocol

from ctsd.clock import SystemClock
from ctsd.connections.checks.results import TestStatus
from ctsd.connections.credentials import CredentialResolver
from ctsd.connections.model import Connection, MarketDataMethod, PositionMode
from ctsd.connections.ports import ConnectionStore
from ctsd.engine.backend import EngineResources
from ctsd.engine.config import TradingMode
from ctsd.engine.market_ports import MarketDataSource, MarketEvents
from ctsd.engine.perpetual import AccountModes, MarginMode
from ctsd.errors import (
    CredentialsUnavailable,
    ExchangeFailure,
    FailedPrecondition,
    InvalidArgument,
)
from ctsd.exchanges import model as exchange_model
from ctsd.exchanges.client import ExchangeClient
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ApiCredentials, ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.exchanges.streams import OrderBook, PublicTrade, public_stream_target
from ctsd.ratelimit import Lane
from ctsd.shared_pool import SharedPool
from ctsd.strategies.model import (
    BookLevel,
    Candle,
    MarketInfo,
    MarketKind,
    OrderBookTop,
    Ticker,
    Trade,
)
from ctsd.wiring.engine_orders import ExchangeOrders

if TYPE_CHECKING:
    from ctsd.wiring.engine_order_stream import OrderFeed

# The margin, options, perpetuals and order-stream seams are imported where an engine of
# their kind is opened: a daemon starts (and most run) without one, and together with the
# exchange layer's clients for them they are a good part of what a start would import.

log = logging.getLogger("ctsd.engine")
STREAMED_ORDERS = frozenset({MarketKind.SPOT, MarketKind.MARGIN, MarketKind.PERPETUAL})
"""Market kinds whose LIVE engines take order updates from the private stream (options:
the simulator streams no option markets, so their connections poll)."""
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
                 now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
                 kind: MarketKind = MarketKind.SPOT,
                 account: ExchangeClient | None = None) -> None:
        self._client = client
        self._now_ms = now_ms
        self._kind = kind
        self._account = account
        """The connection's key, where open: the fees are then the account's own."""

    async def market(self, symbol: str) -> MarketInfo:
        """The market's terms; with the connection's key, the fees its account pays (what
        a paper engine must charge to trade like the live one), else the published ones."""
        terms = await self._client.market_terms(symbol)
        taker, maker = terms.taker_fee, terms.maker_fee
        if self._account is not None:
            try:
                taker, maker = await self._account.trading_fees(symbol)
            except ExchangeFailure as exc:  # the published fees stand in
                log.info("account fees not read; the published ones apply", extra={
                    "exchange": self._client.target.exchange, "symbol": symbol,
                    "error": exc.detail})
        return MarketInfo(symbol, terms.base, terms.quote, taker, maker, self._kind,
                          terms.amount_step, terms.buy_fee_in_base, terms.price_step)

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
                  raw.timestamp_ms or now_ms, raw.underlying, raw.mark)


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


StreamSource = Callable[[ConnectionTarget, MarketDataSource], StreamingSource]
"""Builds a WebSocket connection's market data over its REST source."""


@dataclass(frozen=True)
class Opened:
    """What one `open` handed out, for its `close`."""

    target: ConnectionTarget
    clients: tuple[ExchangeClient, ...]
    """Its own clients (trading, or PAPER's key reader); the public one is shared."""
    streams: StreamingSource | None
    orders: OrderFeed | None


def engine_resources(market: ExchangeClient, trading: ExchangeClient | None,
                     modes: AccountModes, reader: ExchangeClient | None = None, *,
                     now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
                     ) -> EngineResources:
    """An engine's resources on opened clients: `market` (public, the poll lane) for market
    data, `trading` (authenticated, LIVE only) for orders and the perpetuals account, and
    for the perpetuals' facts the first of `reader` (authenticated, the poll lane: Binance
    lists leverage brackets to keys only), `trading` and `market`. `modes` are the
    connection's margin and position modes; `now_ms` the engine's clock (which candles
    have closed)."""
    if market.target.api_type is ApiType.MARGIN:
        return _margin_resources(market, trading, modes, reader, now_ms)
    if market.target.api_type is ApiType.OPTIONS:
        from ctsd.exchanges.options import OptionClient
        from ctsd.wiring.engine_options import ExchangeOptionAccount, ExchangeOptionMarketData

        chain = OptionClient(reader or trading or market)
        return EngineResources(
            ExchangeMarketData(market, now_ms, MarketKind.OPTION, reader or trading),
            ExchangeOrders(trading, now_ms) if trading is not None else None,
            MarketKind.OPTION, modes, option_market=ExchangeOptionMarketData(chain),
            option_account=ExchangeOptionAccount(OptionClient(trading))
            if trading is not None else None)
    perpetual = market.target.api_type is ApiType.PERPETUAL_FUTURES
    kind = MarketKind.PERPETUAL if perpetual else MarketKind.SPOT
    facts = reader or trading or market
    perp_market = account = None
    if perpetual:
        from ctsd.exchanges.perpetuals import PerpetualClient
        from ctsd.wiring.engine_perpetual import (
            ExchangePerpetualAccount,
            ExchangePerpetualMarketData,
        )

        perp_market = ExchangePerpetualMarketData(PerpetualClient(facts))
        if trading is not None:
            account = ExchangePerpetualAccount(PerpetualClient(trading), modes.margin_mode)
    orders = None
    if trading is not None:
        orders = ExchangeOrders(trading, now_ms, margin_mode=modes.margin_mode.value
                                if perpetual else None)
    return EngineResources(ExchangeMarketData(market, now_ms, kind, reader or trading), orders,
                           kind, modes, perp_market, account)


def _margin_resources(market: ExchangeClient, trading: ExchangeClient | None,
                      modes: AccountModes, reader: ExchangeClient | None,
                      now_ms: Callable[[], int]) -> EngineResources:
    """Spot margin: the lending terms from the keyed client where there is one (the
    account's own rates), orders that borrow and repay, and the LIVE account."""
    from ctsd.exchanges.margin import MarginClient
    from ctsd.wiring.engine_margin import (
        ExchangeMarginAccount,
        ExchangeMarginMarketData,
        MarginLeverage,
    )

    facts = reader or trading or market
    leverage = MarginLeverage(MarginClient(facts))
    terms = ExchangeMarginMarketData(MarginClient(facts), leverage, facts is not market)
    orders = account = None
    if trading is not None:
        orders = ExchangeOrders(trading, now_ms, order_params=leverage.order_params)
        account = ExchangeMarginAccount(MarginClient(trading), leverage)
    return EngineResources(ExchangeMarketData(market, now_ms, MarketKind.MARGIN,
                                              reader or trading), orders, MarketKind.MARGIN,
                           modes, margin_market=terms, margin_account=account)


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
        self._opened: dict[int, Opened] = {}
        """By the identity of the resources handed out: what `close` releases."""
        self._public: SharedPool[ConnectionTarget, ExchangeClient] = SharedPool(
            self._public_client, ExchangeClient.close)
        """One public market-data client per target, shared by every engine on it (a ccxt
        instance per engine would cost a thousand engines gigabytes); with its users."""

    async def _public_client(self, target: ConnectionTarget) -> ExchangeClient:
        return await self._factory.client(target, None, lane=Lane.POLL)

    async def open(self, connection_id: str, mode: TradingMode) -> EngineResources:
        conn = await self._connections.get(connection_id)  # NotFound for an unknown id
        name = f"connections/{connection_id}"
        if not conn.enabled:
            raise FailedPrecondition(f"{name} is disabled; enable it to run an engine")
        if conn.last_test is not None and conn.last_test.status is TestStatus.FAILED:
            raise FailedPrecondition(
                f"the last test of {name} failed ({conn.last_test.message or 'no reason given'}); "
                "test it again once fixed")
        self._check_supported(conn, mode, name)
        if mode is TradingMode.LIVE:
            self._check_live(conn, name)
        target = ConnectionTarget(conn.exchange, conn.api_type, conn.testnet)
        modes = AccountModes(MarginMode(conn.margin_mode.value),
                             conn.position_mode is PositionMode.HEDGE)
        market = await self._public.acquire(target)
        own: tuple[ExchangeClient, ...] = ()
        trading = reader = credentials = None
        try:
            if mode is TradingMode.LIVE:
                trading, credentials = await self._trading_client(conn, target, name)
                own = (trading,)
            else:
                reader = await self._reader(conn, target)
                own = (reader,) if reader else ()
        except BaseException:
            await self._abandon(Opened(target, own, None, None))
            raise
        resources = engine_resources(market, trading, modes, reader)
        opened = Opened(target, own, None, None)
        if self._streams is not None and conn.market_data_method is (
                MarketDataMethod.WEBSOCKET) and self._streams_promised(conn):
            opened, resources = await self._stream(conn, opened, resources, credentials)
        # A dry run (TestEngine) may open more clients while the engine holds its own.
        self._opened[id(resources)] = opened
        return resources

    async def _stream(self, conn: Connection, opened: Opened, resources: EngineResources,
                      credentials: ApiCredentials | None) -> tuple[Opened, EngineResources]:
        """A WebSocket connection's resources: market data and cycles from the hub (a
        margin pair's from the spot book's subscriptions); LIVE spot, margin and
        perpetuals orders and fills by the private stream of the connection's own market
        type, and perpetuals' positions on the same socket, REST reconciling (the position
        check's stream-lag rule and second look tell a stream a moment behind from a real
        difference); margin reads its interest and the venue's own fills over REST."""
        assert self._streams is not None
        streaming = self._streams(public_stream_target(opened.target), resources.market_data)
        opened = replace(opened, streams=streaming)
        orders = resources.orders
        feed = None
        perpetual = resources.kind is MarketKind.PERPETUAL
        if (isinstance(orders, ExchangeOrders) and credentials is not None
                and resources.kind in STREAMED_ORDERS):
            from ctsd.wiring.engine_order_stream import OrderFeed

            reopen = partial(self._factory.order_stream, opened.target, credentials,
                             conn.account_uid)
            convert = None
            if perpetual:
                from ctsd.wiring.engine_perpetual import streamed_position

                convert = partial(streamed_position,
                                  default_mode=resources.modes.margin_mode)
            try:
                feed = OrderFeed(await reopen(), reopen, orders.streamed, streaming.wake,
                                 SystemClock(), convert_position=convert)
            except BaseException:
                await self._abandon(opened)
                raise
            feed.start()
        return replace(opened, orders=feed), replace(
            resources, market_data=streaming, events=streaming, order_updates=feed,
            position_updates=feed if perpetual else None)

    async def _reader(self, conn: Connection, target: ConnectionTarget) -> ExchangeClient | None:
        """PAPER: the connection's key, where it has one, for what the venue tells keys only:
        the account's fee rates, Binance's leverage brackets; None without a usable key."""
        if self._credentials is None or not conn.credentials.api_key_set:
            return None
        try:
            credentials = await self._credentials.resolve(conn)
        except CredentialsUnavailable:
            return None
        return await self._factory.client(target, credentials, lane=Lane.POLL,
                                          account_uid=conn.account_uid)

    def _streams_promised(self, conn: Connection) -> bool:
        """Streams only where `ListExchanges` promises them; elsewhere (options) a
        WebSocket connection's engine polls over REST, as the list's note says."""
        spec = self._factory.registry.get(conn.exchange)
        return spec is not None and spec.support_of(conn.api_type).streams

    def _check_supported(self, conn: Connection, mode: TradingMode, name: str) -> None:
        """What `ListExchanges` does not promise for the connection's api type is refused
        before any client is opened (so before anything could be placed)."""
        spec = self._factory.registry.get(conn.exchange)
        if spec is None:
            raise FailedPrecondition(f"{name}: {conn.exchange} is not supported")
        support = spec.support_of(conn.api_type)
        if not (support.live if mode is TradingMode.LIVE else support.paper):
            why = f" ({support.note})" if support.note else ""
            raise FailedPrecondition(
                f"{name}: {mode.value} engines do not run on {spec.display_name} "
                f"{conn.api_type.value.replace('_', ' ')}{why}; ListExchanges says what works")

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

    async def close(self, connection_id: str, resources: EngineResources) -> None:
        opened = self._opened.pop(id(resources), None)
        if opened is not None:
            await self._abandon(opened)

    async def _abandon(self, opened: Opened) -> None:
        """Release what one `open` handed out."""
        if opened.streams is not None:
            opened.streams.close()
        if opened.orders is not None:
            await opened.orders.close()
        try:
            for client in opened.clients:
                await client.close()
        finally:
            await self._public.release(opened.target)
