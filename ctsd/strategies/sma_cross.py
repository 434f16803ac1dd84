"""`sma_cross`: long on a golden cross of two simple moving averages, flat on a death cross.

A cross is an event between the last two closed candles, not a state: a
strategy started while the fast average is already above the slow one waits
for the next cross instead of buying at an arbitrary point of the trend. The
averages are compared exactly (cross-multiplied sums) so rounding can never
invent or hide a cross.
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
TAG_PREFIX = "sma_cross:"

_SCHEMA = ParamSchema((
    ParamSpec("fast", ParamKind.INT, "candles in the fast average", 9, Decimal(1), Decimal(500)),
    ParamSpec("slow", ParamKind.INT, "candles in the slow average", 21, Decimal(2), Decimal(1000)),
    ParamSpec("quote_amount", ParamKind.DECIMAL, "quote currency spent per entry",
              None, Decimal("0.00000001")),
    ParamSpec("timeframe", ParamKind.CHOICE, "candle timeframe", "1m", choices=TIMEFRAMES),
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

    @property
    def needs(self) -> DataNeeds:
        return DataNeeds(self.timeframe, self.slow + 1)

    def decide(self, market: MarketSnapshot, portfolio: Portfolio) -> tuple[Intent, ...]:
        intents: list[Intent] = []
        for symbol_market in market.symbols:
            intent = self._decide_symbol(symbol_market, portfolio)
            if intent is not None:
                intents.append(intent)
        return tuple(intents)

    def _decide_symbol(self, market: SymbolMarket, portfolio: Portfolio) -> OrderIntent | None:
        symbol = market.info.symbol
        closes = [c.close for c in market.candles]
        if len(closes) < self.slow + 1:
            return None
        if any(o.tag.startswith(TAG_PREFIX) for o in portfolio.orders_for(symbol)):
            return None  # our previous order is still working; never stack a second one
        before = _cross_sign(closes[:-1], self.fast, self.slow)
        now = _cross_sign(closes, self.fast, self.slow)
        # what a fee paid in the base asset leaves below the step is dust, not a position
        held = portfolio.position(symbol).amount.quantize(AMOUNT_STEP, ROUND_DOWN)
        if before <= 0 < now and held <= 0 and market.ticker.ask > 0:
            amount = (self.quote_amount / market.ticker.ask).quantize(AMOUNT_STEP, ROUND_DOWN)
            if amount > 0:
                return OrderIntent(symbol, Side.BUY, OrderType.MARKET, amount, None,
                                   f"{TAG_PREFIX}{symbol}:long")
        if before >= 0 > now and held > 0:
            return OrderIntent(symbol, Side.SELL, OrderType.MARKET, held, None,
                               f"{TAG_PREFIX}{symbol}:flat")
        return None


@dataclass(frozen=True, slots=True)
class SmaCrossFactory:
    name: str = "sma_cross"
    description: str = "long on a golden cross of fast/slow SMAs of closes, flat on a death cross"
    schema: ParamSchema = _SCHEMA

    def check(self, params: StrategyParams, prefix: str) -> list[FieldViolation]:
        if params.integer("fast") >= params.integer("slow"):
            return [FieldViolation(f"{prefix}.fast", "must be less than slow")]
        return []

    def create(self, params: StrategyParams) -> Strategy:
        return SmaCross(params.integer("fast"), params.integer("slow"),
                        params.decimal("quote_amount"), params.choice("timeframe"))


SMA_CROSS = SmaCrossFactory()
"""The entry point target: an immutable factory, not a mutable registry entry."""
