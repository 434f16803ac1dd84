"""LIVE orders sent ahead of their record (`ctsd.engine.rounds`), crashed at every send.

A LIVE grid trades a swinging price on the in-memory exchange; every order request
checks, at the instant it reaches the venue, the invariant that makes sending ahead
safe (its round is durable, and the store holds every earlier order of the round:
only this one can be missing), and takes a snapshot of store and venue there — a
SIGKILL at that instant, before the record committed. Each snapshot is then resumed
by a new manager: the order the store never recorded must be found, booked and (if
it still rests) cancelled, and no grid level may end up with two resting orders. Each
snapshot is also taken as a kill that landed after a StopEngine committed the stopped
state (it waits for the cycle in flight): the restart leaves the engine stopped, the
lost order fills meanwhile, and the next StartEngine (a new engine id, whose record
replaces the one naming the lost order's round) must still find and book it.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from decimal import Decimal

import pytest

from ctsd.engine.config import EngineConfig, TradingMode
from ctsd.engine.order_ports import ExchangeOrder
from ctsd.engine.orders import Execution, Order, OrderRequest, OrderStatus, client_order_id
from ctsd.engine.store_ports import DesiredState, EngineRecord
from ctsd.strategies.model import Balance, OrderType, PositionSide, Side
from tests.engine.fakes import FakeExchange, MemoryStore
from tests.engine.world import SYMBOL, World, grid

D = Decimal
SWING = [D(x) for x in ("10.2", "9.4", "10.6", "8.9", "11.1", "10.0", "9.4", "10.6", "8.9",
                        "10.2", "11.1", "9.4")]
"""Across the grid's levels (9.5, 9.0 / 10.5, 11.0) both ways, one close a minute."""
BALANCES = (Balance("USDT", D(10_000), D(10_000)), Balance("BTC", D(100), D(100)))


def live_grid() -> EngineConfig:
    return grid(mode=TradingMode.LIVE)


def round_of(cid: str) -> tuple[int, int]:
    body = cid.split("c", 2)[-1]
    round_hex, index = body.split("i")
    return int(round_hex, 16), int(index)


