"""`ExchangeOrders`: the engine's `ExchangeOrderClient` on one authenticated `ExchangeClient`.

Why a separate adapter: the engine speaks in client order ids and its own
enums (`ctsd.engine.ports`); the exchange layer in ccxt's vocabulary. The
errors need no translating here: the exchange layer already raises the
`ctsd.errors` class the engine's contract names (`ExchangeFailure.of`).

Never placing an order twice: a venue refuses a second order under a client
order id it already holds (Binance -2010, Bybit 170141/110072, OKX 51016,
Kraken "Invalid order"). So a refused placement is checked against the venue
before it is reported as refused: if the id's order exists, that order is the
answer, and a retried placement adopts the first one.

Fees come from the venue: where an order answer does not carry them (Binance's
never does) the order's fills are read from the fill history once per new
filled amount, so PnL is net of what the venue really charged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

from ctsd.engine.orders import OrderStatus, is_engine_order
from ctsd.engine.ports import ExchangeOrder
from ctsd.errors import (
    ClientError,
    Unavailable,
)
from ctsd.exchanges.client import ExchangeClient
from ctsd.exchanges.model import Order
from ctsd.strategies.model import Balance, OrderType, PositionSide, Side

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
        self._fees: dict[tuple[str, Decimal], tuple[Decimal, str]] = {}
        """(order id, filled) → fee read from the fill history."""
        self._cids: dict[str, str] = {}
        """The venue's order id → the engine's client order id, as answers named them."""

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
        answers never do) gets it from its own fills, so the ledger books what the venue
        charged, in the asset it charged it in; read once per new filled amount."""
        if order.fee is not None or not order.filled or not order.id:
            return order
        key = (order.id, order.filled)
        if key not in self._fees:
            found = await self._client.fetch_order_fee(order.id, symbol)
            if found is None:
                return order  # not in the history yet: read again with the next answer
            self._fees[key] = found
        fee, asset = self._fees[key]
        return replace(order, fee=fee, fee_asset=asset)

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
        """The venue's id of an engine order, for stream updates that name only it; the
        oldest forgotten past `_KEEP_IDS` (an engine holds far fewer orders open)."""
        if not exchange_order_id or not is_engine_order(client_order_id):
            return
        self._cids.pop(exchange_order_id, None)
        self._cids[exchange_order_id] = client_order_id
        while len(self._cids) > _KEEP_IDS:
            del self._cids[next(iter(self._cids))]

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
            reduce_only=order.reduce_only)


_KEEP_IDS = 4096
_SIDES = {s.value: s for s in Side}
_TYPES = {t.value: t for t in OrderType}
