"""A LIVE engine's cycle on a private order stream: what runs between the market and the order.

The venue is the in-memory `FakeExchange` (its `calls` are the REST requests); the order
stream an in-memory `OrderUpdates`. Against the simulator and ccxt.pro the same broker is
exercised in tests/marketdata/test_live_streams.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pytest

from ctsd.engine.brokers.live import MAX_PHASE, LiveBroker, reconcile_phase
from ctsd.engine.config import EngineConfig, TradingMode, validate_config
from ctsd.engine.engine import Engine
from ctsd.engine.lease_ports import Fence
from ctsd.engine.order_ports import ExchangeOrder
from ctsd.engine.orders import Execution, OrderStatus
from ctsd.engine.store_ports import DesiredState, EngineRecord
from ctsd.errors import Unavailable
from ctsd.strategies.grid import GRID
from ctsd.strategies.model import Balance
from ctsd.strategies.registry import StrategyRegistry
from tests.engine.fakes import FakeExchange, MemoryStore, ScriptedMarket
from tests.support.virtual_clock import VirtualClock

D = Decimal
SYMBOL = "BTC/USDT"
READS = ("fetch_open_orders", "fetch_order", "fetch_balance")


class MemoryOrderStream:
    """An `OrderUpdates` that is live and gapless unless told otherwise."""

    def __init__(self) -> None:
        self.updates: list[ExchangeOrder] = []
        self.gap = False
        self.live = True
        self.problem = ""
        self.refused = False

    def drain(self) -> tuple[list[ExchangeOrder], bool]:
        taken, gap = self.updates, self.gap
        self.updates, self.gap = [], False
        return taken, gap

    def suspect(self) -> None:
        self.gap = True


class RecordingStore(MemoryStore):
    """Each `save_executions` call as (client order id, status) pairs; `fail_next` makes
    the next one raise before storing anything."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[list[tuple[str, OrderStatus]]] = []
        self.fail_next = False

    async def save_executions(self, connection_id: str, executions: Sequence[Execution],
                              fence: Fence | None = None) -> None:
        if self.fail_next:
            self.fail_next = False
            raise Unavailable("the database cannot be written")
        self.writes.append([(e.order.client_order_id, e.order.status) for e in executions])
        await super().save_executions(connection_id, executions, fence)


class LiveHarness:
    def __init__(self, phase: float = 0.0) -> None:
        self.phase = phase
        self.clock = VirtualClock()
        self.exchange = FakeExchange(balances=(Balance("USDT", D(1000), D(1000)),))
        self.store = RecordingStore()
        self.restart()

    def restart(self) -> None:
        """A new session's engine and broker, on the same store and venue."""
        self.stream = MemoryOrderStream()
        self.broker = LiveBroker(self.exchange, [SYMBOL], self.clock, check_before_place=False,
                                 updates=self.stream, reconcile_s=60, echo_s=3600,
                                 reconcile_phase=self.phase)
        config = EngineConfig("grid", (SYMBOL,), {"reference_price": "10", "spacing_pct": "5",
                                                  "levels": "2", "amount": "1"},
                              mode=TradingMode.LIVE)
        market = ScriptedMarket(self.clock, {SYMBOL: [D("10.2")] * 9})
        record = self.store.engines.get("conn1") or EngineRecord(
            "conn1", "e1e1", config, DesiredState.RUNNING)
        self.store.engines["conn1"] = record
        self.engine = Engine(record, validate_config(config, StrategyRegistry.of(GRID)),
                             self.broker, market, self.store, self.clock, lambda _: None)

    def echo_all(self) -> None:
        """The stream reports every order the venue holds (the placements' echoes)."""
        self.stream.updates += list(self.exchange.orders.values())


@pytest.mark.asyncio
async def test_a_cycle_reads_no_venue_state_before_its_orders_while_the_stream_is_trusted(
) -> None:
    h = LiveHarness()
    await h.engine.reconcile()
    h.exchange.calls.clear()
    await h.engine.run_cycle()
    assert h.exchange.calls == ["create_order", "create_order"]  # two grid buys, nothing else
    assert h.broker.reconciliations == 0


@pytest.mark.asyncio
async def test_the_periodic_reconciliation_runs_after_the_cycles_orders_and_books_a_lost_fill(
) -> None:
    """Of two resting buys, one's fill comes by stream (the grid re-places that level) and
    the other's is lost, with no trade-through seen: only the periodic reconciliation can
    find it, and it runs once this cycle's orders have left."""
    h = LiveHarness()
    await h.engine.reconcile()
    await h.engine.run_cycle()
    h.echo_all()
    by_price = {o.price: o.client_order_id for o in h.exchange.orders.values()}
    h.exchange.fill(by_price[D("9.5")], D(1), D("9.5"))  # its update is lost
    h.exchange.fill(by_price[D("9.0")], D(1), D("9.0"))
    h.stream.updates.append(h.exchange.orders[by_price[D("9.0")]])
    await h.clock.advance(61)  # the periodic reconciliation falls due
    h.exchange.calls.clear()
    await h.engine.run_cycle()
    # the 9.0 buy again and a sell of what it bought, then the reads
    assert h.exchange.calls == ["create_order", "create_order", *READS]
    assert h.broker.reconciliations == 1
    assert h.engine.status.orders_filled == 2  # both fills, each booked once
    h.exchange.calls.clear()
    await h.engine.run_cycle()
    assert h.broker.reconciliations == 1  # not due again for another interval
    assert not any(c in READS for c in h.exchange.calls)


