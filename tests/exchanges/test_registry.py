"""The registry API the rest of the daemon relies on, and the declared defaults."""

from __future__ import annotations

from ctsd.exchanges.registry import ExchangeRegistry
from ctsd.exchanges.spec import ApiType, RateLimitScope


def test_registry_lists_the_four_first_class_exchanges() -> None:
    registry = ExchangeRegistry.default()
    assert registry.ids() == ["binance", "bybit", "okx", "kraken"]
    assert [s.id for s in registry.all()] == registry.ids()
    assert registry.get("nope") is None
    okx = registry.get("okx")
    assert okx is not None and okx.passphrase_required and okx.offers(ApiType.OPTIONS)


def test_default_limits_are_the_specification_figures() -> None:
    registry = ExchangeRegistry.default()

    def limit(exchange: str, name: str) -> tuple[RateLimitScope, float, float]:
        spec = registry.get(exchange)
        assert spec is not None
        found = spec.rate_limit(name)
        return found.scope, found.limit, found.interval_s

    assert limit("binance", "request_weight") == (RateLimitScope.IP, 1200, 60.0)
    assert limit("bybit", "requests") == (RateLimitScope.ACCOUNT, 100, 1.0)
    assert limit("okx", "requests") == (RateLimitScope.ACCOUNT, 30, 1.0)
    scope, cap, drain_s = limit("kraken", "api_counter")
    assert (scope, cap) == (RateLimitScope.ACCOUNT, 15)  # starter tier; 20 above it
    assert round(cap / drain_s, 2) == 0.33  # Kraken's starter decay per second
