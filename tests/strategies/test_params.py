from __future__ import annotations

from decimal import Decimal

import pytest

from ctsd.errors import InvalidArgument
from ctsd.strategies.base import resolve_params
from ctsd.strategies.grid import GRID
from ctsd.strategies.params import ParamKind, ParamSchema, ParamSpec
from ctsd.strategies.sma_cross import SMA_CROSS


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(InvalidArgument) as caught:
        resolve_params(SMA_CROSS, {"fast": "five", "slow": "0", "timeframe": "2m", "colour": "red"})
    fields = {v.field: v.description for v in caught.value.violations}
    assert set(fields) == {
        "config.params.colour", "config.params.fast", "config.params.slow",
        "config.params.quote_amount", "config.params.timeframe",
    }
    assert "number" in fields["config.params.fast"]
    assert "at least 2" in fields["config.params.slow"]
    assert fields["config.params.quote_amount"] == "is required"
    assert "1m" in fields["config.params.timeframe"]


def test_cross_field_rules_run_once_every_field_parses() -> None:
    with pytest.raises(InvalidArgument) as caught:
        resolve_params(SMA_CROSS, {"fast": "20", "slow": "5", "quote_amount": "100"})
    assert [v.field for v in caught.value.violations] == ["config.params.fast"]


def test_defaults_fill_in_and_text_parses_to_types() -> None:
    params = resolve_params(SMA_CROSS, {"fast": "5", "slow": 20, "quote_amount": "12.5"})
    assert params.integer("fast") == 5
    assert params.integer("slow") == 20
    assert params.decimal("quote_amount") == Decimal("12.5")
    assert params.choice("timeframe") == "1m"
    assert params.as_strings() == {"fast": "5", "slow": "20", "quote_amount": "12.5",
                                   "timeframe": "1m", "direction": "auto"}


@pytest.mark.parametrize("raw", ["5.5", "abc", "NaN", "Infinity", True, ""])
def test_integers_reject_what_is_not_a_whole_finite_number(raw: str | bool) -> None:
    spec = ParamSpec("n", ParamKind.INT, "n")
    with pytest.raises(ValueError):
        spec.parse(raw)


def test_a_custom_prefix_points_into_another_request() -> None:
    schema = ParamSchema((ParamSpec("n", ParamKind.INT, "n", minimum=Decimal(1)),))
    _, violations = schema.validate({"n": "0"}, prefix="engine.params")
    assert [v.field for v in violations] == ["engine.params.n"]


def test_grid_refuses_levels_reaching_zero() -> None:
    with pytest.raises(InvalidArgument) as caught:
        resolve_params(GRID, {"reference_price": "100", "amount": "1", "spacing_pct": "10",
                              "levels": "10"})
    assert [v.field for v in caught.value.violations] == ["config.params.levels"]
