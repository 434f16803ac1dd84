"""`ExchangeOrders`: the engine's `ExchangeOrderClient` on one authenticated `ExchangeClient`.

Why a separate adapter: the engine speaks in client order ids and its own
enums (`ctsd.engine.order_ports`); the exchange layer in ccxt's vocabulary. The
errors need no translating here: the exchange layer already raises the
`ctsd.errors` class the engine's contract names (`ExchangeFailure.of`).

Never placing an order twice: a venue refuses a second order under a client
order id it already holds (Binance -2010, Bybit 170141/110072, OKX 51016,
Kraken "Invalid order"). So a refused placement is checked against the venue
before it is reported as refused: if the id's order exists, that order is the
answer, and a retried placement adopts the first one.

Fees come from the venue: where an order answer does not carry them (Binance's
never does) the order's fills are read from the fill history once per new
filled amount, so PnL is net of what the venue really charged, and the order
carries those trades (`ExchangeOrder.trades`): the broker books each trade's fee
once, by trade id, whichever path (REST or the stream) reported it first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

from ctsd.engine.order_ports import ExchangeOrder, OrderTrade
from ctsd.engine.orders import OrderStatus, is_engine_order
from ctsd.errors import (
    ClientError,
    Unavailable,
)
from ctsd.exchanges import answers
from ctsd.exchanges.client import ExchangeClient
from ctsd.exchanges.model import Order, Trade
from ctsd.lru import LruCache
from ctsd.strategies.model import Balance, OrderType, PositionSide, Side

TRADES_KEPT = 1024
"""Orders whose fills `ExchangeOrders` keeps: far more than an engine has open at once."""
IDS_KEPT = 4096
"""Venue order ids `ExchangeOrders` maps back to client order ids."""

_STATUS = {
    "open": OrderStatus.OPEN,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "expired": OrderStatus.CANCELED,
    "rejected": OrderStatus.REJECTED,
}


class ExchangeOrders:
    """`ExchangeOrderClient` for one connection; the caller owns (and closes) `client`."""

    def __init__(self, client: ExchangeClient,
                 now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000, *,
                 margin_mode: str | None = None,
                 order_params: Callable[[str], Mapping[str, Any]] | None = None) -> None:
        self._client = client
        self._now_ms = now_ms
        self._margin_mode = margin_mode
        """Perpetuals: the connection's margin mode, sent where the venue takes it per order."""
        self._order_params = order_params
        """Per symbol, what the market's orders add as the venue names it (spot margin's
        borrowing and repaying, which also decides what reduces: reduce-only is not sent)."""
        self._trades: LruCache[tuple[str, Decimal], tuple[Trade, ...]] = LruCache(TRADES_KEPT)
        """(order id, filled) → the order's trades read from the fill history, once they
        account for all of `filled`; the `TRADES_KEPT` last used."""
        self._cids: LruCache[str, str] = LruCache(IDS_KEPT)
        """The venue's order id → the engine's client order id, as answers named them; the
        `IDS_KEPT` last used (an engine holds far fewer orders open)."""

    async def create_order(
        self, symbol: str, type: OrderType, side: Side, amount: Decimal,
        price: Decimal | None, client_order_id: str, *, reduce_only: bool = False,
        position_side: PositionSide = PositionSide.BOTH,
    ) -> ExchangeOrder:
        leg = None if position_side is PositionSide.BOTH else position_side.value
        extra = self._order_params(symbol) if self._order_params else None
        try:
            placed = await self._client.create_order(
                symbol, side.value, type.value, amount, price, client_id=client_order_id,
                reduce_only=reduce_only and extra is None, leg=leg,
                margin_mode=self._margin_mode, extra_params=extra)
        except ClientError:
            existing = await self.fetch_order(symbol, client_order_id)
            if existing is not None:  # refused as a duplicate: the first placement stands
                return existing
            raise
        if placed.status is None and type is OrderType.MARKET:
            # Bybit, OKX and Kraken acknowledge with the id alone; a market order has
            # filled by now, and the engine books it this cycle rather than the next.
            found = await self.fetch_order(symbol, client_order_id)
            if found is not None:
                return found
        # Acknowledged with the id alone: accepted means open.
        return self._engine_order(await self._with_fee(placed, symbol), client_order_id,
                                  default=OrderStatus.OPEN)

    async def cancel_order(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        canceled = await self._client.cancel_order_by_client_id(client_order_id, symbol)
        return self._engine_order(await self._with_fee(canceled, symbol), client_order_id)

    async def fetch_order(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        found = await self._client.fetch_order_by_client_id(client_order_id, symbol)
        if found is None:
            return None
        return self._engine_order(await self._with_fee(found, symbol), client_order_id)

    async def fetch_open_orders(self, symbol: str) -> tuple[ExchangeOrder, ...]:
        """Open orders that carry a client order id and a type the engine places; others
        (placed by hand, stop orders) are none of the engine's business."""
        listed = await self._client.fetch_open_orders(symbol)
        found = []
        for order in listed:
            if order.client_id and order.type in _TYPES and order.side in _SIDES:
                found.append(self._engine_order(await self._with_fee(order, symbol),
                                                order.client_id))
        return tuple(found)

    async def _with_fee(self, order: Order, symbol: str) -> Order:
        """An order that filled but whose answer names no fee (Binance's query and cancel
        answers never do) gets its own fills, and their fee, so the ledger books what the
        venue charged, in the asset it charged it in; read once per new filled amount
        (again while the history lags the order: the broker waits for what it lacks)."""
        if order.fee is not None or not order.filled or not order.id:
            return order
        key = (order.id, order.filled)
        trades = self._trades.get(key)
        if trades is None:
            trades = tuple(await self._client.fetch_order_trades(order.id, symbol))
            if sum((t.amount for t in trades), Decimal(0)) == order.filled:
                self._trades.put(key, trades)
        return answers.with_trades(order, trades)

    def streamed(self, order: Order) -> ExchangeOrder | None:
        """An order update from the private stream, if it is one of the engine's kind.

        Its client order id is the stream's, or else the one this client placed or read the
        venue's order id under: ccxt.pro's Kraken names `order_userref` (0) the client id,
        and Kraken's later execution messages carry only the venue's order id."""
        cid = order.client_id if order.client_id and is_engine_order(order.client_id) else (
            self._cids.get(order.id))
        if not cid or order.type not in _TYPES or order.side not in _SIDES:
            return None
        try:
            return self._engine_order(replace(order, client_id=cid), cid)
        except Unavailable:
            return None  # a status the engine does not track (e.g. ccxt's None on a new one)

    def _remember(self, exchange_order_id: str, client_order_id: str) -> None:
        """The venue's id of an engine order, for stream updates that name only it."""
        if exchange_order_id and is_engine_order(client_order_id):
            self._cids.put(exchange_order_id, client_order_id)

    async def fetch_balance(self) -> tuple[Balance, ...]:
        holdings = await self._client.fetch_holdings()
        return tuple(Balance(h.asset, h.free, h.total) for h in holdings)

    def _engine_order(self, order: Order, client_order_id: str,
                      default: OrderStatus | None = None) -> ExchangeOrder:
        status = _STATUS.get(order.status or "") if order.status else default
        if status is None or order.side not in _SIDES or order.type not in _TYPES:
            raise Unavailable(
                f"{self._client.target.exchange} answered order {client_order_id} with "
                f"status {order.status!r}, side {order.side!r}, type {order.type!r}")
        filled = order.filled or Decimal(0)
        self._remember(order.id, order.client_id or client_order_id)
        return ExchangeOrder(
            client_order_id=order.client_id or client_order_id,
            exchange_order_id=order.id, symbol=order.symbol, side=_SIDES[order.side],
            type=_TYPES[order.type], amount=order.amount if order.amount is not None else filled,
            price=order.price, status=status, filled=filled,
            average=order.average or None, fee=order.fee or Decimal(0),
            fee_asset=order.fee_asset or "", timestamp_ms=order.timestamp_ms or self._now_ms(),
            reduce_only=order.reduce_only,
            trades=None if order.trades is None else tuple(
                OrderTrade(t.id, t.amount, t.fee, t.fee_asset) for t in order.trades))


_SIDES = {s.value: s for s in Side}
_TYPES = {t.value: t for t in OrderType}
