"""Unit logic of the LIVE broker against an in-memory exchange client.

The real ccxt client is exercised against the simulator elsewhere; here the fake
only has to honour the `ExchangeOrderClient` contract.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from ctsd.engine.brokers.live import LiveBroker
from ctsd.engine.orders import Order, OrderRequest, OrderStatus, client_order_id
from ctsd.errors import FailedPrecondition, Unavailable
from ctsd.strategies.model import Balance, MarketSnapshot, OrderType, Side
from tests.engine.fakes import FakeExchange
from tests.support.virtual_clock import VirtualClock

SYMBOL = "BTC/USDT"
D = Decimal
EMPTY = MarketSnapshot(0, ())


def request(cycle: int = 1, index: int = 0, price: str = "95") -> OrderRequest:
    return OrderRequest(client_order_id("e1e1", cycle, index), SYMBOL, Side.BUY, OrderType.LIMIT,
                        D(1), D(price), "grid:BTC/USDT:-1:buy", cycle)


def live(exchange: FakeExchange, **options: Any) -> LiveBroker:
    return LiveBroker(exchange, [SYMBOL], VirtualClock(), **options)


@pytest.mark.asyncio
async def test_an_order_is_sent_once_under_its_client_order_id() -> None:
    exchange = FakeExchange()
    broker = live(exchange)
    execution = await broker.place(request())
    assert execution.order.status is OrderStatus.OPEN
    assert list(exchange.orders) == ["ctse1e1c1i0"]
    assert exchange.calls == ["fetch_order", "create_order"]
    assert broker.open_orders() == (execution.order,)


@pytest.mark.asyncio
async def test_a_lost_reply_is_retried_by_asking_first_never_by_resending() -> None:
    exchange = FakeExchange()
    exchange.lose_next_reply = True  # the venue accepts, the answer times out
    execution = await live(exchange).place(request())
    assert execution.order.status is OrderStatus.OPEN
    assert exchange.calls.count("create_order") == 1
    assert len(exchange.orders) == 1


@pytest.mark.asyncio
async def test_a_send_that_never_arrived_is_sent_again() -> None:
    exchange = FakeExchange()
    exchange.refuse_next = Unavailable("connection reset")
    execution = await live(exchange, check_before_place=False).place(request())
    assert execution.order.status is OrderStatus.OPEN
    assert exchange.calls == ["create_order", "fetch_order", "create_order"]


@pytest.mark.asyncio
async def test_when_every_attempt_fails_the_error_surfaces_for_reconciliation() -> None:
    exchange = FakeExchange()
    exchange.lose_next_reply = True
    with pytest.raises(Unavailable):
        await live(exchange, attempts=1).place(request())
    assert len(exchange.orders) == 1  # it did arrive: reconcile will find it by id


@pytest.mark.asyncio
async def test_an_order_already_at_the_venue_is_adopted_not_duplicated() -> None:
    exchange = FakeExchange()
    await live(exchange).place(request())
    exchange.calls.clear()
    again = await live(exchange).place(request())
    assert again.order.status is OrderStatus.OPEN
    assert exchange.calls == ["fetch_order"]


@pytest.mark.asyncio
async def test_a_venue_rejection_is_a_rejected_order_not_an_exception() -> None:
    exchange = FakeExchange()
    exchange.refuse_next = FailedPrecondition("insufficient balance")
    execution = await live(exchange).place(request())
    assert (execution.order.status, execution.order.reason) == (
        OrderStatus.REJECTED, "insufficient balance")
    assert live(exchange).open_orders() == ()


@pytest.mark.asyncio
async def test_fills_come_from_cumulative_amounts_and_are_never_booked_twice() -> None:
    exchange = FakeExchange(balances=(Balance("USDT", D(5), D(100)),))
    broker = live(exchange)
    order = (await broker.place(request())).order
    exchange.fill(order.client_order_id, D("0.4"), D(95), fee=D("0.04"))
    [partial] = await broker.refresh()
    assert partial.order.status is OrderStatus.OPEN
    assert [(f.amount, f.price, f.fee) for f in partial.fills] == [(D("0.4"), D(95), D("0.04"))]
    assert await broker.refresh() == ()
    exchange.fill(order.client_order_id, D("0.6"), D(94), fee=D("0.06"))
    [rest] = await broker.refresh()
    assert rest.order.status is OrderStatus.FILLED
    assert [(f.amount, f.price, f.fee) for f in rest.fills] == [(D("0.6"), D(94), D("0.06"))]
    assert partial.fills[0].trade_id != rest.fills[0].trade_id
    assert broker.open_orders() == ()
    assert broker.balances() == (Balance("USDT", D(5), D(100)),)


@pytest.mark.asyncio
async def test_cancelling_an_order_that_already_filled_reports_the_fill() -> None:
    exchange = FakeExchange()
    broker = live(exchange)
    order = (await broker.place(request())).order
    exchange.fill(order.client_order_id, D(1), D(95))
    execution = await broker.cancel(order)
    assert execution.order.status is OrderStatus.FILLED
    assert [f.amount for f in execution.fills] == [D(1)]


@pytest.mark.asyncio
async def test_reconcile_resolves_pending_orders_and_adopts_strays() -> None:
    exchange = FakeExchange()
    sent = (await live(exchange).place(request(cycle=1))).order  # acknowledged, then "crash"
    never_sent = Order.pending(request(cycle=2), 0)
    stray = (await live(exchange).place(request(cycle=3))).order  # store lost this row
    pending_sent = replace(sent, status=OrderStatus.PENDING)

    broker = live(exchange)
    changed = {e.order.client_order_id: e.order for e in
               await broker.reconcile([pending_sent, never_sent], [])}
    assert changed[sent.client_order_id].status is OrderStatus.OPEN
    assert changed[never_sent.client_order_id].status is OrderStatus.REJECTED
    assert changed[stray.client_order_id].tag == "adopted"
    assert {o.client_order_id for o in broker.open_orders()} == {
        sent.client_order_id, stray.client_order_id}
    assert exchange.calls.count("create_order") == 2


@pytest.mark.asyncio
async def test_reconcile_raises_when_the_venue_cannot_answer() -> None:
    exchange = FakeExchange()
    exchange.fail_fetch = True
    with pytest.raises(Unavailable):
        await live(exchange).reconcile([Order.pending(request(), 0)], [])


@pytest.mark.asyncio
async def test_a_refresh_cancelled_midway_leaves_the_book_as_it_was() -> None:
    hung = asyncio.Event()

    class SlowBalance(FakeExchange):
        async def fetch_balance(self) -> tuple[Balance, ...]:
            hung.set()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    exchange = SlowBalance(balances=(Balance("USDT", D(5), D(100)),))
    broker = live(exchange)
    order = (await broker.place(request())).order
    exchange.fill(order.client_order_id, D(1), D(95), fee=D("0.1"))  # filled at the venue
    refresh = asyncio.ensure_future(broker.refresh())
    await hung.wait()  # the order's state is read, the balance is not
    refresh.cancel()
    with pytest.raises(asyncio.CancelledError):
        await refresh
    assert [o.status for o in broker.open_orders()] == [OrderStatus.OPEN]  # nothing applied
