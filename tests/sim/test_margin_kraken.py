"""Kraken margin with unmodified ccxt: `leverage` orders open and close positions,
`OpenPositions` (ccxt `fetch_positions`), `TradeBalance`'s margin fields, the posted
margin kept in `Balance`, rollover per 4 hours of the path clock, and liquidation at
Kraken's 40 % margin level."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt
import pytest

from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import ExchangeFactory, sim_config, trader_spec

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
