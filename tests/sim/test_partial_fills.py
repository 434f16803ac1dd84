"""Orders filled in several trades (`Simulator.fill_split`): parts, funds and status.

A taker takes every part at once; a resting order one part per public trade through its
price, never two from one trade however often the account is looked at; what the order
held is released part by part, and a cancel of a partly filled order returns the rest.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

import pytest

from ctsd.sim.accounts import Account, FeeSchedule, OrderStatus, OrderType, Side
from ctsd.sim.matching import OrderRequest
from ctsd.sim.state import Simulator
from ctsd.sim.wire import order_status
from tests.sim.conftest import sim_config, trader_spec

FEES = FeeSchedule(Decimal("0.001"), Decimal("0.002"), base_fee_on_buy=True)
SYMBOL = "BTC/USDT"


def world(split: int) -> tuple[Simulator, Account]:
    sim = Simulator(sim_config())
    sim.fill_split = split
    account = sim.accounts.get(trader_spec().api_key)
    assert account is not None
    return sim, account


def held(account: Account) -> tuple[Decimal, Decimal]:
    """BTC and USDT, free plus locked: what the account owns."""
    return account.holding("BTC").total, account.holding("USDT").total


@pytest.mark.parametrize("qty, parts", [("0.01", ["0.00334", "0.00334", "0.00332"]),
                                        ("0.0001", ["0.00004", "0.00004", "0.00002"])])
def test_a_taker_fills_in_parts_of_at_most_a_third_each_its_own_trade(
    qty: str, parts: list[str],
) -> None:
    sim, account = world(3)
    before = held(account)
    order = sim.place_order(account, OrderRequest(SYMBOL, Side.BUY, OrderType.MARKET,
                                                  Decimal(qty)), FEES)
    fills = account.fills_of(order.id)
    assert [f.qty for f in fills] == [Decimal(p) for p in parts]
    assert len({f.trade_id for f in fills}) == len(fills)
    assert order.status is OrderStatus.FILLED and order.locked == 0
    assert sum(f.fee for f in fills) == order.fee and order.fee_asset == "BTC"
    btc, usdt = held(account)
    assert btc - before[0] == order.filled - order.fee
    assert before[1] - usdt == order.cost and account.holding("USDT").locked == 0


def test_a_resting_order_fills_a_part_per_public_trade_through_it_and_a_cancel_frees_the_rest(
) -> None:
    sim, account = world(3)
    price = sim.market.price(SYMBOL)
    limit = (price * Decimal("0.99")).quantize(Decimal("0.1"), ROUND_DOWN)
    before = held(account)
    order = sim.place_order(account, OrderRequest(SYMBOL, Side.BUY, OrderType.LIMIT,
                                                  Decimal("0.003"), limit), FEES)
    locked = order.locked
    assert order.status.is_open and order.filled == 0 and locked > 0
    sim.set_price(SYMBOL, (limit * Decimal("0.98")).quantize(Decimal("0.1")))
    assert order.filled == Decimal("0.001")
    for _ in range(3):  # the same trade, looked at again: nothing more fills
        sim.touch(account)
    assert order.filled == Decimal("0.001") and len(account.fills_of(order.id)) == 1
    assert order_status(order, {OrderStatus.NEW: "NEW"}, "PARTIALLY_FILLED") == \
        "PARTIALLY_FILLED"
    assert order.locked == locked * 2 / 3 == account.holding("USDT").locked
    sim.advance(5)  # the next public trade
    assert order.filled == Decimal("0.002") and order.status.is_open
    sim.cancel_order(account, order)
    assert order.status is OrderStatus.CANCELED and order.locked == 0
    assert account.holding("USDT").locked == 0
    fills = account.fills_of(order.id)
    btc, usdt = held(account)
    assert btc - before[0] == Decimal("0.002") - sum(f.fee for f in fills)
    assert before[1] - usdt == sum(f.qty * f.price for f in fills) == order.cost
    assert all(f.maker and f.price == limit for f in fills)


def test_unsplit_orders_fill_in_one_trade() -> None:
    sim, account = world(1)
    order = sim.place_order(account, OrderRequest(SYMBOL, Side.SELL, OrderType.MARKET,
                                                  Decimal("0.01")), FEES)
    assert [f.qty for f in account.fills_of(order.id)] == [Decimal("0.01")]
