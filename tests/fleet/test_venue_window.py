"""A fenced request against the simulated Binance, through the real ccxt client.

The lease's deadline travels as Binance's `timestamp` + `recvWindow`, so the venue
itself refuses a placement that arrives after it; a guard that is no longer in
time stops the request before it leaves.
"""

from __future__ import annotations

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
async def test_binance_acts_only_on_a_fenced_order_that_arrives_within_its_deadline(
        server: SimulatorServer, make_client: ClientMaker) -> None:
    client = await make_client("binance")
    price = client.price_to_precision(SYMBOL, (await client.fetch_ticker(SYMBOL)).last / 2)
    amount = Decimal("0.01")
    with fencing.guarded(Guard(True, now_ms() + 5_000)):
        placed = await client.create_order(SYMBOL, "buy", "limit", amount, price)
    with fencing.guarded(Guard(True, now_ms() - 2_000)), pytest.raises(ExchangeFailure) as late:
        await client.create_order(SYMBOL, "buy", "limit", amount, price)
    assert late.value.failure is FailureClass.CLOCK_SKEW  # -1021: outside the recvWindow
    with fencing.guarded(Guard(False, now_ms() + 5_000)), pytest.raises(LeaseLost):
        await client.create_order(SYMBOL, "buy", "limit", amount, price)
    with fencing.guarded(Guard(False, now_ms() + 5_000)), pytest.raises(LeaseLost):
        await client.cancel_order(placed.id, SYMBOL)
    assert [o.id for o in await client.fetch_open_orders(SYMBOL)] == [placed.id]
