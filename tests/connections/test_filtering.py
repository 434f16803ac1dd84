"""The ListConnections filter grammar and how conditions match connections."""

from __future__ import annotations

import pytest

from ctsd.connections.filtering import Condition, parse_filter
from ctsd.errors import InvalidArgument


def test_conditions_are_typed() -> None:
    assert parse_filter('exchange = "binance" AND enabled = true AND api_type != SPOT') == (
        Condition("exchange", "binance"),
        Condition("enabled", True),
        Condition("api_type", "spot", negate=True),
    )
    assert parse_filter("") == ()
    assert parse_filter('exchange = "a \\" b"') == (Condition("exchange", 'a " b'),)


@pytest.mark.parametrize(
    "text",
    [
        "exchange",
        "exchange = ",
        "= binance",
        "exchange binance",
        "a = b",
        "enabled = 1",
        'testnet = "true"',
        "exchange = x OR enabled = true",
        "exchange = x AND",
        "exchange = x;",
        "api_type = swap",
        "exchange == x",
    ],
)
def test_malformed_filters_name_the_filter_field(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_filter(text)
    assert [v.field for v in caught.value.violations] == ["filter"]
