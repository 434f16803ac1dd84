"""The venue-independent perpetuals model: settings, margin, funding on the path clock,
liquidation, events (`ctsd.sim.derivatives`, `funding`, `liquidation`, `positions`).

In-process against `Simulator` with a `ManualClock`, so time only moves when a test
moves it: the server clock passing a funding time and `advance` jumping over one are
both exercised, and each must book the payment exactly once.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from ctsd.sim import derivatives
from ctsd.sim.accounts import (
    Account,
    FeeSchedule,
    OrderStatus,
    OrderType,
    Rejection,
    RejectKind,
    Side,
)
from ctsd.sim.clock import ManualClock
from ctsd.sim.derivatives import Refusal, SettingRefused
from ctsd.sim.events import AccountEvent, ExecKind, OrderUpdate, UpdateReason
from ctsd.sim.funding import FUNDING_INTERVAL_MS
from ctsd.sim.matching import OrderRequest
from ctsd.sim.positions import LedgerKind, MarginMode, PositionSide
from ctsd.sim.server import SimulatorServer
from ctsd.sim.state import Simulator
from tests.sim.conftest import API_KEY, sim_config

FEES = FeeSchedule(maker=Decimal("0.0002"), taker=Decimal("0.0005"))
BTC, SOL = "BTC/USDT:USDT", "SOL/USDT:USDT"
T0 = 1_750_000_000_000 - 1_750_000_000_000 % FUNDING_INTERVAL_MS + 3_600_000
"""One hour past a funding time."""


def _sim() -> tuple[Simulator, ManualClock, Account]:
    clock = ManualClock(T0)
    sim = Simulator(sim_config(), clock)
    sim.set_price(BTC, Decimal("60000"))
    sim.set_price(SOL, Decimal("150"))
    account = sim.accounts.get(API_KEY)
    assert account is not None
    return sim, clock, account


def _order(sim: Simulator, account: Account, symbol: str, side: Side, qty: str,
           **fields: Any) -> Any:
    return sim.place_order(account, OrderRequest(symbol, side, OrderType.MARKET, Decimal(qty),
                                                 **fields), FEES)


def _funding(account: Account) -> list[Decimal]:
    return [e.funding for e in account.perp.ledger if e.kind is LedgerKind.FUNDING]


def test_funding_passed_by_the_clock_is_paid_once_at_its_own_time() -> None:
    sim, clock, account = _sim()
    _order(sim, account, BTC, Side.BUY, "1")
    k = sim.set_funding_rate(BTC, Decimal("0.0002"))
    wallet = account.derivatives["USDT"]
    clock.advance(7 * 3600 - 1)
    sim.touch(account)
    assert _funding(account) == []
    clock.advance(2)  # one second past the funding time
    for _ in range(3):
        sim.touch(account)
    mark = sim.funding.mark_at(BTC, k)
    assert _funding(account) == [-mark * Decimal("0.0002")]
    [entry] = [e for e in account.perp.ledger if e.kind is LedgerKind.FUNDING]
    assert entry.time_ms == k * FUNDING_INTERVAL_MS  # stamped when the clock passed it
    assert account.derivatives["USDT"] == wallet + entry.amount


def test_advance_settles_every_funding_time_it_crosses_once_stamped_now() -> None:
    sim, clock, account = _sim()
    _order(sim, account, BTC, Side.SELL, "1")
    opened = clock.now_ms()
    clock.advance(60)
    sim.advance(3 * FUNDING_INTERVAL_MS / 1000)
    stamps = [e.time_ms for e in account.perp.ledger if e.kind is LedgerKind.FUNDING]
    assert stamps == [clock.now_ms()] * 3  # after the fill that opened the position
    assert all(s > opened for s in stamps)
    sim.advance(60)
    sim.touch(account)
    assert len(_funding(account)) == 3
    history = sim.funding.indexes(None, None, 5, newest_first=False)
    assert [sim.funding.stamp(k) for k in history][-3:] == stamps


def test_a_position_opened_after_a_funding_time_does_not_pay_it() -> None:
    sim, clock, account = _sim()
    clock.advance(7 * 3600 + 10)  # past the next funding time, nobody looking
    _order(sim, account, BTC, Side.BUY, "1")  # place touches nothing: funding index is now
    sim.touch(account)
    assert _funding(account) == []


def test_isolated_margin_is_all_a_liquidation_takes() -> None:
    sim, _clock, account = _sim()
    derivatives.set_margin_mode(account, MarginMode.ISOLATED, SOL)
    derivatives.set_leverage(account, sim.market, sim.market.catalog.instruments[SOL],
                             Decimal(20))
    _order(sim, account, SOL, Side.SELL, "10")
    [view] = derivatives.views(account, sim.market, SOL)
    assert view.position.isolated_margin == Decimal(75)
    assert view.liquidation_price == Decimal("155.941")  # (qE + M) / (q (1 + mmr))
    wallet = account.derivatives["USDT"]
    sim.set_price(SOL, Decimal("200"))  # far through the bankruptcy price: a gap
    assert account.perp.open_positions() == []
    assert account.derivatives["USDT"] == wallet - 75  # the insurance fund covers the rest
    kinds = [e.kind for e in account.perp.ledger]
    assert kinds[-2:] == [LedgerKind.LIQUIDATION, LedgerKind.LIQUIDATION_FEE]
    assert account.perp.ledger[-1].amount > 0
    [order] = [o for o in account.orders.values() if o.liquidation]
    assert order.status is OrderStatus.FILLED and order.client_id.startswith("autoclose-")


def test_cross_positions_liquidate_together_when_equity_meets_maintenance() -> None:
    sim, _clock, account = _sim()
    inst = sim.market.catalog.instruments[BTC]
    derivatives.set_leverage(account, sim.market, inst, Decimal(50))
    _order(sim, account, BTC, Side.BUY, "10")  # 600,000 notional on a 50,000 wallet
    [view] = derivatives.views(account, sim.market, BTC)
    assert view.liquidation_price is not None and view.liquidation_price < 60000
    sim.set_price(BTC, view.liquidation_price + Decimal("0.5"))
    assert account.perp.open_positions()
    sim.set_price(BTC, view.liquidation_price - Decimal("0.5"))
    assert account.perp.open_positions() == []
    assert account.derivatives["USDT"] >= 0


def test_settings_refuse_while_positions_or_orders_are_open() -> None:
    sim, _clock, account = _sim()
    inst = sim.market.catalog.instruments[SOL]
    assert derivatives.set_position_mode(account, True) is True
    assert derivatives.set_position_mode(account, True) is False
    assert derivatives.set_position_mode(account, False) is True
    resting = sim.place_order(account, OrderRequest(SOL, Side.BUY, OrderType.LIMIT,
                                                    Decimal("1"), Decimal("100")), FEES)
    with pytest.raises(SettingRefused) as refused:
        derivatives.set_margin_mode(account, MarginMode.ISOLATED, SOL)
    assert refused.value.refusal is Refusal.OPEN_ORDERS
    sim.cancel_order(account, resting)
    _order(sim, account, SOL, Side.BUY, "100")  # 15,000 notional
    with pytest.raises(SettingRefused) as refused:
        derivatives.set_position_mode(account, True)
    assert refused.value.refusal is Refusal.POSITION_EXISTS
    with pytest.raises(SettingRefused) as refused:
        derivatives.set_leverage(account, sim.market, inst, Decimal(51))
    assert refused.value.refusal is Refusal.LEVERAGE_INVALID
    with pytest.raises(SettingRefused) as refused:  # 15,000 > the 5,000 cap of 50x
        derivatives.set_leverage(account, sim.market, inst, Decimal(50))
    assert refused.value.refusal is Refusal.LEVERAGE_TOO_HIGH
    assert derivatives.set_position_mode(account, True, "BTC/USDT:USDT", skip_busy=False)


def test_position_caps_and_reduce_only_orders() -> None:
    sim, _clock, account = _sim()
    with pytest.raises(Rejection) as caught:  # 10x allows 250,000 of SOL
        _order(sim, account, SOL, Side.BUY, "2000")
    assert caught.value.kind is RejectKind.POSITION_LIMIT
    _order(sim, account, SOL, Side.BUY, "10")
    with pytest.raises(Rejection) as caught:
        _order(sim, account, SOL, Side.SELL, "11", reduce_only=True)
    assert caught.value.kind is RejectKind.REDUCE_ONLY
    resting = sim.place_order(account, OrderRequest(
        SOL, Side.SELL, OrderType.LIMIT, Decimal("10"), Decimal("160"), reduce_only=True), FEES)
    _order(sim, account, SOL, Side.SELL, "10", reduce_only=True)  # flat now
    sim.set_price(SOL, Decimal("161"))
    assert resting.status is OrderStatus.EXPIRED and account.perp.open_positions() == []


def _record(sim: Simulator, account: Account) -> list[tuple[Any, ...]]:
    """What the event bus publishes for `account`, read at publish time: order updates
    as (kind, liquidation, fill qty), account updates as (reason, assets, positions,
    the open (side, qty) of those positions)."""
    seen: list[tuple[Any, ...]] = []

    def listen(event: AccountEvent) -> None:
        if isinstance(event, OrderUpdate):
            seen.append((event.kind, event.order.liquidation,
                         event.fill.qty if event.fill else None))
        else:
            held = [(p.side, p.qty) for s in event.positions
                    for p in account.perp.open_positions(s)]
            seen.append((event.reason, event.derivative_assets, event.positions, held))

    sim.events.subscribe(account.api_key, listen)
    return seen


def test_hedge_mode_sides_and_their_updates() -> None:
    sim, _clock, account = _sim()
    seen = _record(sim, account)
    with pytest.raises(Rejection) as caught:
        _order(sim, account, BTC, Side.BUY, "1", position_side=PositionSide.LONG)
    assert caught.value.kind is RejectKind.POSITION_SIDE
    derivatives.set_position_mode(account, True)
    assert seen == []  # no venue streams a position-mode switch
    _order(sim, account, BTC, Side.BUY, "1", position_side=PositionSide.LONG)
    _order(sim, account, BTC, Side.SELL, "2", position_side=PositionSide.SHORT)
    assert account.perp.net_qty(BTC) == -1
    with pytest.raises(Rejection) as caught:  # closing more than the long holds
        _order(sim, account, BTC, Side.SELL, "2", position_side=PositionSide.LONG)
    assert caught.value.kind is RejectKind.REDUCE_ONLY
    _order(sim, account, BTC, Side.SELL, "1", position_side=PositionSide.LONG)
    updates = [e for e in seen if e[0] is UpdateReason.ORDER]
    long, short = PositionSide.LONG, PositionSide.SHORT
    assert [e[3] for e in updates] == [
        [(long, Decimal(1))], [(long, Decimal(1)), (short, Decimal(-2))],
        [(short, Decimal(-2))]]
    assert account.perp.closed[(BTC, long, MarginMode.CROSS)].qty == 0


def test_funding_leverage_and_liquidation_are_published() -> None:
    sim, _clock, account = _sim()
    seen = _record(sim, account)
    inst = sim.market.catalog.instruments[SOL]
    derivatives.set_margin_mode(account, MarginMode.ISOLATED, SOL)
    derivatives.set_leverage(account, sim.market, inst, Decimal(20))
    assert seen == [(UpdateReason.MARGIN_TYPE, (), (SOL,), []),
                    (UpdateReason.LEVERAGE, (), (SOL,), [])]
    _order(sim, account, SOL, Side.SELL, "10")
    seen.clear()
    sim.advance(FUNDING_INTERVAL_MS / 1000)
    short = [(PositionSide.BOTH, Decimal(-10))]
    assert seen == [(UpdateReason.FUNDING_FEE, ("USDT",), (SOL,), short)]
    seen.clear()
    sim.set_price(SOL, Decimal("200"))
    assert seen == [(ExecKind.TRADE, True, Decimal(10)),
                    (UpdateReason.LIQUIDATION, ("USDT",), (SOL,), [])]


def test_reset_forgets_positions_settings_and_funding_overrides() -> None:
    sim, _clock, account = _sim()
    derivatives.set_position_mode(account, True)
    _order(sim, account, BTC, Side.BUY, "1", position_side=PositionSide.LONG)
    k = sim.set_funding_rate(BTC, Decimal("0.01"))
    sim.reset()
    fresh = sim.accounts.get(API_KEY)
    assert fresh is not None and fresh.perp.positions == {} and fresh.perp.ledger == []
    assert not fresh.perp.settings.is_hedge(BTC)
    assert sim.funding.rate("BTC/USDT", k) != Decimal("0.01")


@pytest.mark.asyncio
async def test_admin_funding_rate_and_positions(server: SimulatorServer) -> None:
    base = f"{server.base_url}/admin"
    account = server.sim.accounts.get(API_KEY)
    assert account is not None
    _order(server.sim, account, SOL, Side.BUY, "2")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/funding-rate",
                             json={"symbol": SOL, "rate": "-0.0005"}) as resp:
            body = await resp.json()
            assert resp.status == 200 and body["funding_time"] == server.sim.funding.next_time_ms()
        assert server.sim.funding.rate("SOL/USDT", body["index"]) == Decimal("-0.0005")
        async with http.post(f"{base}/funding-rate", json={"symbol": "NOPE", "rate": "1"}) as resp:
            assert resp.status == 400
        async with http.get(f"{base}/accounts/{API_KEY}") as resp:
            [position] = (await resp.json())["positions"]
        assert (position["symbol"], position["qty"], position["margin_mode"]) == (SOL, "2",
                                                                                  "cross")
