"""OKX options with unmodified ccxt: coin-margined OPTION markets through load_markets
(per `uly`), opt-summary, tickers, limit orders sized in contracts and priced in BTC,
pending orders, OPTION positions, and settlement across an `advance`; and Kraken, which
offers none."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import aiohttp
import ccxt.async_support as ccxt
import pytest

from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import (
    API_KEY,
    PASSPHRASE,
    SECRET,
    ExchangeFactory,
    sim_config,
    trader_spec,
)


async def _okx(make: ExchangeFactory, server: SimulatorServer) -> Any:
    ex = make(ccxt.okx, server.base_url, apiKey=API_KEY, secret=SECRET, password=PASSPHRASE,
              options={"fetchMarkets": {"types": ["option"]}})
    server.sim.set_price("BTC/USDT", Decimal(60000))
    await ex.load_markets()
    return ex


@pytest.mark.asyncio
async def test_coin_margined_options_trade_hold_and_settle(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = await _okx(make_exchange, server)
    calls = [m for m in ex.markets.values() if m["option"] and m["base"] == "BTC"
             and m["optionType"] == "call"]
    first = min(m["expiry"] for m in calls)
    market = min((m for m in calls if m["expiry"] == first),
                 key=lambda m: abs(m["strike"] - 60000))
    assert market["symbol"].startswith("BTC/USD:BTC-") and market["contractSize"] == 0.01
    summary = (await ex.public_get_public_opt_summary({"uly": "BTC-USD"}))["data"]
    assert market["id"] in {row["instId"] for row in summary}
    ticker = await ex.fetch_ticker(market["symbol"])
    assert 0 < ticker["bid"] < ticker["ask"] < 1  # priced in BTC per BTC
    resting = await ex.create_order(market["symbol"], "limit", "buy", 10, 0.0005,
                                    {"tdMode": "isolated"})
    pending = await ex.fetch_open_orders(market["symbol"])
    assert [o["id"] for o in pending] == [resting["id"]]
    await ex.cancel_order(resting["id"], market["symbol"])
    btc = (await ex.fetch_balance())["BTC"]["total"]
    await ex.create_order(market["symbol"], "limit", "buy", 10, ticker["ask"],
                          {"tdMode": "isolated"})
    [position] = await ex.fetch_positions([market["symbol"]])
    assert (position["side"], position["contracts"]) == ("long", 10)
    server.sim.set_price("BTC/USDT", Decimal(66000))
    server.sim.advance((market["expiry"] - server.sim.market.path_ms()) / 1000 + 60)
    assert await ex.fetch_positions([market["symbol"]]) == []
    after = (await ex.fetch_balance())["BTC"]["total"]
    assert after > btc  # 0.1 BTC of calls paid (S - K) / S in BTC at expiry


@pytest.mark.asyncio
async def test_kraken_lists_no_options_and_has_no_option_endpoints(
    make_exchange: ExchangeFactory,
) -> None:
    """Kraken (spot) offers no options: no option market, and an options path answers
    Kraken's unknown-method error rather than anything that looks like options."""
    async with SimulatorServer(sim_config(accounts=(trader_spec(
            api_key="kraken-key", secret="c2ltLXNlY3JldC0wMDAx"),))) as server:
        ex = make_exchange(ccxt.kraken, server.base_url, apiKey="kraken-key",
                           secret="c2ltLXNlY3JldC0wMDAx")
        markets = await ex.load_markets()
        assert markets and not any(m["option"] for m in markets.values())
        assert ex.has["fetchOption"] is not True
        async with aiohttp.ClientSession() as http, http.post(
                f"{server.base_url}/kraken/0/private/OptionPositions") as resp:
            assert (resp.status, await resp.json()) == (
                200, {"error": ["EGeneral:Unknown method"], "result": {}})
