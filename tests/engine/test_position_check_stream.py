"""The position check of a LIVE perpetuals engine whose fills arrive by a private order
stream: a stream behind or ahead of the positions read never trips it, and each own fill
is booked once; a difference no own fill explains still stops the engine, also while own
fills keep arriving (it fails closed after `CONFIRM_READS` reads, never waits for quiet).

In memory (the venue's orders and positions are one account the test moves), one cycle at
a time; `tests/api/test_engine_perp_stream_faults.py` runs the same against the simulator
with ccxt.pro and every WebSocket fault."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

import pytest

from ctsd.engine.brokers.live_perp import LivePerpBroker
from ctsd.engine.config import TradingMode, validate_config
from ctsd.engine.engine import Engine
from ctsd.engine.order_ports import ExchangeOrder
from ctsd.engine.orders import Order, OrderStatus, client_order_id
from ctsd.engine.perp_session import PerpSession
from ctsd.engine.perpetual import AccountModes, MarginMode, VenuePosition
from ctsd.engine.position_check import CONFIRM_READS, STREAM_LAG_S, PositionMismatch
from ctsd.engine.store_ports import DesiredState, EngineRecord
from ctsd.strategies.model import OrderType, PositionSide, Side
from tests.engine.fakes import FakeExchange, MemoryStore, ScriptedEvents, ScriptedMarket
from tests.engine.test_manager_perpetuals import FakePerpetuals
from tests.engine.world import REGISTRY, SYMBOL, sma
from tests.support.virtual_clock import VirtualClock

D = Decimal
FLAT = [D(100)] * 20
"""Closes that never cross: the strategy places nothing, the test moves the account."""
ORDER = client_order_id("e1e1", 1, 0)
MARK = D(100)


class PerpVenue(FakePerpetuals):
    """The account's positions as the venue keeps them: the engine's own fills on
    `exchange` plus what was traded outside. `stale_reads` positions reads still answer
    the position before the latest own fill (a read that raced it); `after_read` runs
    after each read (a fill landing between the positions and the orders)."""

    def __init__(self, exchange: FakeExchange) -> None:
        super().__init__()
        self.exchange = exchange
        self.outside = D(0)
        self.stale_reads = 0
        self.reads = 0
        self.after_read: Callable[[], None] = lambda: None
        self._last = D(0)

    def net(self) -> Decimal:
        signed = (o.filled if o.side is Side.BUY else -o.filled
                  for o in self.exchange.orders.values())
        return sum(signed, D(0)) + self.outside

    async def positions(self, symbols: tuple[str, ...]) -> tuple[VenuePosition, ...]:
        self.reads += 1
        amount = self._last if self.stale_reads else self.net()
        self.stale_reads = max(0, self.stale_reads - 1)
        self._last = amount
        self.after_read()
        if not amount:
            return ()
        return (VenuePosition(SYMBOL, PositionSide.BOTH, amount, D(100), D(100), D(5),
                              MarginMode.CROSS, D(20), None, D(0)),)


class LaggingStream:
    """`OrderUpdates` the test delivers by hand: what the venue sent waits in `sent` until
    `deliver` (a stream a moment behind), always live and gapless."""

    def __init__(self) -> None:
        self.sent: list[ExchangeOrder] = []
        self._delivered: list[ExchangeOrder] = []
        self.live, self.gap, self.refused, self.problem = True, False, False, ""

    def send(self, order: ExchangeOrder) -> None:
        self.sent.append(order)

    def deliver(self) -> None:
        self._delivered += self.sent
        self.sent = []

    def drain(self) -> tuple[list[ExchangeOrder], bool]:
        taken, self._delivered = self._delivered, []
        return taken, False

    def suspect(self) -> None:
        raise AssertionError("no update was missing")


class LaggingPositions:
    """`PositionUpdates` the test delivers by hand, like `LaggingStream`."""

    def __init__(self) -> None:
        self.sent: list[VenuePosition] = []
        self._delivered: list[VenuePosition] = []
        self.live, self.positions_gap = True, False

    def send(self, amount: str) -> None:
        self.sent.append(leg(D(amount)))
        self._delivered += self.sent
        self.sent = []

    def push(self, position: VenuePosition) -> None:
        self._delivered.append(position)

    def drain_positions(self) -> tuple[list[VenuePosition], bool]:
        taken, self._delivered = self._delivered, []
        gap, self.positions_gap = self.positions_gap, False
        return taken, gap


def leg(amount: Decimal, mark: Decimal = MARK) -> VenuePosition:
    return VenuePosition(SYMBOL, PositionSide.BOTH, amount, D(100), mark, D(5),
                         MarginMode.CROSS, D(20), D(50) if amount else None, D(0))


class Rig:
    def __init__(self, positions: LaggingPositions | None = None) -> None:
        self.clock = VirtualClock()
        self.exchange = FakeExchange()
        self.venue = PerpVenue(self.exchange)
        self.stream = LaggingStream()
        self.positions = positions
        self.events = ScriptedEvents(self.clock)
        self.store = MemoryStore()
        config = sma(mode=TradingMode.LIVE)
        record = EngineRecord("conn1", "e1e1", config, DesiredState.RUNNING)
        self.store.engines["conn1"] = record
        perp = PerpSession(config, AccountModes(MarginMode.CROSS, hedge=False), self.venue,
                           self.venue, "conn1")
        broker = LivePerpBroker(self.exchange, self.venue, config.symbols, self.clock,
                                check_before_place=False, updates=self.stream,
                                positions=positions)
        self.engine = Engine(record, validate_config(config, REGISTRY), broker,
                             ScriptedMarket(self.clock, {SYMBOL: FLAT}), self.store,
                             self.clock, lambda status: None, perp=perp,
                             events=self.events if positions is not None else None)

    async def start_with_a_resting_buy(self, amount: str = "1") -> None:
        """The engine's buy of `amount` rests on the venue (stored OPEN), then a session."""
        placed = await self.exchange.create_order(SYMBOL, OrderType.LIMIT, Side.BUY,
                                                  D(amount), D(99), ORDER)
        self.store.orders["conn1"] = {ORDER: Order(
            ORDER, SYMBOL, Side.BUY, OrderType.LIMIT, D(amount), D(99), "grid", 1,
            OrderStatus.OPEN, exchange_order_id=placed.exchange_order_id)}
        await self.engine.reconcile()

    def fill(self, amount: str) -> None:
        """The venue fills `amount` more of the buy and sends the update on the stream."""
        self.exchange.fill(ORDER, D(amount), D(99))
        self.stream.send(self.exchange.orders[ORDER])

    def fills(self) -> list[Decimal]:
        return [f.amount for f in self.store.fills.get("conn1", {}).values()]

    async def cycle(self, then_s: float = 60) -> None:
        await self.engine.run_cycle()
        await self.clock.advance(then_s)


