"""The plugin interface: a factory validates parameters and builds a pure strategy.

Why two objects: validation runs at StartEngine, long before the first cycle,
and must name every bad field; building only from validated `StrategyParams`
means a strategy never sees bad input. A strategy is a pure function of
(market snapshot, portfolio) -> intents: no clock, no I/O, no state kept between
calls, so a decision can be replayed, tested on fixed data, and run as a dry
cycle (TestEngine) with no side effects.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, runtime_checkable

from ctsd.errors import FieldViolation
from ctsd.strategies.model import Intent, MarketSnapshot, Portfolio, Ticker
from ctsd.strategies.params import ParamSchema, RawParam, StrategyParams, raise_violations


@dataclass(frozen=True, slots=True)
class DataNeeds:
    """How much a strategy reads (the engine fetches exactly this much), and
    whether it needs to go short.

    On a WebSocket connection it is also what wakes the engine: a closed candle
    when it reads candles, else a ticker change."""

    timeframe: str = "1m"
    candles: int = 0
    book_depth: int = 0
    """Levels per side of the order book (0: none)."""
    trades: int = 0
    """Most recent public trades (0: none)."""
    shorts: bool = False
    """The strategy means to open short positions whatever the market: an engine on a
    market that cannot short (spot) refuses to start rather than trade half of it."""


class Strategy(Protocol):
    @property
    def needs(self) -> DataNeeds: ...

    def decide(self, market: MarketSnapshot, portfolio: Portfolio) -> tuple[Intent, ...]:
        """The intents for this cycle: deterministic, no side effects."""
        ...


class PriceField(enum.Enum):
    """Which of a ticker's prices a band bounds."""

    BID = "bid"
    ASK = "ask"
    LAST = "last"
    MID = "mid"


@dataclass(frozen=True, slots=True)
class PriceBand:
    """The ticker moves that keep `price` strictly between `lo` and `hi` (None: no
    bound on that side). A band with lo == hi holds nothing: every move counts."""

    price: PriceField
    lo: Decimal | None = None
    hi: Decimal | None = None

    def holds(self, ticker: Ticker) -> bool:
        price = _PRICES[self.price](ticker)
        return (self.lo is None or price > self.lo) and (self.hi is None or price < self.hi)


_PRICES: dict[PriceField, Callable[[Ticker], Decimal]] = {
    PriceField.BID: lambda t: t.bid, PriceField.ASK: lambda t: t.ask,
           PriceField.LAST: lambda t: t.last, PriceField.MID: lambda t: t.mid}


@runtime_checkable
class QuietBands(Protocol):
    """Optional, next to `Strategy`: which ticker moves cannot change a decision.

    Why: on a WebSocket connection every ticker change would wake the engine, and a
    strategy that cannot act on most of them (a grid between two levels) would spend a
    whole cycle on each, delaying the engines that can act. A strategy without this
    method keeps waking on every change."""

    def quiet_bands(self, market: MarketSnapshot, portfolio: Portfolio,
                    ) -> Mapping[str, PriceBand]:
        """Per symbol, the band of prices within which `decide(market', portfolio)` is
        what `decide(market, portfolio)` was, for any market' that differs from `market`
        only in that symbol's ticker moving inside the band. A symbol left out wakes the
        engine on every change. Pure, like `decide`."""
        ...


@runtime_checkable
class StrategyFactory(Protocol):
    """What an entry point in the `cts.strategies` group must resolve to."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def schema(self) -> ParamSchema: ...

    def check(self, params: StrategyParams, prefix: str) -> list[FieldViolation]:
        """Rules across fields (e.g. fast < slow), run after each field parsed."""
        ...

    def create(self, params: StrategyParams) -> Strategy: ...


def validate_params(
    factory: StrategyFactory, raw: Mapping[str, RawParam], prefix: str = "config.params"
) -> tuple[StrategyParams, list[FieldViolation]]:
    """Parsed parameters and every violation; cross-field rules only once each field is good."""
    params, violations = factory.schema.validate(raw, prefix)
    if not violations:
        violations = factory.check(params, prefix)
    return params, violations


def resolve_params(
    factory: StrategyFactory, raw: Mapping[str, RawParam], prefix: str = "config.params"
) -> StrategyParams:
    """Validated parameters, or InvalidArgument listing every bad field."""
    params, violations = validate_params(factory, raw, prefix)
    raise_violations(violations)
    return params
