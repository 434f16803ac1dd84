"""Conformance: every venue and api type, through the one generic client, end to end."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ctsd.errors import NotFound
from ctsd.exchanges.model import KeyPermissions
from ctsd.exchanges.spec import ApiType
from ctsd.sim.server import SimulatorServer
from tests.support.exchange_clients import MARKETS, ClientMaker, Market


@pytest.mark.asyncio
@pytest.mark.parametrize("market", MARKETS, ids=[m.id for m in MARKETS])
async def test_connection_test_questions(
    server: SimulatorServer, make_client: ClientMaker, market: Market,
) -> None:
    client = await make_client(market.exchange, market.api_type)
    assert await client.load_markets() > 0
    clock = await client.server_time()
    assert abs(clock.skew_ms) < 2000 and clock.round_trip_ms >= 0
    assert await client.ping() >= 0
    holdings = {h.asset: h for h in await client.fetch_holdings()}
    assert holdings["USDT"].total > 0
    permissions = await client.key_permissions()
    if permissions is not None:
        assert permissions == KeyPermissions(True, True, False, permissions.ip_restricted,
                                             options=permissions.options)
    status = await client.api_type_status()
    assert status.usable, status.detail
    prices = await client.prices(["BTC", "ETH", "NOPE"], "USDT")
    assert set(prices) == {"BTC", "ETH"} and all(p > 0 for p in prices.values())
    assert client.limiter_wait_s() >= 0
    scopes = {u.key.scope for u in client.limiter_usage()}
    # Binance counts reads per IP only; the others count signed calls per key too
    assert scopes == ({"ip"} if market.exchange == "binance" else {"ip", "account"})


@pytest.mark.asyncio
@pytest.mark.parametrize("market", MARKETS, ids=[m.id for m in MARKETS])
async def test_engine_calls(
    server: SimulatorServer, make_client: ClientMaker, market: Market,
) -> None:
    client = await make_client(market.exchange, market.api_type)
    symbol = market.symbol
    terms = await client.market_terms(symbol)
    assert (terms.base, terms.quote) == ("BTC", "USDT") and terms.taker_fee >= terms.maker_fee
    with pytest.raises(NotFound):
        await client.market_terms("NOPE/USDT")
    ticker = await client.fetch_ticker(symbol)
    assert ticker.last > 0
    candles = await client.fetch_ohlcv(symbol, "1h", limit=10)
    assert len(candles) == 10 and all(c.low <= c.close <= c.high for c in candles)
    price = client.price_to_precision(symbol, ticker.last * Decimal("0.9"))
    order = await client.create_order(symbol, "buy", "limit", Decimal(market.amount), price)
    assert order.status in ("open", None)  # Bybit and OKX answer with the id alone
    assert (order.side, order.amount) == ("buy", Decimal(market.amount))
    assert [o.id for o in await client.fetch_open_orders(symbol)] == [order.id]
    assert (await client.fetch_order(order.id, symbol)).status == "open"
    canceled = await client.cancel_order(order.id, symbol)
    assert canceled.id == order.id
    assert (await client.fetch_order(order.id, symbol)).status == "canceled"
    assert await client.fetch_open_orders(symbol) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("api_type", [ApiType.SPOT, ApiType.PERPETUAL_FUTURES])
async def test_binance_key_permissions_come_from_the_spot_balance_answer_without_a_request(
    server: SimulatorServer, make_client: ClientMaker, api_type: ApiType,
) -> None:
    client = await make_client("binance", api_type)
    await client.fetch_holdings()
    before = server.sim.stats.requests["binance"]
    permissions = await client.key_permissions()
    assert permissions is not None and permissions.trade and not permissions.withdraw
    # spot: GET /api/v3/account answered both; futures: its balance is another endpoint
    asked = 0 if api_type is ApiType.SPOT else 1
    assert server.sim.stats.requests["binance"] - before == asked
