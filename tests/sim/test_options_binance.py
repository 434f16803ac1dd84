"""Binance European options with unmodified ccxt: option markets through load_markets,
the mark and ticker, the options account funded by a transfer, limit orders, open
orders, positions, and cash settlement across an `advance` (bill, exercise record)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt
import pytest

from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import API_KEY, SECRET, ExchangeFactory


async def _options(make: ExchangeFactory, server: SimulatorServer) -> Any:
    ex = make(ccxt.binance, server.base_url, apiKey=API_KEY, secret=SECRET,
              options={"defaultType": "option", "fetchMarkets": {"types": ["option"]}})
    server.sim.set_price("BTC/USDT", Decimal(60000))
    await ex.load_markets()
    return ex


def _nearest_call(ex: Any) -> Any:
    calls = [m for m in ex.markets.values() if m["option"] and m["base"] == "BTC"
             and m["optionType"] == "call"]
    first = min(m["expiry"] for m in calls)
    return min((m for m in calls if m["expiry"] == first),
               key=lambda m: abs(m["strike"] - 60000))


@pytest.mark.asyncio
async def test_option_markets_account_orders_and_settlement(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = await _options(make_exchange, server)
    market = _nearest_call(ex)
    assert market["symbol"].startswith("BTC/USDT:USDT-") and market["settle"] == "USDT"
    assert market["contractSize"] == 1 and market["strike"] > 0
    ticker = await ex.fetch_ticker(market["symbol"])
    assert ticker["bid"] < ticker["ask"]
    await ex.transfer("USDT", 20000, "spot", "option")
    account = await ex.eapiPrivateGetMarginAccount()
    [usdt] = account["asset"]
    assert (usdt["asset"], Decimal(usdt["available"])) == ("USDT", Decimal(20000))
    resting = await ex.create_order(market["symbol"], "limit", "buy", 0.1, 5)
    assert resting["status"] == "open"
    assert [o["id"] for o in await ex.fetch_open_orders(market["symbol"])] == [resting["id"]]
    await ex.cancel_order(resting["id"], market["symbol"])
    bought = await ex.create_order(market["symbol"], "limit", "buy", 0.2, ticker["ask"])
    assert bought["status"] == "closed"
    [position] = await ex.fetch_positions([market["symbol"]], {"method": "option"})
    assert (position["side"], position["contracts"]) == ("long", 0.2)
    server.sim.advance((market["expiry"] - server.sim.market.path_ms()) / 1000 + 60)
    assert await ex.fetch_positions([market["symbol"]], {"method": "option"}) == []
    bills = await ex.eapiPrivateGetBill({"currency": "USDT"})
    [exercise] = [b for b in bills if b["type"] == "EXERCISE"]
    records = await ex.eapiPublicGetExerciseHistory({"underlying": "BTCUSDT"})
    record = next(r for r in records if r["symbol"] == market["id"])
    intrinsic = max(Decimal(record["realStrikePrice"]) - Decimal(str(market["strike"])),
                    Decimal(0))
    assert Decimal(exercise["amount"]) == Decimal("0.2") * intrinsic


@pytest.mark.asyncio
async def test_option_orders_are_refused_as_binance_refuses_them(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = await _options(make_exchange, server)
    market = _nearest_call(ex)
    with pytest.raises(ccxt.InsufficientFunds):  # the options wallet is empty
        await ex.create_order(market["symbol"], "limit", "buy", 1, 1000)
    with pytest.raises(ccxt.InvalidOrder):
        await ex.create_order(market["symbol"], "market", "buy", 1)
    with pytest.raises(ccxt.BadSymbol):
        await ex.eapiPublicGetMark({"symbol": "BTC-991231-1-C"})
