"""OKX spot margin with unmodified ccxt: `tdMode` cross/isolated orders that borrow on
their own, MARGIN positions, the loan in the trading balance, max-loan, interest per
hour of the path clock, the leverage of a spot instrument, and liquidation."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt
import pytest

from ctsd.sim.clock import ManualClock
from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import API_KEY, PASSPHRASE, SECRET, ExchangeFactory, sim_config, trader_spec

SYMBOL = "BTC/USDT"


async def _okx(make: ExchangeFactory, server: SimulatorServer) -> Any:
    ex = make(ccxt.okx, server.base_url, apiKey=API_KEY, secret=SECRET, password=PASSPHRASE)
    await ex.load_markets()
    server.sim.set_price(SYMBOL, Decimal(60000))
    return ex


@pytest.mark.asyncio
async def test_a_cross_margin_long_borrows_holds_a_position_and_closes(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = await _okx(make_exchange, server)
    assert ex.market(SYMBOL)["margin"] is True
    await ex.set_leverage(5, SYMBOL, {"marginMode": "cross"})
    order = await ex.create_order(SYMBOL, "market", "buy", 1, None, {"marginMode": "cross"})
    assert order["id"]
    [position] = await ex.fetch_positions([SYMBOL], {"instType": "MARGIN"})
    assert (position["side"], position["marginMode"]) == ("long", "cross")
    assert position["contracts"] == 0.999 and position["leverage"] == 5  # fee in BTC
    info = position["info"]
    assert info["instType"] == "MARGIN" and info["liabCcy"] == "USDT"
    assert 47000 < -float(info["liab"]) < 49000  # 4/5 of ~60,000 borrowed
    balance = await ex.fetch_balance()
    [usdt] = [d for d in balance["info"]["data"][0]["details"] if d["ccy"] == "USDT"]
    assert float(usdt["liab"]) == -float(info["liab"])  # the loan is in the trading balance
    loans = (await ex.private_get_account_max_loan({"instId": "BTC-USDT",
                                                    "mgnMode": "cross"}))["data"]
    assert {row["side"] for row in loans} == {"buy", "sell"}
    server.sim.advance(2 * 3600)
    accrued = (await ex.private_get_account_interest_accrued({"instId": "BTC-USDT"}))["data"]
    assert len(accrued) == 2 and all(a["ccy"] == "USDT" and a["type"] == "2" for a in accrued)
    orders = await ex.fetch_open_orders(SYMBOL)
    assert orders == []
    await ex.create_order(SYMBOL, "market", "sell", position["contracts"], None,
                          {"marginMode": "cross"})
    assert await ex.fetch_positions([SYMBOL], {"instType": "MARGIN"}) == []
    fills = (await ex.private_get_trade_fills({"instType": "MARGIN"}))["data"]
    assert [f["side"] for f in fills] == ["sell", "buy"]


@pytest.mark.asyncio
async def test_an_isolated_short_is_liquidated_as_the_price_rises(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = await _okx(make_exchange, server)
    await ex.create_order(SYMBOL, "market", "sell", 1, None, {"marginMode": "isolated"})
    [short] = await ex.fetch_positions([SYMBOL], {"instType": "MARGIN"})
    assert short["side"] == "short" and short["info"]["liabCcy"] == "BTC"
    liquidation = float(short["info"]["liqPx"])
    assert 60000 < liquidation < 75000
    server.sim.set_price(SYMBOL, Decimal(str(liquidation)) + 100)
    assert await ex.fetch_positions([SYMBOL], {"instType": "MARGIN"}) == []
    rates = (await ex.private_get_account_interest_rate({"ccy": "BTC"}))["data"]
    assert Decimal(rates[0]["interestRate"]) > 0


@pytest.mark.asyncio
async def test_a_reopened_position_is_dated_by_its_own_opening(
    make_exchange: ExchangeFactory,
) -> None:
    """`cTime` is the position's creation: after a long closed, the short opened a second
    later is dated by its own opening fill, not by the wallet's first loan (the long's)."""
    clock = ManualClock(time.time_ns() // 1_000_000)  # OKX signs with the wall clock
    async with SimulatorServer(sim_config(), clock=clock) as server:
        ex = await _okx(make_exchange, server)
        await ex.create_order(SYMBOL, "market", "buy", 1, None, {"marginMode": "isolated"})
        [long] = await ex.fetch_positions([SYMBOL], {"instType": "MARGIN"})
        clock.advance(1)
        await ex.create_order(SYMBOL, "market", "sell", long["contracts"], None,
                              {"marginMode": "isolated"})
        clock.advance(1)
        reopened = clock.now_ms()
        await ex.create_order(SYMBOL, "market", "sell", "0.5", None, {"marginMode": "isolated"})
        [short] = await ex.fetch_positions([SYMBOL], {"instType": "MARGIN"})
        assert short["side"] == "short" and int(long["info"]["cTime"]) == reopened - 2000
        assert int(short["info"]["cTime"]) == reopened


FUNDS = Decimal(10000)
"""The USDT of the account that shorts: its margin and nothing else."""
PRICE = Decimal(60000)
LOT = Decimal("0.00001")


@pytest.mark.asyncio
@pytest.mark.parametrize("leverage", [2, 3, 5])
@pytest.mark.parametrize("mode", ["isolated", "cross"])
async def test_a_short_posts_its_notional_over_its_leverage(
    make_exchange: ExchangeFactory, mode: str, leverage: int,
) -> None:
    """OKX's isolated margin rules (okx.com/help-center/6997123251341): "Short positions:
    initial margin = open amount / leverage * open price", as a long's is its amount
    over its leverage. So 10,000 USDT opens a short of up to 10,000 x leverage; one of
    nine tenths of that is taken, and its position shows that margin: `margin`
    (isolated: what was posted less the sale's fee) or `imr` (cross: the notional over
    `lever`), which ccxt reads as an initial margin of 1/leverage. `max-loan`'s sell
    side is what the margin left in the account can borrow at that leverage, before
    and after. The simulator posted 1/(leverage - 1) of the short's notional and
    refused all three (9,000 USDT of margin at 2x needed 18,000)."""
    spec = trader_spec(spot={"USDT": FUNDS}, derivatives={})
    async with SimulatorServer(sim_config(accounts=(spec,))) as server:
        ex = await _okx(make_exchange, server)
        params = {"marginMode": mode}
        await ex.set_leverage(leverage, SYMBOL, params)
        lever = Decimal(leverage)

        async def sell_loan() -> Decimal:
            rows = (await ex.private_get_account_max_loan({"instId": "BTC-USDT",
                                                           "mgnMode": mode}))["data"]
            return next(Decimal(r["maxLoan"]) for r in rows if r["side"] == "sell")

        assert await sell_loan() == (FUNDS * lever / PRICE).quantize(LOT)
        amount = FUNDS * lever * Decimal("0.9") / PRICE
        order = await ex.create_order(SYMBOL, "market", "sell", amount, None, params)
        [position] = await ex.fetch_positions([SYMBOL], {"instType": "MARGIN"})
        row = position["info"]
        assert (position["side"], row["mgnMode"], row["lever"]) == ("short", mode, str(lever))
        assert (row["liabCcy"], Decimal(row["liab"])) == ("BTC", -amount)
        notional = amount * Decimal(row["avgPx"])
        posted = notional / lever
        fee = Decimal(str((await ex.fetch_order(order["id"], SYMBOL))["fee"]["cost"]))
        if mode == "isolated":
            assert row["imr"] == ""  # posted at the order's hold price, a tick from the fill
            assert Decimal(row["margin"]) + fee == pytest.approx(posted, rel=Decimal("1e-5"))
            assert position["initialMarginPercentage"] == pytest.approx(1 / leverage)
        else:
            assert row["margin"] == "" and Decimal(row["imr"]) == posted
            assert Decimal(row["notionalUsd"]) == notional  # the mark is the fill's price
            assert position["initialMarginPercentage"] == pytest.approx(1 / leverage,
                                                                        abs=1e-4)
        assert Decimal(str(position["initialMargin"])) == Decimal(row["margin"] or row["imr"])
        assert await sell_loan() == ((FUNDS - posted) * lever / PRICE).quantize(LOT)


async def _short_for(ex: Any, server: SimulatorServer, mode: str, hours: int) -> Any:
    """A 0.3 BTC short at 3x that has paid `hours` of interest (in BTC)."""
    params = {"marginMode": mode}
    await ex.set_leverage(3, SYMBOL, params)
    await ex.create_order(SYMBOL, "market", "sell", "0.3", None, params)
    server.sim.advance(hours * 3600)
    [short] = await ex.fetch_positions([SYMBOL], {"instType": "MARGIN"})
    assert Decimal(short["info"]["interest"]) > 0
    return short


@pytest.mark.asyncio
@pytest.mark.parametrize("hours", [2, 240], ids=["2h", "10d"])
@pytest.mark.parametrize("mode", ["isolated", "cross"])
async def test_close_position_repays_a_short_whole_and_the_next_long_opens_fresh(
    make_exchange: ExchangeFactory, mode: str, hours: int,
) -> None:
    """`trade/close-position` (ccxt `close_position`) of a MARGIN short buys back its
    whole liability, interest included, grossed up by the taker fee that OKX takes in
    BTC, to the satoshi (a lot more would leave the position's wallet for the trading
    balance): nothing is owed afterwards, the position is gone, its wallet empty, and
    the next long posts and borrows what a fresh account's does, after two hours' interest
    or ten days' (worth more than the pair's minimum order). A buy of the short's size
    left the fee and the interest owed in BTC, the wallet open with the short's USDT,
    and the next long traded on that. Before, the endpoint did not exist."""
    spec = trader_spec(spot={"USDT": FUNDS}, derivatives={})
    async with SimulatorServer(sim_config(accounts=(spec,))) as server:
        ex = await _okx(make_exchange, server)
        short = await _short_for(ex, server, mode, hours)
        owed = -Decimal(short["info"]["liab"])
        assert owed > Decimal("0.3")  # the interest is owed in BTC on top of the sale
        closed = await ex.close_position(SYMBOL, None, {"marginMode": mode,
                                                        "clientOrderId": "close1"})
        assert closed["clientOrderId"] == "close1"
        order = await ex.fetch_order(None, SYMBOL, {"clOrdId": "close1"})
        taker = Decimal(str(order["fee"]["cost"])) / Decimal(str(order["filled"]))
        assert order["side"] == "buy" and order["status"] == "closed"
        assert Decimal(str(order["filled"])) * (1 - taker) >= owed
        assert await ex.fetch_positions([SYMBOL], {"instType": "MARGIN"}) == []
        account = server.sim.accounts.get(API_KEY)
        assert account is not None
        wallet = f"okx:{mode}:{SYMBOL}"
        assert all(not (h.total or h.debt) for h in account.wallet(wallet).values())
        assert account.holding("BTC").debt == 0
        assert account.holding("BTC").free <= Decimal("0.00000002")  # past the debt: dust
        usdt = account.holding("USDT").free
        await ex.create_order(SYMBOL, "market", "buy", "0.1", None, {"marginMode": mode})
        [long] = await ex.fetch_positions([SYMBOL], {"instType": "MARGIN"})
        cost = Decimal("0.1") * Decimal(long["info"]["avgPx"])
        assert -Decimal(long["info"]["liab"]) == pytest.approx(cost * 2 / 3, abs=LOT)
        assert usdt - account.holding("USDT").free == pytest.approx(cost / 3, abs=LOT)
        with pytest.raises(ccxt.ExchangeError, match="51023"):
            await ex.close_position("ETH/USDT", None, {"marginMode": mode})
