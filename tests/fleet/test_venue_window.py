"""A fenced request against the simulated venue, through the real ccxt client.

The lease's deadline travels as Binance's `timestamp` + `recvWindow` (params) and as
Bybit's `X-BAPI-TIMESTAMP` + `X-BAPI-RECV-WINDOW` (headers ccxt signs from its
options), so the venue itself refuses a placement that arrives after it; a guard that
is no longer in time stops the request before it leaves. OKX and Kraken take no such
bound through the pinned ccxt (docs/operations.md, the fleet section).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from decimal import Decimal

import pytest

from ctsd import fencing
from ctsd.errors import ExchangeFailure, FailureClass, LeaseLost
from ctsd.sim.server import SimulatorServer
from tests.support.exchange_clients import ClientMaker, factory, make_client, server

__all__ = ["factory", "make_client", "server"]  # fixtures

SYMBOL = "BTC/USDT"


@dataclass
class Guard:
    in_time: bool
    deadline: int

    def check(self) -> None:
        if not self.in_time:
            raise LeaseLost("renewal overdue")

    def deadline_ms(self) -> int:
        return self.deadline


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.mark.asyncio
@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_the_venue_acts_only_on_a_fenced_order_that_arrives_within_its_deadline(
        server: SimulatorServer, make_client: ClientMaker, venue: str) -> None:
    client = await make_client(venue)
    price = client.price_to_precision(SYMBOL, (await client.fetch_ticker(SYMBOL)).last / 2)
    amount = Decimal("0.01")
    with fencing.guarded(Guard(True, now_ms() + 5_000)):
        placed = await client.create_order(SYMBOL, "buy", "limit", amount, price)
    with fencing.guarded(Guard(True, now_ms() - 2_000)), pytest.raises(ExchangeFailure) as late:
        await client.create_order(SYMBOL, "buy", "limit", amount, price)
    # Binance -1021, Bybit 10002: outside the window
    assert late.value.failure is FailureClass.CLOCK_SKEW
    # the late window was this request's alone: the next, unfenced, has the usual one
    other = await client.create_order(SYMBOL, "buy", "limit", amount, price)
    await client.cancel_order(other.id, SYMBOL)
    with fencing.guarded(Guard(False, now_ms() + 5_000)), pytest.raises(LeaseLost):
        await client.create_order(SYMBOL, "buy", "limit", amount, price)
    with fencing.guarded(Guard(False, now_ms() + 5_000)), pytest.raises(LeaseLost):
        await client.cancel_order(placed.id, SYMBOL)
    assert [o.id for o in await client.fetch_open_orders(SYMBOL)] == [placed.id]


@pytest.mark.asyncio
async def test_a_late_window_never_reaches_a_concurrent_request_of_the_same_client(
        server: SimulatorServer, make_client: ClientMaker) -> None:
    """Bybit's window is signed from the ccxt instance's options: requests in flight
    together, late fenced ones among them, each keep their own."""
    client = await make_client("bybit")
    price = client.price_to_precision(SYMBOL, (await client.fetch_ticker(SYMBOL)).last / 2)

    async def place(late: bool) -> bool:
        if not late:
            await client.create_order(SYMBOL, "buy", "limit", Decimal("0.01"), price)
            return True
        with fencing.guarded(Guard(True, now_ms() - 2_000)):
            try:
                await client.create_order(SYMBOL, "buy", "limit", Decimal("0.01"), price)
            except ExchangeFailure as exc:
                assert exc.failure is FailureClass.CLOCK_SKEW
                return False
            return True

    lates = [i % 2 == 0 for i in range(8)]
    placed = await asyncio.gather(*(place(late) for late in lates))
    assert placed == [not late for late in lates]
    assert len(await client.fetch_open_orders(SYMBOL)) == lates.count(False)