@pytest.mark.asyncio
async def test_the_periodic_reconciliation_runs_at_the_engines_own_interval() -> None:
    """Engines started together must not reconcile together every interval after: each
    one's interval is shortened by its phase."""
    h = LiveHarness(phase=0.25)
    await h.engine.reconcile()
    due = []
    for step in range(1, 481):  # four minutes in half seconds
        await h.clock.advance(0.5)
        before = h.broker.reconciliations
        await h.engine.run_cycle()
        h.echo_all()
        if h.broker.reconciliations > before:
            due.append(step / 2)
    assert due == [45.0, 90.0, 135.0, 180.0, 225.0]


def test_reconcile_phases_spread_evenly_over_connections() -> None:
    phases = [reconcile_phase(f"live-{n:05d}") for n in range(1000)]
    assert all(0 <= p < MAX_PHASE for p in phases)
    tenths = [sum(1 for p in phases if k * MAX_PHASE / 10 <= p < (k + 1) * MAX_PHASE / 10)
              for k in range(10)]
    assert all(50 <= count <= 150 for count in tenths), tenths
    assert reconcile_phase("live-00001") == reconcile_phase("live-00001")  # stable


@pytest.mark.asyncio
async def test_a_gap_in_the_stream_still_reconciles_before_the_cycle_decides() -> None:
    h = LiveHarness()
    await h.engine.reconcile()
    h.stream.gap = True
    h.exchange.calls.clear()
    await h.engine.run_cycle()
    assert h.exchange.calls == ["fetch_balance", "create_order", "create_order"]
    assert h.broker.reconciliations == 1


def fill_by_stream(h: LiveHarness, price: str) -> str:
    """The venue fills the resting buy at `price`; the stream reports it."""
    cid = next(o.client_order_id for o in h.exchange.orders.values()
               if o.price == D(price) and o.status is OrderStatus.OPEN)
    h.exchange.fill(cid, D(1), D(price))
    h.stream.updates.append(h.exchange.orders[cid])
    return cid


@pytest.mark.asyncio
async def test_a_streamed_fill_is_stored_in_one_write_with_the_next_orders_record(
) -> None:
    """Sending ahead (`ctsd.engine.rounds`): the order's first record is the venue's
    answer, and the fill rides with it; no write before the request."""
    h = LiveHarness()
    await h.engine.reconcile()
    await h.engine.run_cycle()
    h.echo_all()
    await h.engine.run_cycle()  # the echoes: nothing new to store or place
    h.store.writes.clear()
    filled = fill_by_stream(h, "9.0")
    await h.engine.run_cycle()
    first = h.store.writes[0]
    assert first[0] == (filled, OrderStatus.FILLED)
    assert [status for _, status in first[1:]] == [OrderStatus.OPEN]  # the 9.0 buy again
    assert h.engine.status.orders_filled == 1
    assert list(h.store.fills["conn1"]) == [f"{filled}-1"]


@pytest.mark.asyncio
async def test_a_streamed_fill_is_stored_at_the_end_of_a_cycle_that_places_nothing() -> None:
    h = LiveHarness()
    await h.engine.reconcile()
    await h.engine.run_cycle()
    h.echo_all()
    await h.engine.run_cycle()
    cid = next(iter(h.exchange.orders))
    h.exchange.fill(cid, D("0.5"), D("9.5"))  # a part: the level stays taken
    h.stream.updates.append(h.exchange.orders[cid])
    h.store.writes.clear()
    await h.engine.run_cycle()
    assert h.store.writes == [[(cid, OrderStatus.OPEN)]] and h.exchange.calls.count(
        "create_order") == 2
    assert list(h.store.fills["conn1"]) == [f"{cid}-0.5"]


@pytest.mark.asyncio
async def test_a_held_fill_lost_with_its_write_is_booked_once_by_the_next_session() -> None:
    """The write that was to carry a streamed fill fails (the engine fails with it): the
    store never had the fill, and the next session reads it back from the venue."""
    h = LiveHarness()
    await h.engine.reconcile()
    await h.engine.run_cycle()
    h.echo_all()
    await h.engine.run_cycle()
    filled = fill_by_stream(h, "9.0")
    h.store.fail_next = True
    with pytest.raises(Unavailable):
        await h.engine.run_cycle()
    assert not h.store.fills.get("conn1")
    h.restart()
    await h.engine.reconcile()
    assert list(h.store.fills["conn1"]) == [f"{filled}-1"]
    assert h.engine.portfolio().position(SYMBOL).amount == D(1)
    await h.engine.run_cycle()
    assert list(h.store.fills["conn1"]) == [f"{filled}-1"]  # once
