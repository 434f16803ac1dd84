"""A LIVE engine's cycle on a private order stream: what runs between the market and the order.

The venue is the in-memory `FakeExchange` (its `calls` are the REST requests); the order
stream an in-memory `OrderUpdates`. Against the simulator and ccxt.pro the same broker is
exercised in tests/marketdata/test_live_streams.py.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from ctsd.engine.brokers.live import LiveBroker
from ctsd.engine.config import EngineConfig, TradingMode, validate_config
from ctsd.engine.engine import Engine
from ctsd.engine.ports import DesiredState, EngineRecord, ExchangeOrder
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


class LiveHarness:
    def __init__(self) -> None:
        self.clock = VirtualClock()
        self.exchange = FakeExchange(balances=(Balance("USDT", D(1000), D(1000)),))
        self.stream = MemoryOrderStream()
        self.broker = LiveBroker(self.exchange, [SYMBOL], self.clock, check_before_place=False,
                                 updates=self.stream, reconcile_s=60, echo_s=3600)
        config = EngineConfig("grid", (SYMBOL,), {"reference_price": "10", "spacing_pct": "5",
                                                  "levels": "2", "amount": "1"},
                              mode=TradingMode.LIVE)
        market = ScriptedMarket(self.clock, {SYMBOL: [D("10.2")] * 5})
        store = MemoryStore()
        record = EngineRecord("conn1", "e1e1", config, DesiredState.RUNNING)
        store.engines["conn1"] = record
        self.engine = Engine(record, validate_config(config, StrategyRegistry.of(GRID)),
                             self.broker, market, store, self.clock, lambda _: None)

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
async def test_a_gap_in_the_stream_still_reconciles_before_the_cycle_decides() -> None:
    h = LiveHarness()
    await h.engine.reconcile()
    h.stream.gap = True
    h.exchange.calls.clear()
    await h.engine.run_cycle()
    assert h.exchange.calls == ["fetch_balance", "create_order", "create_order"]
    assert h.broker.reconciliations == 1
