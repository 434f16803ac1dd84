"""`sma_cross`: long on a golden cross of two simple moving averages, short (or flat) on a
death cross.

A cross is an event between the last two closed candles, not a state: a
strategy started while the fast average is already above the slow one waits
for the next cross instead of buying at an arbitrary point of the trend. The
averages are compared exactly (cross-multiplied sums) so rounding can never
invent or hide a cross.

A holding smaller than the market's lot size (the dust a fee taken in the base
asset leaves) counts as flat: it cannot be sold. Where the market can short (a
perpetual) the strategy is always in the market
after its first cross: a death cross closes the long (reduce-only) and opens a
short, a golden cross covers the short and opens a long. On spot a death cross
only sells what is held. `direction` narrows this: `long_only` never shorts,
`long_short` insists on shorting (an engine on spot then refuses to start).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from ctsd.errors import FieldViolation
from ctsd.strategies.base import DataNeeds, Strategy
from ctsd.strategies.model import (
    Intent,
    MarketSnapshot,
    OrderIntent,
    OrderType,
    Portfolio,
    Side,
    SymbolMarket,
)
from ctsd.strategies.params import ParamKind, ParamSchema, ParamSpec, StrategyParams

AMOUNT_STEP = Decimal("0.00000001")
"""Order amounts are cut to 8 decimals; the exchange layer applies each market's real step."""

TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")
DIRECTIONS = ("auto", "long_only", "long_short")
TAG_PREFIX = "sma_cross:"

_SCHEMA = ParamSchema((
    ParamSpec("fast", ParamKind.INT, "candles in the fast average", 9, Decimal(1), Decimal(500)),
    ParamSpec("slow", ParamKind.INT, "candles in the slow average", 21, Decimal(2), Decimal(1000)),
    ParamSpec("quote_amount", ParamKind.DECIMAL, "quote currency spent per entry",
              None, Decimal("0.00000001")),
    ParamSpec("timeframe", ParamKind.CHOICE, "candle timeframe", "1m", choices=TIMEFRAMES),
    ParamSpec("direction", ParamKind.CHOICE,
              "auto: long/short where the market can short, long/flat on spot", "auto",
              choices=DIRECTIONS),
))


def _cross_sign(closes: Sequence[Decimal], fast: int, slow: int) -> int:
    """Sign of fast SMA minus slow SMA over the tail of `closes`, computed exactly."""
    diff = sum(closes[-fast:], Decimal(0)) * slow - sum(closes[-slow:], Decimal(0)) * fast
    return (diff > 0) - (diff < 0)


@dataclass(frozen=True, slots=True)
class SmaCross:
    fast: int
    slow: int
    quote_amount: Decimal
    timeframe: str
    direction: str = "auto"

    @property
    def needs(self) -> DataNeeds:
        return DataNeeds(self.timeframe, self.slow + 1, shorts=self.direction == "long_short")

    def decide(self, market: MarketSnapshot, portfolio: Portfolio) -> tuple[Intent, ...]:
        intents: list[Intent] = []
        for symbol_market in market.symbols:
            intents.extend(self._decide_symbol(symbol_market, portfolio))
        return tuple(intents)

    def _shorts(self, market: SymbolMarket) -> bool:
        return self.direction != "long_only" and (
            market.info.can_short or self.direction == "long_short")

    def _decide_symbol(self, market: SymbolMarket, portfolio: Portfolio) -> list[OrderIntent]:
        symbol = market.info.symbol
        closes = [c.close for c in market.candles]
        if len(closes) < self.slow + 1:
            return []
        if any(o.tag.startswith(TAG_PREFIX) for o in portfolio.orders_for(symbol)):
            return []  # our previous order is still working; never stack a second one
        before = _cross_sign(closes[:-1], self.fast, self.slow)
        now = _cross_sign(closes, self.fast, self.slow)
        lot = market.info.amount_step or Decimal(0)
        legs = [leg for leg in portfolio.legs(symbol) if abs(leg.amount) >= lot]  # dust: flat
        contract = market.info.can_short
        if before <= 0 < now:
            intents = [OrderIntent(symbol, Side.BUY, OrderType.MARKET, -leg.amount, None,
                                   f"{TAG_PREFIX}{symbol}:cover", reduce_only=True)
                       for leg in legs if leg.amount < 0]
            if not any(leg.amount > 0 for leg in legs):
                intents += self._entry(market, Side.BUY, market.ticker.ask, "long")
            return intents
        if before >= 0 > now:
            intents = [OrderIntent(symbol, Side.SELL, OrderType.MARKET, leg.amount, None,
                                   f"{TAG_PREFIX}{symbol}:flat", reduce_only=contract)
                       for leg in legs if leg.amount > 0]
            if self._shorts(market) and not any(leg.amount < 0 for leg in legs):
                intents += self._entry(market, Side.SELL, market.ticker.bid, "short")
            return intents
        return []

    def _entry(self, market: SymbolMarket, side: Side, price: Decimal,
               name: str) -> list[OrderIntent]:
        if price <= 0:
            return []
        amount = (self.quote_amount / price).quantize(AMOUNT_STEP, ROUND_DOWN)
        if amount <= 0:
            return []
        symbol = market.info.symbol
        return [OrderIntent(symbol, side, OrderType.MARKET, amount, None,
                            f"{TAG_PREFIX}{symbol}:{name}")]


@dataclass(frozen=True, slots=True)
class SmaCrossFactory:
    name: str = "sma_cross"
    description: str = ("long on a golden cross of fast/slow SMAs of closes; on a death cross "
                        "short where the market can short, else flat")
    schema: ParamSchema = _SCHEMA

    def check(self, params: StrategyParams, prefix: str) -> list[FieldViolation]:
        if params.integer("fast") >= params.integer("slow"):
            return [FieldViolation(f"{prefix}.fast", "must be less than slow")]
        return []

    def create(self, params: StrategyParams) -> Strategy:
        return SmaCross(params.integer("fast"), params.integer("slow"),
                        params.decimal("quote_amount"), params.choice("timeframe"),
                        params.choice("direction"))


SMA_CROSS = SmaCrossFactory()
"""The entry point target: an immutable factory, not a mutable registry entry."""
