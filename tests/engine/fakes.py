"""Injected fakes for engine tests: scripted market data, an in-memory store, a backend,
and an in-memory exchange order client (time: `tests.support.virtual_clock`).

They implement the engine's ports (`ctsd.engine.*_ports`, `backend`) exactly as
the daemon's real implementations will, so tests never patch engine code.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TypeVar

from ctsd.engine.backend import EngineResources
from ctsd.engine.config import TradingMode
from ctsd.engine.lease_ports import Fence
from ctsd.engine.order_ports import ExchangeOrder
from ctsd.engine.orders import Execution, Fill, Order, OrderStatus
from ctsd.engine.perpetual import FundingPayment
from ctsd.engine.store_ports import DesiredState, EngineRecord, Page
from ctsd.engine.wakes import Bands, quiet
from ctsd.errors import CtsError, ExchangeUnavailable, FailureClass, NotFound, Unavailable
from ctsd.strategies.base import DataNeeds
from ctsd.strategies.model import (
    Balance,
    BookLevel,
    Candle,
    MarketInfo,
    MarketSnapshot,
    OrderBookTop,
    OrderType,
    PositionSide,
    Side,
    Ticker,
    Trade,
)
from tests.support.virtual_clock import VirtualClock

T = TypeVar("T")
def info(symbol: str = "BTC/USDT", taker: str = "0.001", maker: str = "0.0005") -> MarketInfo:
    base, quote = symbol.split("/")
    return MarketInfo(symbol, base, quote.split(":")[0], Decimal(taker), Decimal(maker))


class ScriptedMarket:
    """Market data from fixed close series; candle `k` closes at `k * candle_s` on the clock.

    The ticker's last equals the latest close, with `spread` around it, so a test
    knows every price the engine will see at every virtual moment.
    """

    def __init__(self, clock: VirtualClock, closes: dict[str, Sequence[Decimal]],
                 candle_s: float = 60.0, spread: Decimal = Decimal(0)) -> None:
        self._clock = clock
        self._closes = {s: list(c) for s, c in closes.items()}
        self._candle_s = candle_s
        self._spread = spread
        self.failures: dict[str, int] = {}
        """Calls to fail next, by method name ("ticker", "market", "candles")."""
        self.calls: list[str] = []

    def _fail(self, method: str) -> None:
        self.calls.append(method)
        if self.failures.get(method, 0) > 0:
            self.failures[method] -= 1
            raise Unavailable(f"{method} unavailable")

    def index(self) -> int:
        """How many candles have closed so far (at least one)."""
        return max(1, int(self._clock.monotonic() // self._candle_s) + 1)

    async def market(self, symbol: str) -> MarketInfo:
        self._fail("market")
        return info(symbol)

    async def ticker(self, symbol: str) -> Ticker:
        self._fail("ticker")
        closes = self._closes[symbol]
        last = closes[min(self.index(), len(closes)) - 1]
        half = self._spread / 2
        return Ticker(symbol, last - half, last + half, last, self._clock.now_ms())

    async def candles(self, symbol: str, timeframe: str, limit: int) -> tuple[Candle, ...]:
        self._fail("candles")
        closes = self._closes[symbol][: self.index()]
        start = max(0, len(closes) - limit)
        return tuple(Candle(i * 60_000, c, c, c, c, Decimal(1))
                     for i, c in enumerate(closes[start:], start))

    async def order_book(self, symbol: str, depth: int) -> OrderBookTop:
        """`depth` levels a tick apart around the ticker, one unit each."""
        self._fail("order_book")
        ticker = await self.ticker(symbol)
        tick = Decimal("0.01")
        return OrderBookTop(
            tuple(BookLevel(ticker.bid - i * tick, Decimal(1)) for i in range(depth)),
            tuple(BookLevel(ticker.ask + i * tick, Decimal(1)) for i in range(depth)),
            self._clock.now_ms())

    async def trades(self, symbol: str, limit: int) -> tuple[Trade, ...]:
        """One trade at each closed candle's close, the latest `limit`."""
        self._fail("trades")
        return tuple(Trade(c.close, Decimal(1), "buy", c.timestamp_ms)
                     for c in await self.candles(symbol, "1m", limit))


