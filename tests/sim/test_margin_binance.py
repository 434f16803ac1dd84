"""Binance spot margin with unmodified ccxt: transfers, the cross and isolated accounts,
borrow and repay, orders with `sideEffectType`, interest over the path clock, the key's
margin permission and a forced liquidation."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt
import pytest

from ctsd.sim.accounts import Permission
from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import API_KEY, SECRET, ExchangeFactory, sim_config, trader_spec

SYMBOL = "BTC/USDT"


def _binance(make: ExchangeFactory, server: SimulatorServer, **config: Any) -> Any:
    config.setdefault("apiKey", API_KEY)
    config.setdefault("secret", SECRET)
    return make(ccxt.binance, server.base_url, **config)


async def _margin_client(make: ExchangeFactory, server: SimulatorServer) -> Any:
    ex = _binance(make, server, options={"defaultType": "margin"})
    await ex.load_markets()
    server.sim.set_price(SYMBOL, Decimal(60000))
    return ex


@pytest.mark.asyncio
async def test_cross_margin_borrows_trades_repays_and_accrues_interest(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = await _margin_client(make_exchange, server)
    assert ex.market(SYMBOL)["margin"] is True
    await ex.transfer("USDT", 10000, "spot", "margin")
    balance = await ex.fetch_balance({"type": "margin"})
    assert balance["USDT"]["free"] == 10000 and balance["USDT"]["debt"] == 0
    assert balance["info"]["marginLevel"] == "999.00000000"
    loan = await ex.borrow_cross_margin("USDT", 5000)
    assert loan["currency"] == "USDT" and loan["id"]  # Binance answers the tranId only
    order = await ex.create_order(SYMBOL, "market", "buy", 0.3, None,
                                  {"marginMode": "cross", "sideEffectType": "MARGIN_BUY"})
    assert order["status"] == "closed"
    assert Decimal(order["info"]["marginBuyBorrowAmount"]) > 0  # 0.3 BTC > the 15,000 held
    raw = await ex.sapi_get_margin_account()
    assert Decimal("1") < Decimal(raw["marginLevel"]) < Decimal("3")
    server.sim.advance(2 * 3600)
    interest = await ex.fetch_borrow_interest("USDT")
    kinds = [i["info"]["type"] for i in interest]
    assert kinds.count("ON_BORROW") == 2 and kinds.count("PERIODIC") == 2  # one per hour
    assert all(i["currency"] == "USDT" and i["interest"] > 0 for i in interest)
    held = (await ex.fetch_balance({"type": "margin"}))["BTC"]["free"]  # less the fee
    sold = await ex.create_order(SYMBOL, "market", "sell", held, None,
                                 {"marginMode": "cross", "sideEffectType": "AUTO_REPAY"})
    assert sold["status"] == "closed"
    after = await ex.fetch_balance({"type": "margin"})
    assert after["USDT"]["debt"] < balance["USDT"]["free"]  # the sale repaid most of it
    debt = after["USDT"]["debt"]
    if debt:
        await ex.repay_cross_margin("USDT", debt)
    settled = await ex.fetch_balance({"type": "margin"})
    assert settled["USDT"]["debt"] == 0
    with pytest.raises(ccxt.BadRequest, match="-3015"):
        await ex.repay_cross_margin("USDT", 1)


@pytest.mark.asyncio
async def test_borrow_limits_and_max_borrowable(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = await _margin_client(make_exchange, server)
    await ex.transfer("USDT", 1000, "spot", "margin")
    most = await ex.sapi_get_margin_maxborrowable({"asset": "USDT"})
    assert Decimal(most["amount"]) == Decimal(2000)  # 3x on 1,000
    with pytest.raises(ccxt.ExchangeError, match="-3006"):
        await ex.borrow_cross_margin("USDT", 2001)
    with pytest.raises(ccxt.InsufficientFunds):  # no side effect: only what is held
        await ex.create_order(SYMBOL, "market", "buy", 0.1, None, {"marginMode": "cross"})


@pytest.mark.asyncio
async def test_isolated_margin_is_its_own_wallet(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = await _margin_client(make_exchange, server)
    await ex.transfer("USDT", 2000, "spot", SYMBOL)  # ccxt: a symbol means isolated
    await ex.borrow_isolated_margin(SYMBOL, "BTC", 0.05)
    balance = await ex.fetch_balance({"type": "margin", "marginMode": "isolated"})
    assert balance["BTC"]["debt"] > 0.05  # with its first hour
    assert balance["BTC"]["free"] == 0.05 and balance["USDT"]["free"] == 2000
    raw = (await ex.sapi_get_margin_isolated_account())["assets"][0]
    assert raw["symbol"] == "BTCUSDT" and raw["marginLevelStatus"] == "NORMAL"  # 5,000 on 3,000
    assert Decimal(raw["liquidatePrice"]) > 60000  # a short: liquidated as BTC rises
    cross = await ex.fetch_balance({"type": "margin"})
    assert "BTC" not in cross  # the cross wallet never held nor owed any


@pytest.mark.asyncio
async def test_a_margin_account_under_its_level_is_liquidated_and_recorded(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = await _margin_client(make_exchange, server)
    await ex.transfer("USDT", 10000, "spot", "margin")
    await ex.create_order(SYMBOL, "market", "buy", 0.45, None,
                          {"marginMode": "cross", "sideEffectType": "MARGIN_BUY"})
    server.sim.set_price(SYMBOL, Decimal(40000))
    [record] = (await ex.sapi_get_margin_forceliquidationrec())["rows"]
    assert (record["symbol"], record["side"], record["isIsolated"]) == ("BTCUSDT", "SELL", False)
    balance = await ex.fetch_balance({"type": "margin"})
    assert balance["USDT"]["debt"] == 0 and balance["BTC"]["total"] < 0.001
    trades = await ex.fetch_my_trades(SYMBOL, params={"marginMode": "cross"})
    assert [t["side"] for t in trades] == ["buy", "sell"]
    assert await ex.fetch_my_trades(SYMBOL) == []  # the spot wallet's trades are apart


@pytest.mark.asyncio
async def test_the_keys_margin_permission_is_in_its_restrictions(
    make_exchange: ExchangeFactory,
) -> None:
    spec = trader_spec(permissions=frozenset({Permission.READ, Permission.TRADE}))
    async with SimulatorServer(sim_config(accounts=(spec,))) as server:
        ex = await _margin_client(make_exchange, server)
        restrictions = await ex.sapi_get_account_apirestrictions()
        assert restrictions["enableMargin"] is False and restrictions["enableReading"] is True
        with pytest.raises(ccxt.AuthenticationError, match="-2015"):
            await ex.borrow_cross_margin("USDT", 10)