@pytest.mark.asyncio
async def test_a_fill_the_stream_has_not_delivered_yet_is_booked_once_without_a_trip() -> None:
    rig = Rig()
    await rig.start_with_a_resting_buy()
    rig.fill("1")  # in the venue's positions now, on the stream later
    await rig.cycle()
    assert rig.fills() == [D(1)]  # the second look read it over REST
    rig.stream.deliver()
    await rig.cycle()
    assert rig.fills() == [D(1)]  # the late stream update books nothing more
    status = rig.engine.status
    assert status.position_differences == 0 and [p.amount for p in status.positions] == [D(1)]


@pytest.mark.asyncio
async def test_a_fill_the_stream_delivered_before_the_positions_show_it_is_no_trip() -> None:
    rig = Rig()
    await rig.start_with_a_resting_buy()
    rig.fill("1")
    rig.stream.deliver()
    rig.venue.stale_reads = 1  # this cycle's positions read raced the fill
    await rig.cycle()
    assert rig.fills() == [D(1)] and rig.engine.status.position_differences == 0
    assert rig.venue.reads == 3  # session start, the cycle, the second look


@pytest.mark.asyncio
async def test_an_own_fill_landing_inside_the_second_look_is_read_again_not_tripped() -> None:
    rig = Rig()
    await rig.start_with_a_resting_buy("2")
    rig.fill("1")  # not on the stream yet: the cycle sees a difference

    def between_reads() -> None:  # the second look's positions read, then one more fill
        if rig.venue.reads == 3:
            rig.fill("1")

    rig.venue.after_read = between_reads
    await rig.cycle()
    assert rig.fills() == [D(2)] and rig.engine.status.position_differences == 0
    assert rig.venue.reads == 4  # its orders read was ahead of its positions: read again