class ScriptedEvents:
    """`MarketEvents` a test fires by hand on the virtual clock (`push`, or `tick`: a
    ticker change the engine's quiet bands filter as the hub's client does), with a
    stream health it sets (`streaming`, `problem`)."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._wake = asyncio.Event()
        self._first: float | None = None
        self.followed: list[tuple[tuple[str, ...], DataNeeds]] = []
        self.streaming = True
        self.problem = ""
        self.fallbacks = 0
        self.closed = 0
        self.wakes: list[float] = []
        self.bands: Bands = {}
        self.until = math.inf
        self.quiet_events = 0

    def follow(self, symbols: tuple[str, ...], needs: DataNeeds) -> None:
        self.followed.append((symbols, needs))
        self.push()  # as the hub's client does: the first cycle runs at once

    def push(self) -> None:
        if self._first is None:
            self._first = self._clock.monotonic()
        self._wake.set()

    def interrupt(self) -> None:
        self._wake.set()

    def wake_after(self, delay_s: float) -> None:
        self.wakes.append(delay_s)  # the test's virtual clock decides when it is due

    def quiet(self, bands: Bands, until: float) -> None:
        self.bands, self.until = bands, until

    def tick(self, symbol: str, ticker: Ticker) -> bool:
        """A ticker change: an event unless inside the bands (counted); whether it woke."""
        if self.until > self._clock.monotonic() and quiet(self.bands, symbol, ticker):
            self.quiet_events += 1
            return False
        self.push()
        return True

    def snapshot_now(self, infos: Mapping[str, MarketInfo], needs: DataNeeds, now_ms: int,
                     ) -> MarketSnapshot | None:
        self.bands = {}
        return None  # the engine reads the scripted market through its source

    async def next_event(self, timeout_s: float) -> float | None:
        if self._first is None:
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            sleeper = asyncio.ensure_future(self._clock.sleep(timeout_s))
            try:
                await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                sleeper.cancel()
            if self._first is None:
                return None
        first, self._first = self._first, None
        return first

    def close(self) -> None:
        self.closed += 1


class MemoryStore:
    """An in-memory `EngineStore`, with a history of every saved execution for assertions."""

    def __init__(self) -> None:
        self.engines: dict[str, EngineRecord] = {}
        self.orders: dict[str, dict[str, Order]] = {}
        self.fills: dict[str, dict[str, Fill]] = {}
        self.funding: dict[str, dict[str, FundingPayment]] = {}
        self.history: list[tuple[str, OrderStatus]] = []
        self.fail_list_orders = False

    async def load_engines(self) -> list[EngineRecord]:
        return [self.engines[c] for c in sorted(self.engines)]

    async def load_engine(self, connection_id: str) -> EngineRecord | None:
        return self.engines.get(connection_id)

    async def create_engine(self, record: EngineRecord) -> None:
        self.engines[record.connection_id] = record

    async def set_desired(self, connection_id: str, desired: DesiredState,
                          last_error: str, fence: Fence | None = None) -> None:
        record = self.engines[connection_id]
        self.engines[connection_id] = replace(record, desired=desired, last_error=last_error)

    async def save_cycle(self, connection_id: str, cycle: int,
                         fence: Fence | None = None) -> None:
        self.engines[connection_id] = replace(self.engines[connection_id], cycle=cycle)

    async def save_execution(self, connection_id: str, execution: Execution,
                             fence: Fence | None = None) -> None:
        order = execution.order
        self.orders.setdefault(connection_id, {})[order.client_order_id] = order
        record = self.engines.get(connection_id)
        if order.status is OrderStatus.PENDING and record is not None:
            self.engines[connection_id] = replace(record, cycle=max(record.cycle, order.cycle))
        self.history.append((order.client_order_id, order.status))
        fills = self.fills.setdefault(connection_id, {})
        for fill in execution.fills:
            fills.setdefault(fill.trade_id, fill)

    async def save_executions(self, connection_id: str, executions: Sequence[Execution],
                              fence: Fence | None = None) -> None:
        for execution in executions:
            await self.save_execution(connection_id, execution, fence)

    async def list_orders(self, connection_id: str, *, open_only: bool = False) -> list[Order]:
        if self.fail_list_orders:
            raise Unavailable("store is down")
        orders = sorted(self.orders.get(connection_id, {}).values(), key=lambda o: o.created_ms)
        return [o for o in orders if not (open_only and o.status.is_final)]

    async def count_orders(self, connection_id: str, id_prefix: str) -> int:
        return sum(cid.startswith(id_prefix) for cid in self.orders.get(connection_id, {}))

    async def list_fills(self, connection_id: str) -> list[Fill]:
        return list(self.fills.get(connection_id, {}).values())

    async def save_funding(self, connection_id: str, payments: tuple[FundingPayment, ...],
                           fence: Fence | None = None) -> None:
        stored = self.funding.setdefault(connection_id, {})
        for payment in payments:
            stored.setdefault(payment.funding_id, payment)

    async def list_funding(self, connection_id: str) -> list[FundingPayment]:
        return list(self.funding.get(connection_id, {}).values())

    async def page_orders(self, connection_id: str, *, open_only: bool, after: int,
                          limit: int) -> Page[Order]:
        orders = self.orders.get(connection_id, {}).values()
        return _page([(i, o) for i, o in enumerate(orders, 1)
                      if i > after and not (open_only and o.status.is_final)], limit)

    async def page_fills(self, connection_id: str, *, after: int, limit: int) -> Page[Fill]:
        fills = self.fills.get(connection_id, {}).values()
        return _page([(i, f) for i, f in enumerate(fills, 1) if i > after], limit)


def _page(rows: list[tuple[int, T]], limit: int) -> Page[T]:
    """Positions are the 1-based order of first storage, as the SQL store's `seq`."""
    shown = rows[:limit]
    return Page(tuple(x for _, x in shown), shown[-1][0] if len(rows) > limit else None)


