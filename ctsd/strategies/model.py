"""What a strategy sees and what it may ask for, as frozen values.

Strategies are pure functions of these types, so every field is immutable
(tuples, not lists or dicts): a strategy cannot keep a reference and mutate the
engine's view, and equal inputs compare equal, which is what the determinism
property tests rely on. Money is `Decimal` throughout: binary floats would make
"the same input gives the same orders" depend on rounding noise.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"


class OrderType(enum.Enum):
    MARKET = "market"
    LIMIT = "limit"


@dataclass(frozen=True, slots=True)
class Ticker:
    """The best prices at one moment; `last` marks positions to market."""

    symbol: str
    bid: Decimal
    ask: Decimal
    last: Decimal
    timestamp_ms: int

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2


@dataclass(frozen=True, slots=True)
class Candle:
    """One closed OHLCV bar; `timestamp_ms` is its open time."""

    timestamp_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True, slots=True)
class MarketInfo:
    """Static facts about a market the engine needs: its assets and its fees.

    Fees are fractions (0.001 is 0.1 %), as the exchange publishes them, so the
    paper broker charges what the live one would pay.
    """

    symbol: str
    base: str
    quote: str
    taker_fee: Decimal
    maker_fee: Decimal


@dataclass(frozen=True, slots=True)
class BookLevel:
    price: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class OrderBookTop:
    """The best levels of a book, best first (bids descending, asks ascending)."""

    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Trade:
    """One public trade on the venue (anyone's), as a print on the tape."""

    price: Decimal
    amount: Decimal
    side: str
    """The taker's side: "buy", "sell", or "" where the venue does not say."""
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class SymbolMarket:
    """Everything known about one symbol this cycle; candles are closed, oldest first.

    `book` and `trades` are filled only for strategies that ask for them
    (`DataNeeds.book_depth`, `DataNeeds.trades`); streams make them cheap."""

    info: MarketInfo
    ticker: Ticker
    candles: tuple[Candle, ...] = ()
    book: OrderBookTop | None = None
    trades: tuple[Trade, ...] = ()


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """The market as of one engine cycle, for every configured symbol."""

    timestamp_ms: int
    symbols: tuple[SymbolMarket, ...]

    def get(self, symbol: str) -> SymbolMarket | None:
        return next((m for m in self.symbols if m.info.symbol == symbol), None)


@dataclass(frozen=True, slots=True)
class Position:
    """Net holding of one symbol's base asset; positive is long."""

    symbol: str
    amount: Decimal
    avg_price: Decimal


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """An order resting at the venue, with the tag of the intent that placed it."""

    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    amount: Decimal
    filled: Decimal
    price: Decimal | None
    tag: str

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str
    free: Decimal
    total: Decimal


@dataclass(frozen=True, slots=True)
class Portfolio:
    """What the engine holds: positions, resting orders and balances."""

    positions: tuple[Position, ...] = ()
    open_orders: tuple[OpenOrder, ...] = ()
    balances: tuple[Balance, ...] = ()

    def position(self, symbol: str) -> Position:
        found = next((p for p in self.positions if p.symbol == symbol), None)
        return found or Position(symbol, Decimal(0), Decimal(0))

    def orders_for(self, symbol: str) -> tuple[OpenOrder, ...]:
        return tuple(o for o in self.open_orders if o.symbol == symbol)

    def free(self, asset: str) -> Decimal:
        found = next((b for b in self.balances if b.asset == asset), None)
        return found.free if found else Decimal(0)


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order the strategy wants placed; the risk check and broker decide its fate.

    `tag` names the intent's purpose deterministically (`grid:BTC/USDT:-2`), so a
    strategy recognises its own resting orders next cycle without keeping state.
    """

    symbol: str
    side: Side
    type: OrderType
    amount: Decimal
    price: Decimal | None
    tag: str


@dataclass(frozen=True, slots=True)
class CancelIntent:
    """A resting order the strategy no longer wants."""

    client_order_id: str
    symbol: str
    tag: str


Intent = OrderIntent | CancelIntent
