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
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

from ctsd.engine.orders import OrderStatus
from ctsd.engine.ports import ExchangeOrder
from ctsd.errors import (
    ClientError,
    Unavailable,
)
from ctsd.exchanges.client import ExchangeClient
from ctsd.exchanges.model import Order
from ctsd.strategies.model import Balance, OrderType, Side

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
                 now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self._client = client
        self._now_ms = now_ms

    async def create_order(
        self, symbol: str, type: OrderType, side: Side, amount: Decimal,
        price: Decimal | None, client_order_id: str,
    ) -> ExchangeOrder:
        try:
            placed = await self._client.create_order(
                symbol, side.value, type.value, amount, price, client_id=client_order_id)
        except ClientError:
            existing = await self.fetch_order(symbol, client_order_id)
            if existing is not None:  # refused as a duplicate: the first placement stands
                return existing
            raise
        # Bybit, OKX and Kraken acknowledge with the id alone: accepted means open.
        return self._engine_order(placed, client_order_id, default=OrderStatus.OPEN)

    async def cancel_order(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        canceled = await self._client.cancel_order_by_client_id(client_order_id, symbol)
        return self._engine_order(canceled, client_order_id)

    async def fetch_order(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        found = await self._client.fetch_order_by_client_id(client_order_id, symbol)
        return None if found is None else self._engine_order(found, client_order_id)

    async def fetch_open_orders(self, symbol: str) -> tuple[ExchangeOrder, ...]:
        """Open orders that carry a client order id and a type the engine places; others
        (placed by hand, stop orders) are none of the engine's business."""
        listed = await self._client.fetch_open_orders(symbol)
        return tuple(self._engine_order(o, o.client_id) for o in listed
                     if o.client_id and o.type in _TYPES and o.side in _SIDES)

    def streamed(self, order: Order) -> ExchangeOrder | None:
        """An order update from the private stream, if it is one of the engine's kind."""
        if not order.client_id or order.type not in _TYPES or order.side not in _SIDES:
            return None
        try:
            return self._engine_order(order, order.client_id)
        except Unavailable:
            return None  # a status the engine does not track (e.g. ccxt's None on a new one)

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
        return ExchangeOrder(
            client_order_id=order.client_id or client_order_id,
            exchange_order_id=order.id, symbol=order.symbol, side=_SIDES[order.side],
            type=_TYPES[order.type], amount=order.amount if order.amount is not None else filled,
            price=order.price, status=status, filled=filled,
            average=order.average or None, fee=order.fee or Decimal(0),
            fee_asset=order.fee_asset or "", timestamp_ms=order.timestamp_ms or self._now_ms())


_SIDES = {s.value: s for s in Side}
_TYPES = {t.value: t for t in OrderType}
