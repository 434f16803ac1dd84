from __future__ import annotations

from decimal import Decimal

import pytest

from ctsd.engine.config import (
    EngineConfig,
    PaperSettings,
    RiskLimits,
    TradingMode,
    validate_config,
)
from ctsd.errors import InvalidArgument
from ctsd.strategies.grid import GRID
from ctsd.strategies.registry import StrategyRegistry
from ctsd.strategies.sma_cross import SMA_CROSS

REGISTRY = StrategyRegistry.of(SMA_CROSS, GRID)
GOOD = EngineConfig("sma_cross", ("BTC/USDT",), {"fast": "5", "slow": "20", "quote_amount": "50"})


def violations(config: EngineConfig) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as caught:
        validate_config(config, REGISTRY)
    return {v.field: v.description for v in caught.value.violations}


def test_a_good_config_resolves_its_strategy_and_defaults_to_paper() -> None:
    validated = validate_config(GOOD, REGISTRY)
    assert validated.factory is SMA_CROSS
    assert validated.params.integer("slow") == 20
    assert validated.config.mode is TradingMode.PAPER
    assert validated.build_strategy().needs.candles == 21


def test_every_bad_field_is_named_in_one_error() -> None:
    bad = EngineConfig(
        "sma_cross", ("BTC/USDT", "btc-usdt", "BTC/USDT"), {"fast": "x", "quote_amount": "1"},
        interval_s=0.1, risk=RiskLimits(max_order_notional=Decimal(0), max_open_orders=-1),
        paper=PaperSettings(slippage_bps=Decimal(-1)))
    assert set(violations(bad)) == {
        "config.params.fast", "config.symbols[1]", "config.symbols[2]", "config.interval_s",
        "config.risk.max_order_notional", "config.risk.max_open_orders",
        "config.paper.slippage_bps"}


def test_an_unknown_strategy_lists_the_known_ones() -> None:
    found = violations(EngineConfig("rsi", ("BTC/USDT",)))
    assert found == {"config.strategy": "unknown strategy 'rsi'; known: grid, sma_cross"}


def test_symbols_are_required_and_perpetuals_allowed() -> None:
    assert "config.symbols" in violations(EngineConfig("grid", (), {}))
    perp = EngineConfig("grid", ("BTC/USDT:USDT",), {"reference_price": "100", "amount": "1"})
    assert validate_config(perp, REGISTRY).config.symbols == ("BTC/USDT:USDT",)