@dataclass
class FakeBackend:
    """Hands out one market per connection; `refuse` maps a connection to the error to raise."""

    markets: dict[str, ScriptedMarket]
    exchanges: dict[str, FakeExchange] = field(default_factory=dict)
    refuse: dict[str, CtsError] = field(default_factory=dict)
    opened: list[tuple[str, TradingMode]] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    events: dict[str, ScriptedEvents] = field(default_factory=dict)
    """Connections on WebSockets: their market events drive the engine."""

    async def open(self, connection_id: str, mode: TradingMode) -> EngineResources:
        if connection_id in self.refuse:
            raise self.refuse[connection_id]
        self.opened.append((connection_id, mode))
        return EngineResources(self.markets[connection_id], self.exchanges.get(connection_id),
                               events=self.events.get(connection_id))

    async def close(self, connection_id: str, resources: EngineResources) -> None:
        self.closed.append(connection_id)


class FakeExchange:
    """An in-memory `ExchangeOrderClient`: orders by client id, fills only when told to.

    `lose_next_reply` accepts the next order and then raises (a timeout after the
    venue acted); `refuse_next` raises before acting. `calls` records every method.
    """

    def __init__(self, balances: tuple[Balance, ...] = ()) -> None:
        self.orders: dict[str, ExchangeOrder] = {}
        self.calls: list[str] = []
        self.lose_next_reply = False
        self.refuse_next: CtsError | None = None
        self.fail_fetch = False
        self._balances = balances
        self._ids = itertools.count(1)

    async def create_order(self, symbol: str, type: OrderType, side: Side, amount: Decimal,
                           price: Decimal | None, client_order_id: str, *,
                           reduce_only: bool = False,
                           position_side: PositionSide = PositionSide.BOTH) -> ExchangeOrder:
        self.calls.append("create_order")
        if self.refuse_next is not None:
            error, self.refuse_next = self.refuse_next, None
            raise error
        order = ExchangeOrder(client_order_id, str(next(self._ids)), symbol, side, type, amount,
                              price, OrderStatus.OPEN, Decimal(0), None, Decimal(0), "USDT", 0)
        self.orders[client_order_id] = order
        if self.lose_next_reply:
            self.lose_next_reply = False
            raise Unavailable("request timed out")
        return order

    def fill(self, client_order_id: str, amount: Decimal, price: Decimal,
             fee: Decimal = Decimal(0)) -> None:
        """The venue fills `amount` more of the order at `price`."""
        order = self.orders[client_order_id]
        filled = order.filled + amount
        average = ((order.average or Decimal(0)) * order.filled + price * amount) / filled
        status = OrderStatus.FILLED if filled >= order.amount else OrderStatus.OPEN
        self.orders[client_order_id] = replace(order, filled=filled, average=average,
                                               fee=order.fee + fee, status=status)

    async def cancel_order(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        self.calls.append("cancel_order")
        order = self.orders.get(client_order_id)
        if order is None or order.status is not OrderStatus.OPEN:
            raise NotFound(f"no open order {client_order_id}")
        self.orders[client_order_id] = replace(order, status=OrderStatus.CANCELED)
        return self.orders[client_order_id]

    async def fetch_order(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        self.calls.append("fetch_order")
        if self.fail_fetch:
            raise ExchangeUnavailable(FailureClass.MAINTENANCE, "exchange in maintenance")
        return self.orders.get(client_order_id)

    async def fetch_open_orders(self, symbol: str) -> tuple[ExchangeOrder, ...]:
        self.calls.append("fetch_open_orders")
        if self.fail_fetch:
            raise ExchangeUnavailable(FailureClass.MAINTENANCE, "exchange in maintenance")
        return tuple(o for o in self.orders.values()
                     if o.symbol == symbol and o.status is OrderStatus.OPEN)

    async def fetch_balance(self) -> tuple[Balance, ...]:
        self.calls.append("fetch_balance")
        if self.fail_fetch:
            raise ExchangeUnavailable(FailureClass.MAINTENANCE, "exchange in maintenance")
        return self._balances
