"""`ExchangeOrders`: the engine's `ExchangeOrderClient` on one authenticated `ExchangeClient`.

Why a separate adapter: the engine speaks in client order ids, its own enums
and its error contract (`ctsd.engine.ports`); the exchange layer speaks in
ccxt's vocabulary and `ExchangeFailure`s. This module is the one place the two
meet, and `engine_error` the one place a failure is sorted for the engine:

    ORDER_NOT_FOUND rejection            → NotFound            (cancel: nothing open)
    RATE_LIMITED                         → ResourceExhausted   (retry later)
    NETWORK, TIMEOUT, MAINTENANCE        → ExchangeUnavailable (retry later)
    any other order rejection (funds,
      size, symbol, duplicate id)        → FailedPrecondition  (the venue refused it)
    EXCHANGE_ERROR without a rejection   → ExchangeUnavailable (a garbled or unexplained
                                           answer: the call may have reached the venue,
                                           so the broker must ask again, never give up)
    AUTHENTICATION, PERMISSION, IP,
      CLOCK_SKEW                         → FailedPrecondition  (the operator must act)

Never placing an order twice: a venue refuses a second order under a client
order id it already holds (Binance -2010, Bybit 170141/110072, OKX 51016,
Kraken "Invalid order"). So a refused placement is checked against the venue
before it is reported as refused: if the id's order exists, that order is the
answer, and a retried placement adopts the first one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

from ctsd.engine.orders import OrderStatus
from ctsd.engine.ports import ExchangeOrder
from ctsd.errors import (
    ClientError,
    CtsError,
    ExchangeUnavailable,
    FailedPrecondition,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from ctsd.exchanges.client import ExchangeClient
from ctsd.exchanges.errors import ExchangeFailure, FailureClass, OrderRejection
from ctsd.exchanges.model import Order
from ctsd.strategies.model import Balance, OrderType, Side

_STATUS = {
    "open": OrderStatus.OPEN,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "expired": OrderStatus.CANCELED,
    "rejected": OrderStatus.REJECTED,
}
_TRANSIENT = frozenset({FailureClass.NETWORK, FailureClass.TIMEOUT, FailureClass.MAINTENANCE})


def engine_error(exc: ExchangeFailure) -> CtsError:
    """The engine-contract error for an exchange failure (see the module docstring)."""
    if exc.rejection is OrderRejection.ORDER_NOT_FOUND:
        return NotFound(exc.message)
    if exc.failure is FailureClass.RATE_LIMITED:
        return ResourceExhausted(exc.message)
    if exc.failure in _TRANSIENT:
        return ExchangeUnavailable(exc.message)
    if exc.rejection is not None:  # the order's record keeps why, in words
        return FailedPrecondition(f"{exc.rejection.value.replace('_', ' ')}: {exc.message}")
    if exc.failure is FailureClass.EXCHANGE_ERROR:
        return ExchangeUnavailable(exc.message)
    return FailedPrecondition(f"{exc.message} ({exc.remedy})")


@contextlib.contextmanager
def engine_errors() -> Iterator[None]:
    try:
        yield
    except ExchangeFailure as exc:
        raise engine_error(exc) from exc


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
            with engine_errors():
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
        with engine_errors():
            canceled = await self._client.cancel_order_by_client_id(client_order_id, symbol)
        return self._engine_order(canceled, client_order_id)

    async def fetch_order(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        with engine_errors():
            found = await self._client.fetch_order_by_client_id(client_order_id, symbol)
        return None if found is None else self._engine_order(found, client_order_id)

    async def fetch_open_orders(self, symbol: str) -> tuple[ExchangeOrder, ...]:
        """Open orders that carry a client order id and a type the engine places; others
        (placed by hand, stop orders) are none of the engine's business."""
        with engine_errors():
            listed = await self._client.fetch_open_orders(symbol)
        return tuple(self._engine_order(o, o.client_id) for o in listed
                     if o.client_id and o.type in _TYPES and o.side in _SIDES)

    async def fetch_balance(self) -> tuple[Balance, ...]:
        with engine_errors():
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
