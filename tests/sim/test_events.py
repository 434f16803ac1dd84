"""The account event bus: what the simulator publishes, in which order, as of when."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from ctsd.sim.accounts import OrderStatus, OrderType, Side, TimeInForce
from ctsd.sim.binance_api import FEES, Surface
from ctsd.sim.clock import ManualClock
from ctsd.sim.events import AccountEvent, AccountUpdate, ExecKind, OrderUpdate, UpdateReason
from ctsd.sim.matching import OrderRequest
from ctsd.sim.state import Simulator
from tests.sim.conftest import API_KEY, T0, sim_config

SPOT = FEES[Surface.SPOT]


def simulator() -> tuple[Simulator, list[AccountEvent]]:
    sim = Simulator(sim_config(), clock=ManualClock(T0))
    seen: list[AccountEvent] = []
    sim.events.subscribe(API_KEY, seen.append)
    return sim, seen


def market_buy(symbol: str, qty: str) -> OrderRequest:
    return OrderRequest(symbol, Side.BUY, OrderType.MARKET, Decimal(qty))


def limit_buy(sim: Simulator, symbol: str, below: str, **extra: Any) -> OrderRequest:
    """A buy of one unit `below` (a fraction) of the price, on the tick."""
    inst = sim.market.instrument(symbol)
    price = (sim.market.price(symbol) * Decimal(below)).quantize(inst.tick_size)
    return OrderRequest(symbol, Side.BUY, OrderType.LIMIT, Decimal(1), price, **extra)


def test_nothing_is_published_when_nobody_listens() -> None:
    sim = Simulator(sim_config(), clock=ManualClock(T0))
    account = sim.accounts.get(API_KEY)
    assert account is not None
    sim.place_order(account, market_buy("BTC/USDT", "0.01"), SPOT)
    assert sim.events.published == 0


def test_a_market_order_is_new_then_its_fill_then_the_balances_it_moved() -> None:
    sim, seen = simulator()
    account = sim.accounts.get(API_KEY)
    assert account is not None
    order = sim.place_order(account, market_buy("BTC/USDT", "0.01"), SPOT)
    new, trade, balances = seen
    assert isinstance(new, OrderUpdate) and isinstance(trade, OrderUpdate)
    assert (new.kind, new.order.status, new.order.filled) == (
        ExecKind.NEW, OrderStatus.NEW, Decimal(0))
    assert new.fill is None
    assert (trade.kind, trade.order.status, trade.order.filled) == (
        ExecKind.TRADE, OrderStatus.FILLED, Decimal("0.01"))
    assert trade.fill is account.fills[-1] and trade.fill.order_id == order.id
    assert isinstance(balances, AccountUpdate)
    assert (balances.reason, balances.spot_assets, balances.positions) == (
        UpdateReason.ORDER, ("BTC", "USDT"), ())


def test_updates_are_copies_as_of_their_instant() -> None:
    sim, seen = simulator()
    account = sim.accounts.get(API_KEY)
    assert account is not None
    order = sim.place_order(account, limit_buy(sim, "ETH/USDT", "0.9"), SPOT)
    sim.cancel_order(account, order)
    new, _, canceled, _ = seen
    assert isinstance(new, OrderUpdate) and isinstance(canceled, OrderUpdate)
    assert new.order is not order and new.order.status is OrderStatus.NEW
    assert canceled.kind is ExecKind.CANCELED and canceled.order.status is OrderStatus.CANCELED


def test_a_resting_order_reached_by_the_price_fills_as_maker_on_touch() -> None:
    sim, seen = simulator()
    account = sim.accounts.get(API_KEY)
    assert account is not None
    price = sim.market.price("ETH/USDT")
    sim.place_order(account, limit_buy(sim, "ETH/USDT", "0.95"), SPOT)
    seen.clear()
    sim.set_price("ETH/USDT", price * Decimal("0.9"))  # touches every account
    trade, balances = seen
    assert isinstance(trade, OrderUpdate) and trade.kind is ExecKind.TRADE
    assert trade.fill is not None and trade.fill.maker
    assert isinstance(balances, AccountUpdate) and balances.spot_assets == ("ETH", "USDT")


def test_an_order_that_expires_unfilled_is_reported_expired() -> None:
    sim, seen = simulator()
    account = sim.accounts.get(API_KEY)
    assert account is not None
    sim.place_order(account, limit_buy(sim, "ETH/USDT", "0.9", time_in_force=TimeInForce.IOC),
                    SPOT)
    assert [e.kind for e in seen if isinstance(e, OrderUpdate)] == [ExecKind.NEW,
                                                                     ExecKind.EXPIRED]


def test_a_perpetual_fill_names_the_settle_asset_and_the_position() -> None:
    sim, seen = simulator()
    account = sim.accounts.get(API_KEY)
    assert account is not None
    sim.place_order(account, market_buy("BTC/USDT:USDT", "0.01"), FEES[Surface.FUTURES])
    balances = seen[-1]
    assert isinstance(balances, AccountUpdate)
    assert (balances.derivative_assets, balances.positions) == (("USDT",), ("BTC/USDT:USDT",))


def test_a_failing_listener_neither_breaks_the_order_nor_the_other_listeners() -> None:
    sim, seen = simulator()

    def broken(_event: AccountEvent) -> None:
        raise RuntimeError("a rendering bug")

    stop = sim.events.subscribe(API_KEY, broken)
    account = sim.accounts.get(API_KEY)
    assert account is not None
    order = sim.place_order(account, market_buy("BTC/USDT", "0.01"), SPOT)
    assert order.status is OrderStatus.FILLED
    assert len(seen) == 3
    stop()
    stop()  # twice is harmless


def test_unsubscribing_the_last_listener_stops_publishing() -> None:
    sim = Simulator(sim_config(), clock=ManualClock(T0))
    seen: list[AccountEvent] = []
    stop = sim.events.subscribe(API_KEY, seen.append)
    assert sim.events.listening(API_KEY) and sim.events.listening_keys() == [API_KEY]
    stop()
    assert not sim.events.listening(API_KEY)
    account = sim.accounts.get(API_KEY)
    assert account is not None
    sim.place_order(account, market_buy("BTC/USDT", "0.01"), SPOT)
    assert seen == []


@pytest.mark.parametrize("kind", list(ExecKind))
def test_every_exec_kind_has_a_venue_name(kind: ExecKind) -> None:
    from ctsd.sim.ws import binance_wire

    assert kind in binance_wire._EXEC
