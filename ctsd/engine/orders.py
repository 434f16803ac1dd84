"""Orders and fills as the engine records them, and the client order id scheme.

Why deterministic client order ids: an order is written to the store before it
is sent, under an id derived from (engine id, cycle, intent index). If the send
times out, or the daemon dies between send and acknowledgement, the retry asks
the exchange for that id first and adopts what it finds instead of placing a
second order. The id is `cts` + engine id + `c` + cycle (hex) + `i` + index:
alphanumeric and short enough for every first-class venue (OKX allows 32
alphanumerics, Binance and Bybit 36 characters).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from decimal import Decimal

from ctsd.strategies.model import OpenOrder, OrderType, PositionSide, Side

ENGINE_ID_PATTERN = re.compile(r"^[a-z0-9]{4,12}$")


def client_order_id(engine_id: str, cycle: int, index: int) -> str:
    """The one id an intent may ever be placed under."""
    return f"cts{engine_id}c{cycle:x}i{index}"


_CLIENT_ID = re.compile(r"^cts[a-z0-9]{4,12}c[0-9a-f]+i[0-9]+$")


def is_engine_order(client_id: str) -> bool:
    """Whether an order found at the venue was placed by a ctsd engine (any run)."""
    return bool(_CLIENT_ID.match(client_id))


class OrderStatus(enum.Enum):
    PENDING = "pending"
    """Recorded, not yet acknowledged by the venue: reconciliation must resolve it."""
    OPEN = "open"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"

    @property
    def is_final(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED)


@dataclass(frozen=True, slots=True)
class OrderTerms:
    """What an order asks for, under the one client order id it may be placed with: the
    request carries them to the broker and the order's record keeps them."""

    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    amount: Decimal
    price: Decimal | None
    tag: str
    cycle: int


@dataclass(frozen=True, slots=True)
class OrderRequest(OrderTerms):
    """An intent that passed the risk check, bound to its client order id."""

    reduce_only: bool = False
    position_side: PositionSide = PositionSide.BOTH
    """The position the order trades: BOTH on spot and one-way accounts, LONG or SHORT
    on a hedge-mode account (resolved by the engine before the request is made)."""
    closes: bool = False
    """A reduce-only order for the whole of the position (the ledger's): a spot-margin
    broker closes a whole short by all it owes where the venue does so
    (`LendingTerms.close_by_liability`), which may be more than `amount`."""


@dataclass(frozen=True, slots=True)
class Order(OrderTerms):
    """The engine's record of one order; replaced, never mutated, as it progresses."""

    status: OrderStatus
    filled: Decimal = Decimal(0)
    average_price: Decimal | None = None
    fee: Decimal = Decimal(0)
    """Cumulative fee, in the fee asset of the order's fills."""
    exchange_order_id: str = ""
    reason: str = ""
    created_ms: int = 0
    updated_ms: int = 0
    reduce_only: bool = False
    position_side: PositionSide = PositionSide.BOTH

    @classmethod
    def pending(cls, request: OrderRequest, now_ms: int) -> Order:
        return cls(request.client_order_id, request.symbol, request.side, request.type,
                   request.amount, request.price, request.tag, request.cycle,
                   OrderStatus.PENDING, created_ms=now_ms, updated_ms=now_ms,
                   reduce_only=request.reduce_only, position_side=request.position_side)

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled

    def as_open_order(self) -> OpenOrder:
        return OpenOrder(self.client_order_id, self.symbol, self.side, self.type,
                         self.amount, self.filled, self.price, self.tag, self.reduce_only,
                         self.position_side)


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution: `trade_id` is unique per engine so recording it twice is harmless."""

    trade_id: str
    client_order_id: str
    symbol: str
    side: Side
    amount: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str
    timestamp_ms: int
    maker: bool = False
    position_side: PositionSide = PositionSide.BOTH
    """The position the fill moved (its order's)."""


@dataclass(frozen=True, slots=True)
class Execution:
    """What a broker call did to one order: its new state and any fills it produced."""

    order: Order
    fills: tuple[Fill, ...] = ()
