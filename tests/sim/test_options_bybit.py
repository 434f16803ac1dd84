"""Bybit options with unmodified ccxt: option markets through load_markets
(`category=option`), tickers, limit orders from the unified wallet, open orders,
positions, and delivery across an `advance`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt
import pytest

from ctsd.sim.accounts import DEFAULT_PERMISSIONS, Permission
from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import API_KEY, SECRET, ExchangeFactory, sim_config, trader_spec


async def _bybit(make: ExchangeFactory, server: SimulatorServer) -> Any:
    ex = make(ccxt.bybit, server.base_url, apiKey=API_KEY, secret=SECRET,
              options={"defaultType": "option",
                       "fetchMarkets": {"types": ["option"], "options": ["BTC", "ETH"]}})
    server.sim.set_price("BTC/USDT", Decimal(60000))
    await ex.load_markets()
    return ex


def _nearest(ex: Any, kind: str) -> Any:
    found = [m for m in ex.markets.values() if m["option"] and m["base"] == "BTC"
             and m["optionType"] == kind]
    first = min(m["expiry"] for m in found)
    return min((m for m in found if m["expiry"] == first),
               key=lambda m: abs(m["strike"] - 60000))


@pytest.mark.asyncio
async def test_option_markets_orders_positions_and_delivery(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = await _bybit(make_exchange, server)
    market = _nearest(ex, "put")
    assert market["symbol"].startswith("BTC/USDT:USDT-") and market["symbol"].endswith("-P")
    assert market["id"].endswith("-P-USDT") and market["settle"] == "USDT"
    ticker = await ex.fetch_ticker(market["symbol"])
    assert ticker["bid"] < ticker["ask"]
    resting = await ex.create_order(market["symbol"], "limit", "buy", 0.1, 5)
    [listed] = await ex.fetch_open_orders(market["symbol"])
    assert listed["id"] == resting["id"]
    await ex.cancel_order(resting["id"], market["symbol"])
    before = (await ex.fetch_balance({"type": "unified"}))["USDT"]["free"]
    await ex.create_order(market["symbol"], "limit", "sell", 0.5, ticker["bid"])
    [position] = await ex.fetch_positions([market["symbol"]])
    assert (position["side"], position["contracts"]) == ("short", 0.5)
    server.sim.set_price("BTC/USDT", Decimal(55000))
    server.sim.advance((market["expiry"] - server.sim.market.path_ms()) / 1000 + 60)
    assert await ex.fetch_positions([market["symbol"]]) == []
    [delivery] = (await ex.private_get_v5_asset_delivery_record(
        {"category": "option"}))["result"]["list"]
    assert delivery["symbol"] == market["id"] and Decimal(delivery["deliveryRpl"]) < 0
    after = (await ex.fetch_balance({"type": "unified"}))["USDT"]["free"]
    assert after < before  # the short paid the put's value at expiry


@pytest.mark.asyncio
async def test_options_need_the_keys_options_permission(make_exchange: ExchangeFactory) -> None:
    spec = trader_spec(permissions=DEFAULT_PERMISSIONS - {Permission.OPTIONS})
    async with SimulatorServer(sim_config(accounts=(spec,))) as server:
        ex = await _bybit(make_exchange, server)
        market = _nearest(ex, "call")
        with pytest.raises(ccxt.PermissionDenied, match="10005"):
            await ex.create_order(market["symbol"], "limit", "buy", 0.1, 5)