@pytest.mark.asyncio
async def test_an_outside_trade_trips_the_check_while_the_stream_lags() -> None:
    rig = Rig()
    await rig.start_with_a_resting_buy()
    rig.fill("1")  # own, not yet on the stream ...
    rig.venue.outside = D("0.5")  # ... and someone else's
    with pytest.raises(PositionMismatch, match=r"ledger 1, venue 1\.5"):
        await rig.cycle()
    assert rig.fills() == [D(1)]  # the own fill was booked before the difference stood
    assert rig.engine.status.position_differences == 1


@pytest.mark.asyncio
async def test_own_fills_that_never_stop_arriving_cannot_hold_off_the_check() -> None:
    rig = Rig()
    await rig.start_with_a_resting_buy("100")
    rig.venue.outside = D("0.5")
    rig.venue.after_read = lambda: rig.fill("1")  # a fill between every two reads
    with pytest.raises(PositionMismatch):
        await rig.cycle()
    assert rig.venue.reads == 2 + CONFIRM_READS  # session start, the cycle, the confirms


# --- positions from a private stream: the stream-lag rule -------------------------------------


@pytest.mark.asyncio
async def test_a_position_stream_behind_the_fills_is_no_trip_and_costs_no_rest_read() -> None:
    rig = Rig(LaggingPositions())
    await rig.start_with_a_resting_buy()
    rig.fill("1")
    rig.stream.deliver()  # the fill on the order stream; its position update not yet
    await rig.cycle(then_s=0.1)
    assert rig.fills() == [D(1)] and rig.venue.reads == 1  # session start only
    assert rig.events.wakes == [STREAM_LAG_S]  # the engine looks again once the lag is up
    assert rig.positions is not None
    rig.positions.send("1")  # the position update catches up
    await rig.cycle(then_s=STREAM_LAG_S)
    await rig.cycle(then_s=0.1)
    assert rig.venue.reads == 1 and rig.engine.status.position_differences == 0
    assert [p.amount for p in rig.engine.status.positions] == [D(1)]


@pytest.mark.asyncio
async def test_a_change_on_the_position_stream_no_fill_explains_stops_the_engine_after_the_lag(
) -> None:
    rig = Rig(LaggingPositions())
    await rig.start_with_a_resting_buy()
    assert rig.positions is not None
    rig.venue.outside = D("0.5")  # someone else's trade on the account ...
    rig.positions.send("0.5")  # ... on the position stream at once
    await rig.cycle(then_s=STREAM_LAG_S - 0.1)
    assert rig.venue.reads == 1 and rig.engine.status.position_differences == 0
    await rig.cycle(then_s=0.1)  # still within the lag
    assert rig.venue.reads == 1
    with pytest.raises(PositionMismatch, match=r"ledger 0, venue 0\.5"):
        await rig.cycle()  # the lag is up: confirmed over REST, and the engine stops
    assert rig.venue.reads == 2


@pytest.mark.asyncio
async def test_a_gap_in_the_position_stream_reads_the_positions_over_rest() -> None:
    rig = Rig(LaggingPositions())
    await rig.start_with_a_resting_buy()
    assert rig.positions is not None
    await rig.cycle(then_s=0.1)
    assert rig.venue.reads == 1
    rig.venue.outside = D("0.5")  # an outside trade whose position update was lost ...
    rig.positions.positions_gap = True  # ... in a reconnect
    with pytest.raises(PositionMismatch, match=r"ledger 0, venue 0\.5"):
        await rig.cycle(then_s=0.1)  # REST read, no lag to wait: not the stream's view
    assert rig.venue.reads >= 2


@pytest.mark.asyncio
async def test_what_a_position_update_leaves_out_is_kept_from_the_last_read() -> None:
    rig = Rig(LaggingPositions())
    await rig.start_with_a_resting_buy()
    assert rig.positions is not None
    bare = replace(leg(D(1), mark=D(0)), leverage=None, liquidation_price=None)
    rig.fill("1")
    rig.stream.deliver()
    rig.positions.push(bare)  # Binance's ACCOUNT_UPDATE: no mark, leverage, liquidation
    await rig.cycle(then_s=0.1)
    assert rig.venue.reads == 2  # a new size without a liquidation price: REST, after
    rig.positions.push(bare)  # the same size again (a funding fee, say)
    await rig.cycle(then_s=0.1)
    [held] = rig.engine.status.positions
    assert (held.mark_price, held.leverage) == (D(100), D(5))  # kept from the REST read
    assert rig.venue.reads == 2
