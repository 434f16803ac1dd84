"""Engine configuration: frozen, typed, and validated in one pass that names every bad field.

LIVE is never a default: `TradingMode.PAPER` is what a config gets unless the
caller writes LIVE, so a missing or garbled field can only ever fail safe.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from ctsd.engine.perpetual import MAX_LEVERAGE, MismatchPolicy
from ctsd.errors import FieldViolation
from ctsd.strategies.base import Strategy, StrategyFactory, validate_params
from ctsd.strategies.params import StrategyParams, raise_violations
from ctsd.strategies.registry import StrategyRegistry

SYMBOL_PATTERN = re.compile(
    r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}(:[A-Z0-9]{1,20}(-[0-9]{6}-[0-9]{1,12}(\.[0-9]{1,8})?-[CP])?)?$")
"""Spot `BTC/USDT`, perpetual `BTC/USDT:USDT`, option `BTC/USDT:USDT-261225-60000-C`."""
MAX_SYMBOLS = 50
MIN_INTERVAL_S = 1.0
MAX_INTERVAL_S = 86_400.0


class TradingMode(enum.Enum):
    PAPER = "paper"
    """Fills simulated against live prices, with the venue's fees and a slippage."""
    LIVE = "live"
    """Real orders; only when asked for explicitly."""


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Per-engine limits; `None` switches a limit off. Notionals are in the quote asset."""

    max_order_notional: Decimal | None = None
    max_position_notional: Decimal | None = None
    max_open_orders: int | None = 50
    max_orders_per_minute: int | None = 30
    daily_loss_limit: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PaperSettings:
    """The paper account: starting balances per asset and the slippage market orders pay."""

    balances: tuple[tuple[str, Decimal], ...] = (("USDT", Decimal(10_000)),)
    slippage_bps: Decimal = Decimal(5)


@dataclass(frozen=True)
class EngineConfig:
    strategy: str
    symbols: tuple[str, ...]
    params: Mapping[str, str] = field(default_factory=dict)
    mode: TradingMode = TradingMode.PAPER
    interval_s: float = 60.0
    risk: RiskLimits = RiskLimits()
    paper: PaperSettings = PaperSettings()
    leverage: Mapping[str, int] = field(default_factory=dict)
    """Perpetuals: the leverage per symbol, set on the venue at engine start (a symbol not
    listed keeps the venue's); bounded by the venue's tiers for the position size."""
    on_position_mismatch: MismatchPolicy = MismatchPolicy.STOP
    """LIVE perpetuals: what a difference between the venue's positions and the ledger does."""


@dataclass(frozen=True)
class ValidatedConfig:
    """A config proven valid, with its strategy factory and parsed parameters."""

    config: EngineConfig
    factory: StrategyFactory
    params: StrategyParams

    def build_strategy(self) -> Strategy:
        return self.factory.create(self.params)


def validate_config(config: EngineConfig, strategies: StrategyRegistry) -> ValidatedConfig:
    """The config with its strategy resolved, or InvalidArgument listing every bad field."""
    violations: list[FieldViolation] = []
    factory = strategies.factories.get(config.strategy)
    params = StrategyParams(())
    if factory is None:
        known = ", ".join(strategies.names()) or "none installed"
        violations.append(FieldViolation(
            "config.strategy", f"unknown strategy {config.strategy!r}; known: {known}"))
    else:
        params, param_violations = validate_params(factory, config.params)
        violations += param_violations
    violations += _symbol_violations(config.symbols)
    if not MIN_INTERVAL_S <= config.interval_s <= MAX_INTERVAL_S:
        violations.append(FieldViolation(
            "config.interval_s",
            f"must be between {MIN_INTERVAL_S:g} and {MAX_INTERVAL_S:g} seconds"))
    violations += _risk_violations(config.risk)
    violations += _paper_violations(config.paper)
    violations += _leverage_violations(config)
    raise_violations(violations)
    assert factory is not None
    return ValidatedConfig(config, factory, params)


def _symbol_violations(symbols: tuple[str, ...]) -> list[FieldViolation]:
    if not symbols:
        return [FieldViolation("config.symbols", "at least one symbol is required")]
    if len(symbols) > MAX_SYMBOLS:
        return [FieldViolation("config.symbols", f"at most {MAX_SYMBOLS} symbols")]
    found: list[FieldViolation] = []
    for i, symbol in enumerate(symbols):
        if not SYMBOL_PATTERN.match(symbol):
            found.append(FieldViolation(f"config.symbols[{i}]",
                                        f"{symbol!r} is not a unified symbol like BTC/USDT"))
        elif symbol in symbols[:i]:
            found.append(FieldViolation(f"config.symbols[{i}]", f"{symbol} is listed twice"))
    return found


def leverage_field(symbol: str) -> str:
    return f'config.leverage["{symbol}"]'


def _leverage_violations(config: EngineConfig) -> list[FieldViolation]:
    found: list[FieldViolation] = []
    for symbol, leverage in sorted(config.leverage.items()):
        if symbol not in config.symbols:
            found.append(FieldViolation(leverage_field(symbol),
                                        f"{symbol} is not one of config.symbols"))
        elif isinstance(leverage, bool) or not isinstance(leverage, int) or not (
                1 <= leverage <= MAX_LEVERAGE):
            found.append(FieldViolation(leverage_field(symbol),
                                        f"must be a whole number from 1 to {MAX_LEVERAGE}"))
    return found


def _risk_violations(risk: RiskLimits) -> list[FieldViolation]:
    limits: dict[str, Decimal | int | None] = {
        "max_order_notional": risk.max_order_notional,
        "max_position_notional": risk.max_position_notional,
        "max_open_orders": risk.max_open_orders,
        "max_orders_per_minute": risk.max_orders_per_minute,
        "daily_loss_limit": risk.daily_loss_limit,
    }
    return [FieldViolation(f"config.risk.{name}", "must be positive (or unset for no limit)")
            for name, value in limits.items() if value is not None and value <= 0]


def _paper_violations(paper: PaperSettings) -> list[FieldViolation]:
    found: list[FieldViolation] = []
    if not Decimal(0) <= paper.slippage_bps <= Decimal(1000):
        found.append(FieldViolation("config.paper.slippage_bps", "must be between 0 and 1000"))
    for asset, amount in paper.balances:
        if not asset or amount < 0:
            found.append(FieldViolation(f"config.paper.balances[{asset}]",
                                        "needs an asset name and a non-negative amount"))
    return found
