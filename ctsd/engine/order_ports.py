"""A LIVE engine's orders at the venue: the order client, its stream, and the orders
they answer with.

Why a module of its own: every LIVE broker, whatever the market kind, places and
follows orders through these, and the wiring's order adapters
(`ctsd.wiring.engine_orders`, `ctsd.wiring.engine_order_stream`) translate ccxt's
answers into `ExchangeOrder`, importing this module alone. Errors as every engine port
raises them (`ctsd.engine`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from ctsd.engine.orders import OrderStatus
from ctsd.strategies.model import Balance, OrderType, PositionSide, Side


@dataclass(frozen=True, slots=True)
class OrderTrade:
    """One of an order's trades as the venue numbered it: its amount and its own fee."""

    trade_id: str
    amount: Decimal
    fee: Decimal
    fee_asset: str


@dataclass(frozen=True, slots=True)
class ExchangeOrder:
    """An order as the venue reports it, already translated from ccxt's dict.

    `status` uses the engine's vocabulary: OPEN, FILLED ("closed"), CANCELED
    (also "expired"), REJECTED. `filled`, `average` and `fee` are cumulative.
    """

    client_order_id: str
    exchange_order_id: str
    symbol: str
    side: Side
    type: OrderType
    amount: Decimal
    price: Decimal | None
    status: OrderStatus
    filled: Decimal
    average: Decimal | None
    fee: Decimal
    fee_asset: str
    timestamp_ms: int
    reduce_only: bool = False
    position_side: PositionSide = PositionSide.BOTH
    trades: tuple[OrderTrade, ...] | None = None
    """None: `fee` is the venue's own cumulative fee (Bybit `cumExecFee`, OKX `fee`,
    Kraken `fee_usd_equiv`). Otherwise the venue reports only each trade's fee (Binance)
    and these are the order's trades the reader saw, `fee` their sum: every trade when
    their amounts add up to `filled` (REST reads the order's own fills), else some (a
    stream message lost, a fresh cache after a resubscribe): see `ctsd.engine.brokers.fees`."""


class ExchangeOrderClient(Protocol):
    """Order calls for one connection; every order carries the engine's client order id."""

    async def create_order(
        self, symbol: str, type: OrderType, side: Side, amount: Decimal,
        price: Decimal | None, client_order_id: str, *, reduce_only: bool = False,
        position_side: PositionSide = PositionSide.BOTH,
    ) -> ExchangeOrder:
        """`reduce_only` and `position_side` concern perpetuals: the client sends them as
        its venue names them (and the margin mode where the venue takes it per order)."""
        ...

    async def cancel_order(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        """The order after cancelling; `ctsd.errors.NotFound` if the venue has no open order
        under that id (unknown, or already filled)."""
        ...

    async def fetch_order(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        """The order, or None when the venue has never seen this client order id."""
        ...

    async def fetch_open_orders(self, symbol: str) -> tuple[ExchangeOrder, ...]: ...

    async def fetch_balance(self) -> tuple[Balance, ...]: ...


class OrderUpdates(Protocol):
    """A LIVE connection's private order stream, as the broker reads it.

    `drain` hands over every update received since the last call, oldest first, and
    whether the stream had a gap meanwhile (a reconnect, a failed login, a stall):
    after a gap the broker reconciles over REST, since updates may have been missed."""

    def drain(self) -> tuple[list[ExchangeOrder], bool]: ...

    @property
    def gap(self) -> bool:
        """A gap happened since the last `drain` (what `drain` will say)."""
        ...

    @property
    def live(self) -> bool: ...

    @property
    def problem(self) -> str:
        """Why the stream is not live; a refused login names the venue's reason."""
        ...

    @property
    def refused(self) -> bool:
        """The venue refused the login: retrying will not help, the key must be fixed."""
        ...

    def suspect(self) -> None:
        """An update the broker expected never came: resubscribe (a gap follows)."""
        ...
