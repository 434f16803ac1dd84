"""Bybit unified-account spot margin with unmodified ccxt: switch it on, `isLeverage`
orders that borrow, the loan in the wallet balance, manual borrow and repay, interest
per hour of the path clock, and liquidation."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt
import pytest

from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import API_KEY, SECRET, ExchangeFactory

SYMBOL = "BTC/USDT"


async def _bybit(make: ExchangeFactory, server: SimulatorServer) -> Any:
    ex = make(ccxt.bybit, server.base_url, apiKey=API_KEY, secret=SECRET,
              options={"fetchOrder": {"acknowledged": True}})
    await ex.load_markets()
    server.sim.set_price(SYMBOL, Decimal(60000))
    return ex


@pytest.mark.asyncio
async def test_isleverage_orders_borrow_only_once_spot_margin_is_on(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = await _bybit(make_exchange, server)
    assert ex.market(SYMBOL)["margin"] is True
    with pytest.raises(ccxt.BadRequest, match="176008"):
        await ex.create_order(SYMBOL, "market", "buy", 2, None, {"isLeverage": 1})
    await ex.private_post_v5_spot_margin_trade_switch_mode({"spotMarginMode": "1"})
    await ex.private_post_v5_spot_margin_trade_set_leverage({"leverage": "5"})
    state = (await ex.private_get_v5_spot_margin_trade_state())["result"]
    assert (state["spotMarginMode"], state["spotLeverage"]) == ("1", "5")
    bought = await ex.create_order(SYMBOL, "market", "buy", 2, None, {"isLeverage": 1})
    assert bought["id"]  # 2 BTC is ~120,000 on 100,000 USDT: ~20,000 borrowed
    balance = await ex.fetch_balance()
    assert 19000 < balance["USDT"]["debt"] < 21000
    assert balance["USDT"]["total"] < 30001  # the derivatives wallet's 50,000 less the loan
    raw = (await ex.private_get_v5_account_wallet_balance({"accountType": "UNIFIED"}))
    entry = raw["result"]["list"][0]
    assert Decimal(entry["accountMMRate"]) > 0
    server.sim.advance(3 * 3600)
    history = (await ex.private_get_v5_account_borrow_history({"currency": "USDT"}))
    assert len(history["result"]["list"]) == 3
    sold = await ex.create_order(SYMBOL, "market", "sell", 1, None)  # proceeds repay first
    assert sold["id"]
    after = await ex.fetch_balance()
    assert after["USDT"]["debt"] == 0 and after["USDT"]["total"] > 0


@pytest.mark.asyncio
async def test_manual_borrow_and_repay_through_ccxt(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = await _bybit(make_exchange, server)
    with pytest.raises(ccxt.BadRequest, match="176008"):
        await ex.borrow_cross_margin("ETH", 1)
    await ex.private_post_v5_spot_margin_trade_switch_mode({"spotMarginMode": "1"})
    await ex.borrow_cross_margin("ETH", 1)
    balance = await ex.fetch_balance()
    assert balance["ETH"]["debt"] == 1 and balance["ETH"]["total"] == 20
    with pytest.raises(ccxt.BadRequest, match="176017"):
        await ex.repay_cross_margin("ETH", 2)
    await ex.repay_cross_margin("ETH", 1)
    assert (await ex.fetch_balance())["ETH"]["debt"] == 0
    with pytest.raises(ccxt.BadRequest, match="176016"):
        await ex.repay_cross_margin("ETH", 1)
    # ccxt 4.5.90 sends its default `vipLevel=No VIP` with a bare space, which no HTTP
    # server parses (aiohttp answers 400): name the level already encoded
    rate = await ex.fetch_cross_borrow_rate("USDT", {"vipLevel": "No%20VIP"})
    assert rate["rate"] > 0 and rate["period"] == 3_600_000


@pytest.mark.asyncio
async def test_spot_loans_are_liquidated_at_their_maintenance_margin(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = await _bybit(make_exchange, server)
    await ex.private_post_v5_spot_margin_trade_switch_mode({"spotMarginMode": "1"})
    await ex.create_order(SYMBOL, "market", "sell", 20, None, {"isLeverage": 1})  # a short
    assert (await ex.fetch_balance())["BTC"]["debt"] > 0  # 18 BTC borrowed (2 held)
    server.sim.set_price(SYMBOL, Decimal(75000))  # the debt nears the assets: 5 % margin
    balance = await ex.fetch_balance()
    assert "BTC" not in balance  # bought back by the venue: nothing held, nothing owed
    execs = (await ex.private_get_v5_execution_list({"category": "spot"}))["result"]["list"]
    assert execs[0]["side"] == "Buy" and execs[0]["orderLinkId"].startswith("autoclose-")
