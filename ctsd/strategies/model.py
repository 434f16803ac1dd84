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


class MarketKind(enum.Enum):
    """What a symbol trades: spot holds the base asset; a perpetual holds a position that
    may be short, margined in the quote asset; spot margin borrows what an order lacks (a
    sell of more than is held borrows the base: a short); an option is a contract on an
    underlying that settles in cash at its expiry."""

    SPOT = "spot"
    PERPETUAL = "perpetual"
    MARGIN = "margin"
    OPTION = "option"


class PositionSide(enum.Enum):
    """Which position an order trades: BOTH is the one net position of a one-way account;
    LONG and SHORT are the two legs of a hedge-mode account."""

    BOTH = "both"
    LONG = "long"
    SHORT = "short"


@dataclass(frozen=True, slots=True)
class Funding:
    """A perpetual's funding terms as the venue announces them: the `rate` paid at
    `next_time_ms` (longs pay a positive rate), and the mark price positions are valued at
    (None where the venue's answer has none: the last price stands in)."""

    rate: Decimal
    next_time_ms: int
    mark: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Ticker:
    """The best prices at one moment; `last` marks positions to market."""

    symbol: str
    bid: Decimal
    ask: Decimal
    last: Decimal
    timestamp_ms: int
    underlying: Decimal | None = None
    """Options: the underlying's price quoted with the contract (None where not quoted)."""
    mark: Decimal | None = None
    """Perpetuals: the venue's mark price where its ticker carries it (Bybit), else None."""

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
    kind: MarketKind = MarketKind.SPOT
    amount_step: Decimal | None = None
    """The venue's lot size in base units: it cuts every order amount down to a multiple."""
    buy_fee_in_base: bool = False
    """A buy pays its fee in `base`, out of what it receives (Binance, Bybit, OKX spot)."""
    price_step: Decimal | None = None
    """The venue's tick: a limit price is rounded to it on its way (ccxt does so)."""

    @property
    def can_short(self) -> bool:
        """Whether a sell may take the position below zero (a perpetual or spot margin, not
        spot; options engines buy and sell back, they do not write)."""
        return self.kind in (MarketKind.PERPETUAL, MarketKind.MARGIN)


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
    (`DataNeeds.book_depth`, `DataNeeds.trades`); streams make them cheap.
    `funding` is set for perpetuals only."""

    info: MarketInfo
    ticker: Ticker
    candles: tuple[Candle, ...] = ()
    funding: Funding | None = None
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
    """Holding of one symbol's base asset, signed: positive is long, negative short.

    `side` is BOTH for spot and one-way perpetuals (one net position per symbol);
    a hedge-mode account holds a LONG leg (amount >= 0) and a SHORT leg (<= 0)."""

    symbol: str
    amount: Decimal
    avg_price: Decimal
    side: PositionSide = PositionSide.BOTH


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
    reduce_only: bool = False
    position_side: PositionSide = PositionSide.BOTH

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
        """The net position of `symbol`: its one position, or its hedge legs summed (the
        average price is then the one of the larger leg)."""
        legs = self.legs(symbol)
        if not legs:
            return Position(symbol, Decimal(0), Decimal(0))
        if len(legs) == 1:
            return legs[0]
        larger = max(legs, key=lambda p: abs(p.amount))
        return Position(symbol, sum((p.amount for p in legs), Decimal(0)), larger.avg_price)

    def legs(self, symbol: str) -> tuple[Position, ...]:
        """Every held position of `symbol` (hedge mode: one per side), none of them empty."""
        return tuple(p for p in self.positions if p.symbol == symbol and p.amount)

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
    reduce_only: bool = False
    """Only ever closes (never opens, grows or flips) a position: perpetuals only."""
    position_side: PositionSide | None = None
    """The hedge-mode leg the order trades; None lets the engine pick it on a hedge-mode
    account (a buy opens LONG, a reduce-only buy closes SHORT, ...). Setting it on a
    one-way account is refused."""


@dataclass(frozen=True, slots=True)
class CancelIntent:
    """A resting order the strategy no longer wants."""

    client_order_id: str
    symbol: str
    tag: str


Intent = OrderIntent | CancelIntent
