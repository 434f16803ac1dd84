"""The ccxt internals the daemon relies on exist on every registered exchange's class.

A ccxt upgrade that renames one of them fails here, by name, instead of
somewhere deep in a rate-limited request.
"""

from __future__ import annotations

from typing import Any

import pytest

from ctsd.exchanges import ccxt_internals
from ctsd.exchanges.registry import ExchangeRegistry
from ctsd.exchanges.settings import ExchangeSettings

PROFILES = [(s.id, s.client.ccxt_class) for s in ExchangeRegistry.default().all()
            if s.client is not None]


@pytest.mark.asyncio
@pytest.mark.parametrize(("exchange", "ccxt_class"), PROFILES, ids=[p[0] for p in PROFILES])
async def test_every_internal_the_daemon_relies_on_is_there(exchange: str,
                                                            ccxt_class: str) -> None:
    instance = ccxt_internals.exchange_class(ccxt_class)({})
    try:
        assert ccxt_internals.missing_internals(instance) == []
        ccxt_internals.check_internals(instance)
        if exchange == "binance":  # it picks its error map by production host
            assert set(ccxt_internals.PER_CLASS_ATTRIBUTES) <= set(dir(instance))
    finally:
        ccxt_internals.share_transport(instance, None)
        await instance.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("exchange", ["kraken", "bybit"])
async def test_what_the_book_checks_use_of_ccxt_pro_is_there(exchange: str) -> None:
    """`ctsd.exchanges.book_checks` reads these venues' book messages through ccxt.pro's
    internals (`tap_book_messages`); Kraken's resync uses more of them (`forget_book`),
    Bybit's is ccxt.pro's documented `un_watch_order_book`."""
    instance = ccxt_internals.exchange_class(exchange, pro=True)({})
    used = (set(ccxt_internals.PRO_BOOK_ATTRIBUTES) if exchange == "kraken" else
            {"handle_order_book", "un_watch_order_book"})
    try:
        assert used <= set(dir(instance))
    finally:
        await instance.close()


def test_a_missing_internal_is_named_loudly() -> None:
    class Renamed:
        """ccxt after an upgrade that renamed fetch2 and changed on_rest_response."""

        def __getattr__(self, name: str) -> Any:
            if name == "fetch2":
                raise AttributeError(name)
            return lambda code, reason: None

    assert ccxt_internals.missing_internals(Renamed())[0] == "fetch2"
    with pytest.raises(RuntimeError, match=r"lacks fetch2, on_rest_response\(code, reason, "):
        ccxt_internals.check_internals(Renamed())


def test_missing_classes_names_exchanges_ccxt_does_not_have() -> None:
    assert ccxt_internals.missing_classes(["binance", "no-such-exchange"]) == [
        "no-such-exchange"]


@pytest.mark.asyncio
async def test_a_base_url_moves_every_url_and_keeps_the_production_error_map() -> None:
    binance = ccxt_internals.exchange_class("binance")({})
    settings = ExchangeSettings(base_url="http://127.0.0.1:9/x")
    try:
        ccxt_internals.rebase_urls(binance, settings.rewrite)
        assert binance.urls["api"]["public"] == "http://127.0.0.1:9/x/api/v3"
        assert binance.urls["api"]["fapiPrivateV3"] == "http://127.0.0.1:9/x/fapi/v3"
        assert "test" not in binance.urls
        exact = binance.get_exceptions_by_url("http://127.0.0.1:9/x/fapi/v1/order", "exact")
        assert exact["-2019"].__name__ == "InsufficientFunds"
    finally:
        ccxt_internals.share_transport(binance, None)
        await binance.close()
    assert settings.origin == "http://127.0.0.1:9"
    assert ExchangeSettings.at_simulator("http://h:1/", "okx").base_url == "http://h:1/okx"
