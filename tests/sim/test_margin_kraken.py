"""Kraken margin with unmodified ccxt: `leverage` orders open and close positions,
`OpenPositions` (ccxt `fetch_positions`), `TradeBalance`'s margin fields, the posted
margin kept in `Balance`, rollover per 4 hours of the path clock, and liquidation at
Kraken's 40 % margin level."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt
import pytest

from ctsd.sim.clock import ManualClock
from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import T0, ExchangeFactory, sim_config, trader_spec

SYMBOL = "BTC/USDT"
KEY, SECRET = "kraken-margin", "c2ltLXNlY3JldC0wMDAx"


async def _kraken(make: ExchangeFactory, server: SimulatorServer) -> Any:
    ex = make(ccxt.kraken, server.base_url, apiKey=KEY, secret=SECRET)
    await ex.load_markets()
    server.sim.set_price(SYMBOL, Decimal(60000))
    return ex


@pytest.fixture
def spec() -> Any:
    return trader_spec(api_key=KEY, secret=SECRET)


@pytest.mark.asyncio
async def test_a_leveraged_buy_opens_a_position_that_the_opposite_order_closes(
    make_exchange: ExchangeFactory, spec: Any,
) -> None:
    async with SimulatorServer(sim_config(accounts=(spec,))) as server:
        ex = await _kraken(make_exchange, server)
        assert ex.market(SYMBOL)["margin"] is True
        before = (await ex.fetch_balance())["USDT"]["total"]
        order = await ex.create_order(SYMBOL, "market", "buy", 1, None, {"leverage": 5})
        assert order["id"]
        [position] = await ex.fetch_positions()
        assert (position["symbol"], position["side"], position["contracts"]) == (SYMBOL, "long",
                                                                                 1)
        assert position["leverage"] == 5 and 11900 < position["initialMargin"] < 12100
        balance = await ex.fetch_balance()
        assert balance["USDT"]["total"] == before  # the posted margin stays in the balance
        trade = (await ex.private_post_tradebalance({"asset": "ZUSD"}))["result"]
        assert float(trade["m"]) == pytest.approx(position["initialMargin"], abs=0.001)
        assert Decimal(trade["ml"]) > 100
        server.sim.advance(8 * 3600)  # two rollovers
        raw = (await ex.private_post_openpositions())["result"]
        [(txid, entry)] = raw.items()
        assert txid.startswith("T") and entry["terms"] == "0.0200% per 4 hours"
        assert Decimal(entry["net"]) < Decimal(entry["value"]) - Decimal(entry["cost"])
        await ex.create_order(SYMBOL, "market", "sell", 1, None, {"leverage": 5})
        assert await ex.fetch_positions() == []


@pytest.mark.asyncio
async def test_a_position_at_kraken_margin_stop_is_liquidated(
    make_exchange: ExchangeFactory, spec: Any,
) -> None:
    async with SimulatorServer(sim_config(accounts=(spec,))) as server:
        ex = await _kraken(make_exchange, server)
        await ex.create_order(SYMBOL, "market", "buy", 1, None, {"leverage": 5})
        server.sim.set_price(SYMBOL, Decimal(54000))  # equity ~5,800: 48 % of 12,048 posted
        assert len(await ex.fetch_positions()) == 1
        server.sim.set_price(SYMBOL, Decimal(52000))  # ~3,800: under Kraken's 40 % stop
        assert await ex.fetch_positions() == []
        with pytest.raises(ccxt.ExchangeError, match="EOrder:Cannot open position"):
            await ex.create_order("QAAA/USDT", "market", "buy", 1, None, {"leverage": 2})


@pytest.mark.asyncio
async def test_ledgers_list_each_opening_fee_and_rollover_once_and_a_position_its_own(
    make_exchange: ExchangeFactory, spec: Any,
) -> None:
    """`Ledgers` books the opening fee (`margin`, amount 0) and every rollover
    (`rollover`) of each position, in the asset owed; a later position is named by its
    own opening order and its `net` carries only its own charges."""
    async with SimulatorServer(sim_config(accounts=(spec,))) as server:
        ex = await _kraken(make_exchange, server)
        since = server.sim.market.now_ms()
        await ex.create_order(SYMBOL, "market", "buy", 1, None, {"leverage": 5})
        server.sim.advance(8 * 3600)  # two rollovers
        await ex.create_order(SYMBOL, "market", "sell", 1, None, {"leverage": 5})
        second = await ex.create_order(SYMBOL, "market", "sell", "0.5", None, {"leverage": 2})
        rollovers = await ex.fetch_ledger(None, since, None, {"type": "rollover"})
        openings = await ex.fetch_ledger(None, since, None, {"type": "margin"})
        assert len(rollovers) == 2 and len(openings) == 2
        assert {e["currency"] for e in openings} == {"USDT", "BTC"}  # long owes USDT
        assert all(e["info"]["amount"].strip("0.") == "" for e in rollovers + openings)
        account = server.sim.accounts.get(KEY)
        assert account is not None
        charged = sorted(Decimal(e.amount) for e in account.loans.ledger
                         if e.kind.value == "interest")
        assert sorted(Decimal(e["info"]["fee"]) for e in rollovers + openings) == charged
        assert not await ex.fetch_ledger(None, since, None, {"type": "trade"})
        raw = (await ex.private_post_openpositions())["result"]
        [entry] = raw.values()
        assert entry["ordertxid"] == second["id"] and entry["type"] == "sell"
        [fee] = [e for e in openings if e["currency"] == "BTC"]
        value, cost = Decimal(entry["value"]), Decimal(entry["cost"])
        mark = value / Decimal(entry["vol"])  # the path moved over the advance
        assert Decimal(entry["net"]) == pytest.approx(
            cost - value - Decimal(fee["info"]["fee"]) * mark, abs=Decimal("0.01"))


CLOCK_STEPS = {
    "one-millisecond": (0, 0),  # the failing run: the close in the opening's millisecond
    "one-millisecond-apart": (1, 1),
    "clock-stepped-back": (1, -5_000),  # the wall clock set back between close and reopen
}


@pytest.mark.asyncio
@pytest.mark.parametrize("flip", [False, True], ids=["close-then-reopen", "flip"])
@pytest.mark.parametrize("steps", CLOCK_STEPS.values(), ids=CLOCK_STEPS.keys())
async def test_a_later_position_carries_only_its_own_charges_whatever_the_timing(
    make_exchange: ExchangeFactory, spec: Any, steps: tuple[int, int], flip: bool,
) -> None:
    """A 2x long (its opening fee and two rollovers, in USDT) then a short of 0.5 BTC,
    opened by a sell after the close or by the one sell that flips the long (a 2x long
    leaves the room to flip); the server clock moves by `steps` (ms) before the close and
    before the reopen. The short's `net` is its own P&L less its own opening fee (0.02 %
    of 0.5 BTC) and its `fee` its own order's (its opening share, for the flip): never the
    long's. A cut by timestamp counted the long's charges whenever the close fell in the
    long's millisecond (or the flip left no flat moment), and dropped the short's own when
    the clock stepped back."""
    clock = ManualClock(T0)
    async with SimulatorServer(sim_config(accounts=(spec,)), clock=clock) as server:
        ex = await _kraken(make_exchange, server)
        await ex.create_order(SYMBOL, "market", "buy", 1, None, {"leverage": 2})
        server.sim.advance(8 * 3600)  # two rollovers
        clock.advance(steps[0] / 1000)
        if flip:
            second = await ex.create_order(SYMBOL, "market", "sell", "1.5", None,
                                           {"leverage": 5})
        else:
            await ex.create_order(SYMBOL, "market", "sell", 1, None, {"leverage": 5})
            clock.advance(steps[1] / 1000)
            second = await ex.create_order(SYMBOL, "market", "sell", "0.5", None,
                                           {"leverage": 5})
        assert len(await ex.fetch_ledger(None, None, None, {"type": "rollover"})) == 2
        [entry] = (await ex.private_post_openpositions({"docalcs": True}))["result"].values()
        assert (entry["ordertxid"], entry["type"], entry["vol"]) == (second["id"], "sell",
                                                                     "0.50000000")
        value, cost = Decimal(entry["value"]), Decimal(entry["cost"])
        mark = value / Decimal(entry["vol"])
        own_fee = Decimal("0.5") * Decimal("0.0002")  # BTC: the short's opening fee only
        assert Decimal(entry["net"]) == pytest.approx(cost - value - own_fee * mark,
                                                      abs=Decimal("0.01"))
        order = await ex.fetch_order(second["id"], SYMBOL)
        share = Decimal("0.5") / Decimal(str(order["amount"]))
        assert Decimal(entry["fee"]) == pytest.approx(
            Decimal(str(order["fee"]["cost"])) * share, abs=Decimal("0.01"))
        trade = (await ex.private_post_tradebalance({"asset": "ZUSD"}))["result"]
        assert Decimal(trade["n"]) == pytest.approx(Decimal(entry["net"]), abs=Decimal("1e-4"))


SHORTS = (("BTC/USDT", 60000, "0.5", 2), ("ETH/USDT", 3000, "5", 3), ("SOL/USDT", 150, "100", 5))
"""(pair, price, amount, leverage): three shorts of 30,000, 15,000 and 15,000 USDT."""


@pytest.mark.asyncio
async def test_a_short_posts_its_cost_over_its_leverage_as_a_long_does(
    make_exchange: ExchangeFactory, spec: Any,
) -> None:
    """Kraken's used margin is the position's cost over its leverage on either side
    (support.kraken.com 203053156: a $10,000 short at 5x uses $2,000, at 2x $5,000).
    A short at 2x, 3x and 5x each shows that `margin` in `OpenPositions`;
    `TradeBalance` `m` is their sum and `mf` is equity less it. The simulator posted
    1/(leverage - 1) of a short's cost (twice Kraken's at 2x)."""
    async with SimulatorServer(sim_config(accounts=(spec,))) as server:
        ex = await _kraken(make_exchange, server)
        for pair, price, _, _ in SHORTS:
            server.sim.set_price(pair, Decimal(price))
        before = (await ex.private_post_tradebalance({"asset": "ZUSD"}))["result"]
        for pair, _, amount, leverage in SHORTS:
            await ex.create_order(pair, "market", "sell", amount, None, {"leverage": leverage})
        rows = (await ex.private_post_openpositions())["result"].values()
        margins = {}
        for row in rows:
            assert row["type"] == "sell"
            margins[row["pair"]] = Decimal(row["margin"])
            cost, times = Decimal(row["cost"]), Decimal(row["leverage"])
            assert Decimal(row["margin"]) == pytest.approx(cost / times, rel=Decimal("0.002"))
        assert len(margins) == len(SHORTS)
        trade = (await ex.private_post_tradebalance({"asset": "ZUSD"}))["result"]
        used = sum(margins.values(), Decimal(0))
        assert Decimal(trade["m"]) == pytest.approx(used, abs=Decimal("0.0001"))
        assert Decimal(trade["mf"]) == Decimal(trade["e"]) - Decimal(trade["m"])
        # the free margin falls by what the shorts posted (and their fees, < 0.5 %)
        dropped = Decimal(before["mf"]) - Decimal(trade["mf"])
        assert used <= dropped < used + Decimal("0.005") * 60000
