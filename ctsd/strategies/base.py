"""The plugin interface: a factory validates parameters and builds a pure strategy.

Why two objects: validation runs at StartEngine, long before the first cycle,
and must name every bad field; building only from validated `StrategyParams`
means a strategy never sees bad input. A strategy is a pure function of
(market snapshot, portfolio) -> intents: no clock, no I/O, no state kept between
calls, so a decision can be replayed, tested on fixed data, and run as a dry
cycle (TestEngine) with no side effects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ctsd.errors import FieldViolation
from ctsd.strategies.model import Intent, MarketSnapshot, Portfolio
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
