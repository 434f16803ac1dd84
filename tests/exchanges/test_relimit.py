"""A reload's rate limits reach open clients: their buckets, and the ones they make later."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.ratelimit import LimitOverride, RateLimitOverrides
from tests.support.exchange_clients import TEST_OVERRIDES, ClientMaker

SYMBOL = "BTC/USDT"


@pytest.mark.asyncio
async def test_a_relimit_reaches_open_clients_and_keeps_their_usage(
    factory: ExchangeClientFactory, make_client: ClientMaker,
) -> None:
    client = await make_client("binance")
    ticker = await client.fetch_ticker(SYMBOL)  # counts in the IP's request weight
    before = {u.key.limit: u for u in client.limiter_usage()}
    assert set(before) == {"request_weight"}  # no order yet: no order bucket

    reloaded = RateLimitOverrides(safety_margin=1.0, limits={
        **TEST_OVERRIDES.limits,
        ("binance", "request_weight"): LimitOverride(limit=600),
        ("binance", "orders"): LimitOverride(limit=20),
    })
    changes = factory.relimit(reloaded)
    assert [(c.key.limit, c.old.capacity, c.new.capacity) for c in changes] == [
        ("request_weight", 1080, 600)]
    assert factory.overrides is reloaded

    price = client.price_to_precision(SYMBOL, ticker.last * Decimal("0.9"))
    await client.create_order(SYMBOL, "buy", "limit", Decimal("0.01"), price)
    after = {u.key.limit: u for u in client.limiter_usage()}
    assert (after["request_weight"].capacity, after["orders"].capacity) == (600, 20)
    assert after["request_weight"].used > before["request_weight"].used  # not a fresh window
