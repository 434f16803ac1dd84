"""Position flips on the position-wallet venues (Kraken, OKX spot margin) with unmodified
ccxt: one order that closes a position and opens the other way is a close and an open.

Each case runs two accounts side by side on one simulator: the flipper opens a 5x
position with an order of 1 BTC and sends the opposite order of 2 BTC; the reference,
flat, sends at the same moment the opposite order of what the flip opens (1 BTC, or
1.001 past an OKX long that paid its fee in BTC). The flipper's new position must be the one
the reference opened: the same margin posted, size, cost, fee, loan and charges, and
Kraken's `TradeBalance` margin `m` the same; none of the closed position's. A 5x
position must be able to flip at 5x: the borrow check counts only what the order opens.
Every way an order fills: at once (market), resting then filled (limit), in parts
(`fill_split` 3: the part that crosses zero closes a third and opens a sixth).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt
import pytest

from ctsd.sim.clock import ManualClock
from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import PASSPHRASE, ExchangeFactory, sim_config, trader_spec

SYMBOL = "BTC/USDT"
START = Decimal(60000)
MOVES = {"at-a-gain": Decimal(1000), "at-a-loss": Decimal(-1000)}
"""How far the price moves in the position's favour before the flip."""
TOLERANCE = Decimal("0.01")

Fields = dict[str, Any]


@dataclass(frozen=True)
class Venue:
    cls: Any
    keys: tuple[tuple[str, str], tuple[str, str]]
    """(api key, secret) of the flipper and of the reference."""
    params: dict[str, Any]
    position: Callable[[Any], Awaitable[Fields]]
    """The one open position's comparable fields, as the venue serves them."""


async def _kraken_position(ex: Any) -> Fields:
    [row] = (await ex.private_post_openpositions({"docalcs": True}))["result"].values()
    trade = (await ex.private_post_tradebalance({"asset": "ZUSD"}))["result"]
    return {k: row[k] for k in ("type", "vol", "cost", "fee", "margin", "net")} | {
        "m": trade["m"]}


def _okx_position(mode: str) -> Callable[[Any], Awaitable[Fields]]:
    async def read(ex: Any) -> Fields:
        [row] = (await ex.private_get_account_positions({"instType": "MARGIN"}))["data"]
        assert row["mgnMode"] == mode
        return {k: row[k] for k in ("posCcy", "pos", "avgPx", "liab", "liabCcy", "interest",
                                    "imr", "margin", "mgnRatio")}
    return read


VENUES = {
    "kraken": Venue(ccxt.kraken, (("kraken-flip", "c2ltLXNlY3JldC0wMDAx"),
                                  ("kraken-ref", "c2ltLXNlY3JldC0wMDAy")),
                    {"leverage": 5}, _kraken_position),
    "okx-isolated": Venue(ccxt.okx, (("okx-flip", "okx-flip-secret"),
                                     ("okx-ref", "okx-ref-secret")),
                          {"marginMode": "isolated"}, _okx_position("isolated")),
    "okx-cross": Venue(ccxt.okx, (("okx-flip", "okx-flip-secret"),
                                  ("okx-ref", "okx-ref-secret")),
                       {"marginMode": "cross"}, _okx_position("cross")),
}


async def _held(ex: Any, order_id: str) -> float:
    """What an order that opened a position holds: what it filled, less a fee taken in
    the base (OKX's on a buy)."""
    order = await ex.fetch_order(order_id, SYMBOL)
    fee = order["fee"]["cost"] if order["fee"]["currency"] == "BTC" else 0
    return float(Decimal(str(order["filled"])) - Decimal(str(fee)))


def _same(flipped: Fields, reference: Fields) -> None:
    """Equal strings, numbers within a cent (fees are rounded per fill)."""
    for key, value in reference.items():
        mine = flipped[key]
        try:
            close = abs(Decimal(mine or 0) - Decimal(value or 0)) <= TOLERANCE
        except ArithmeticError:
            close = mine == value
        assert close, f"{key}: flipped {mine}, a fresh position {value} ({flipped})"


@pytest.mark.asyncio
@pytest.mark.parametrize("split", [1, 3], ids=["whole", "in-parts"])
@pytest.mark.parametrize("path", ["market", "limit"])
@pytest.mark.parametrize("move", MOVES.values(), ids=MOVES.keys())
@pytest.mark.parametrize("first", ["buy", "sell"], ids=["long-to-short", "short-to-long"])
@pytest.mark.parametrize("venue", VENUES.values(), ids=VENUES.keys())
async def test_a_flip_leaves_the_position_a_fresh_order_opens(
    make_exchange: ExchangeFactory, venue: Venue, first: str, move: Decimal, path: str,
    split: int,
) -> None:
    second = "sell" if first == "buy" else "buy"
    specs = tuple(trader_spec(api_key=key, secret=secret, passphrase=PASSPHRASE)
                  for key, secret in venue.keys)
    clock = ManualClock(time.time_ns() // 1_000_000)  # OKX signs with the wall clock
    async with SimulatorServer(sim_config(accounts=specs), clock=clock) as server:
        server.sim.fill_split = split
        flipper, reference = (
            make_exchange(venue.cls, server.base_url, apiKey=key, secret=secret,
                          password=PASSPHRASE) for key, secret in venue.keys)
        await flipper.load_markets()
        await reference.load_markets()
        server.sim.set_price(SYMBOL, START)
        opened = await flipper.create_order(SYMBOL, "market", first, 1, None, venue.params)
        rest = 2 - await _held(flipper, opened["id"])
        moved = START + move if first == "buy" else START - move
        server.sim.set_price(SYMBOL, moved)
        if path == "market":
            flip = await flipper.create_order(SYMBOL, "market", second, 2, None, venue.params)
            await reference.create_order(SYMBOL, "market", second, rest, None, venue.params)
        else:
            away = Decimal(500) if second == "sell" else Decimal(-500)
            limit = float(moved + away)
            flip = await flipper.create_order(SYMBOL, "limit", second, 2, limit, venue.params)
            await reference.create_order(SYMBOL, "limit", second, rest, limit, venue.params)
            server.sim.set_price(SYMBOL, moved + 2 * away)  # trades through both limits
            for _ in range(split - 1):
                server.sim.advance(5)  # one part per public trade
        order = await flipper.fetch_order(flip["id"], SYMBOL)
        assert order["status"] == "closed" and order["filled"] == 2
        _same(await venue.position(flipper), await venue.position(reference))
