"""Overrides: parsed from the config file's table, applied over exchange defaults."""

from __future__ import annotations

import pytest

from ctsd.errors import ConfigurationError
from ctsd.ratelimit import BucketSpec, LimitOverride, MeterKind, RateLimitOverrides


def test_override_replaces_only_what_it_names() -> None:
    overrides = RateLimitOverrides.from_mapping({
        "safety_margin": 0.8, "guard_s": 0.1,
        "kraken": {"api_counter": {"limit": 20}},
    })
    default = BucketSpec(15, 1.0, MeterKind.DECAYING)
    kraken = overrides.apply("kraken", "api_counter", default)
    assert (kraken.limit, kraken.interval_s, kraken.kind) == (20, 1.0, MeterKind.DECAYING)
    assert (kraken.safety_margin, kraken.guard_s) == (0.8, 0.1)
    assert overrides.apply("binance", "request_weight", default).limit == 15
    assert overrides.limits[("kraken", "api_counter")] == LimitOverride(limit=20)


@pytest.mark.parametrize(("raw", "message"), [
    ({"safety_margin": 1.5}, "safety_margin"),
    ({"binance": {"request_weight": {"limit": -1}}}, "limit must be positive"),
    ({"binance": {"request_weight": {"limt": 5}}}, "unknown keys"),
    ({"binance": 5}, "must be a table"),
    ({"okx": {"requests": {"interval_s": "soon"}}}, "could not convert"),
])
def test_bad_overrides_are_configuration_errors(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RateLimitOverrides.from_mapping(raw)


def test_changes_name_each_setting_that_differs() -> None:
    old = RateLimitOverrides.from_mapping({"kraken": {"api_counter": {"limit": 20}}})
    new = RateLimitOverrides.from_mapping({
        "safety_margin": 0.8,
        "binance": {"request_weight": {"limit": 600, "interval_s": 60}},
    })
    assert new.changes_from(old) == [
        "safety_margin: 0.9 -> 0.8",
        "binance.request_weight: default -> limit=600 interval_s=60",
        "kraken.api_counter: limit=20 -> default",
    ]
    assert new.changes_from(new) == []
    assert new == RateLimitOverrides.from_mapping({
        "safety_margin": 0.8, "binance": {"request_weight": {"interval_s": 60, "limit": 600}}})