class CrashingExchange(FakeExchange):
    """Checks the send-ahead invariant at every order request and snapshots the world."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(balances=BALANCES)
        self.store = store
        self.snapshots: list[tuple[MemoryStore, dict[str, ExchangeOrder], str]] = []

    async def create_order(self, symbol: str, type: OrderType, side: Side, amount: Decimal,
                           price: Decimal | None, client_order_id: str, *,
                           reduce_only: bool = False,
                           position_side: PositionSide = PositionSide.BOTH) -> ExchangeOrder:
        number, index = round_of(client_order_id)
        record = self.store.engines["a"]
        assert number <= record.cycle, "an order left before its round was stored"
        prefix = client_order_id[:client_order_id.rindex("i") + 1]
        held = sorted(round_of(c)[1] for c in self.store.orders.get("a", {})
                      if c.startswith(prefix))
        assert held in (list(range(index)), list(range(index + 1))), held
        order = await super().create_order(symbol, type, side, amount, price, client_order_id,
                                           reduce_only=reduce_only, position_side=position_side)
        self.snapshots.append((copy.deepcopy(self.store), dict(self.orders), client_order_id))
        return order

    def fill_crossed(self, last: Decimal) -> None:
        for cid, order in list(self.orders.items()):
            if order.status is OrderStatus.OPEN and order.price is not None and (
                    last <= order.price if order.side is Side.BUY else last >= order.price):
                self.fill(cid, order.amount - order.filled, order.price)


async def trade(world: World, exchange: CrashingExchange) -> None:
    async with world.manager:
        await world.manager.start("a", live_grid())
        for close in SWING:
            await world.clock.advance(60)
            exchange.fill_crossed(close)


def resting_levels(orders: dict[str, ExchangeOrder]) -> list[tuple[Side, Decimal | None]]:
    return sorted(((o.side, o.price) for o in orders.values() if o.status is OrderStatus.OPEN),
                  key=str)


@pytest.mark.asyncio
async def test_every_live_order_leaves_before_its_record_and_is_recoverable() -> None:
    store = MemoryStore()
    exchange = CrashingExchange(store)
    await trade(World({"a": SWING}, store=store, exchanges={"a": exchange}), exchange)
    sent = [cid for _, _, cid in exchange.snapshots]
    assert len(sent) >= 8, sent  # the swing fills levels and the grid re-places them
    unrecorded = [cid for s, _, cid in exchange.snapshots if cid not in s.orders.get("a", {})]
    assert unrecorded == sent  # each request left before its record committed
    assert {o.status for o in store.orders["a"].values()} <= {
        OrderStatus.OPEN, OrderStatus.FILLED, OrderStatus.CANCELED}
    for snapshot, orders, cid in exchange.snapshots:
        await resume_after_crash(copy.deepcopy(snapshot), orders, cid)
        await start_after_stopped_crash(snapshot, orders, cid)


async def resume_after_crash(store: MemoryStore, orders: dict[str, ExchangeOrder],
                             lost: str) -> None:
    """The daemon died as `lost` reached the venue: a new one resumes the engine."""
    venue = FakeExchange(balances=BALANCES)
    venue.orders = {cid: order for cid, order in orders.items()}
    crashed_round = store.engines["a"].cycle
    world = World({"a": SWING}, store=store, exchanges={"a": venue})
    async with world.manager:
        await world.clock.advance(1)  # reconciled, and one cycle
        assert world.manager.get("a").state.value == "running", lost
    stored = store.orders["a"]
    assert stored[lost].status is venue.orders[lost].status, lost
    assert venue.orders[lost].status is not OrderStatus.OPEN  # its intent died: cancelled
    for cid, order in venue.orders.items():  # nothing at the venue the store does not know
        assert stored[cid].status is order.status, cid
    levels = resting_levels(venue.orders)
    assert len(levels) == len(set(levels)), levels
    fresh = [cid for cid in venue.orders if cid not in orders]
    assert all(round_of(cid)[0] > crashed_round for cid in fresh), (crashed_round, fresh)


async def start_after_stopped_crash(store: MemoryStore, orders: dict[str, ExchangeOrder],
                                    lost: str) -> None:
    """The daemon died as `lost` reached the venue, its engine's stop committed: a new
    daemon leaves it stopped, `lost` fills, and an explicit start follows."""
    store.engines["a"] = replace(store.engines["a"], desired=DesiredState.STOPPED)
    venue = FakeExchange(balances=BALANCES)
    venue.orders = dict(orders)
    order = venue.orders[lost]
    if order.status is OrderStatus.OPEN:
        venue.fill(lost, order.amount - order.filled, order.price or D(10))
    world = World({"a": SWING}, store=store, exchanges={"a": venue}, first_engine=2)
    async with world.manager:
        await world.clock.advance(1)
        assert world.manager.get("a").state.value == "stopped", lost
        assert lost not in store.orders.get("a", {})
        await world.manager.start("a", live_grid())
        await world.clock.advance(1)
        assert world.manager.get("a").state.value == "running", lost
    stored = store.orders["a"]
    assert (stored[lost].status, stored[lost].tag) == (OrderStatus.FILLED, "recovered"), lost
    booked = sum(f.amount for f in store.fills["a"].values() if f.client_order_id == lost)
    assert booked == venue.orders[lost].amount, lost
    for cid, order in venue.orders.items():  # nothing at the venue the store does not know
        assert stored[cid].status is order.status, cid


@pytest.mark.asyncio
@pytest.mark.parametrize("outcome", ["open", "partly filled", "filled", "never arrived"])
async def test_the_one_unrecorded_order_is_found_by_its_id(outcome: str) -> None:
    """Round 3 reserved; its order 0 recorded and resting, order 1 sent but not recorded."""
    store = MemoryStore()
    store.engines["a"] = EngineRecord("a", "e1e1", live_grid(), DesiredState.RUNNING, cycle=3)
    venue = FakeExchange(balances=BALANCES)
    first, lost = client_order_id("e1e1", 3, 0), client_order_id("e1e1", 3, 1)
    world = World({"a": [D("10.2")] * 3}, store=store, exchanges={"a": venue})
    placed = await venue.create_order(SYMBOL, OrderType.LIMIT, Side.BUY, D(10), D("9.5"), first)
    await store.save_execution("a", Execution(Order.pending(OrderRequest(
        first, SYMBOL, Side.BUY, OrderType.LIMIT, D(10), D("9.5"), "grid:BTC/USDT:-1:buy", 3),
        0)))
    assert placed.status is OrderStatus.OPEN
    if outcome != "never arrived":
        await venue.create_order(SYMBOL, OrderType.LIMIT, Side.BUY, D(10), D("9.0"), lost)
    if outcome in ("partly filled", "filled"):
        venue.fill(lost, D(4) if outcome == "partly filled" else D(10), D("9.0"))
    async with world.manager:
        await world.clock.advance(1)
    stored = store.orders["a"]
    if outcome == "never arrived":
        assert lost not in stored and lost not in venue.orders
    else:
        want = OrderStatus.FILLED if outcome == "filled" else OrderStatus.CANCELED
        assert (stored[lost].status, venue.orders[lost].status) == (want, want)
        filled = {"open": D(0), "partly filled": D(4), "filled": D(10)}[outcome]
        booked = sum(f.amount for f in store.fills.get("a", {}).values()
                     if f.client_order_id == lost)
        assert booked == filled
    assert store.engines["a"].cycle >= 4  # the session's own round, reserved
    assert all(round_of(cid)[0] >= 4 for cid in venue.orders if cid not in (first, lost))


class UnansweredExchange(FakeExchange):
    """Loses the reply to an order, and then fails every question until `fail_fetch`
    is cleared."""

    async def create_order(self, symbol: str, type: OrderType, side: Side, amount: Decimal,
                           price: Decimal | None, client_order_id: str, *,
                           reduce_only: bool = False,
                           position_side: PositionSide = PositionSide.BOTH) -> ExchangeOrder:
        self.fail_fetch = self.fail_fetch or self.lose_next_reply
        return await super().create_order(symbol, type, side, amount, price, client_order_id,
                                          reduce_only=reduce_only, position_side=position_side)


@pytest.mark.asyncio
async def test_a_send_whose_answer_is_lost_leaves_its_pending_record() -> None:
    """The venue took the order, the answer never came (`lose_next_reply`) and the
    retry's question failed too (`fail_fetch`): the order is recorded PENDING, the
    cycle fails, and the restarted session finds it open under its id (no second order
    on its level)."""
    store = MemoryStore()
    venue = UnansweredExchange(balances=BALANCES)
    world = World({"a": [D("10.2")] * 5}, store=store, exchanges={"a": venue})
    async with world.manager:
        venue.lose_next_reply = True
        await world.manager.start("a", live_grid())
        await world.clock.advance(1)
        [(lost, status)] = store.history[:1]
        assert status is OrderStatus.PENDING
        venue.fail_fetch = False
        await world.clock.advance(30)  # the restart's backoff, reconciliation, cycles
        assert world.manager.get("a").state.value == "running"
    assert store.orders["a"][lost].status is OrderStatus.OPEN
    levels = resting_levels(venue.orders)
    assert len(levels) == len(set(levels)) == len(venue.orders), venue.orders
