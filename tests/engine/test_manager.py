"""EngineManager end to end on fakes: lifecycle, one engine per connection, persistence,
resume after a daemon restart, dry runs, watchers and health."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from ctsd.engine.config import TradingMode
from ctsd.engine.orders import Execution, Order, OrderRequest, OrderStatus, client_order_id
from ctsd.engine.status import EngineState
from ctsd.engine.store_ports import DesiredState, EngineRecord
from ctsd.engine.watch import Changed, Heartbeat, Snapshot
from ctsd.errors import FailedPrecondition, InvalidArgument, NotFound
from ctsd.strategies.model import Balance, OrderType, Side, Ticker
from tests.engine.fakes import FakeExchange
from tests.engine.world import SMA_CLOSES, SYMBOL, World, grid, sma

D = Decimal
S = EngineState
GRID_CLOSES = [D("10.2")] * 20
FUNDS = (Balance("USDT", D(1000), D(1000)),)


@pytest.mark.asyncio
async def test_an_engine_goes_through_its_lifecycle_and_is_persisted() -> None:
    w = World({"a": SMA_CLOSES})
    async with w.manager:
        watcher = w.manager.watch()
        assert await watcher.next_event() == Snapshot(())
        started = await w.manager.start("a", sma())
        assert started.state is S.STARTING
        await w.clock.advance(12 * 60 + 1)  # cycles at 0, 60, ..., 720
        status = w.manager.get("a")
        assert (status.state, status.cycles, status.orders_placed) == (S.RUNNING, 13, 3)
        assert status.heartbeat_ms == w.clock.now_ms() - 1000
        stopped = await w.manager.stop("a")
        assert stopped.state is S.STOPPED
        assert w.states("a") == [S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED]
        assert w.store.engines["a"].desired is DesiredState.STOPPED
        assert w.backend.closed == ["a"]
        events = [await watcher.next_event() for _ in range(watcher.backlog)]
        changes = [e.status for e in events if isinstance(e, Changed)]
        assert len(changes) + sum(isinstance(e, Heartbeat) for e in events) == len(events)
        # a watcher that did not read holds one change per engine: its newest status
        assert [(s.state, s.version) for s in changes] == [(S.STOPPED, stopped.version)]
        watcher.close()


@pytest.mark.asyncio
async def test_at_most_one_engine_runs_per_connection() -> None:
    w = World({"a": SMA_CLOSES, "b": SMA_CLOSES})
    async with w.manager:
        await w.manager.start("a", sma())
        with pytest.raises(FailedPrecondition, match="already running on connections/a"):
            await w.manager.start("a", sma())
        await w.manager.start("b", sma())
        await w.manager.stop("a")
        again = await w.manager.start("a", sma())
        assert again.engine_id == "e3e3"


@pytest.mark.asyncio
async def test_a_bad_config_is_refused_before_anything_is_opened() -> None:
    w = World({"a": SMA_CLOSES})
    async with w.manager:
        with pytest.raises(InvalidArgument) as caught:
            await w.manager.start("a", sma(params={"fast": "9", "slow": "3"}, symbols=()))
        assert {v.field for v in caught.value.violations} == {
            "config.params.quote_amount", "config.symbols"}
        assert w.backend.opened == [] and w.store.engines == {}


@pytest.mark.asyncio
async def test_the_backend_decides_whether_a_connection_may_trade() -> None:
    w = World({"a": SMA_CLOSES, "b": SMA_CLOSES})
    w.backend.refuse["a"] = FailedPrecondition("connection is disabled")
    async with w.manager:
        with pytest.raises(FailedPrecondition, match="disabled"):
            await w.manager.start("a", sma())
        with pytest.raises(FailedPrecondition, match="cannot place live orders"):
            await w.manager.start("b", sma(mode=TradingMode.LIVE))
        assert w.store.engines == {}
        with pytest.raises(NotFound):
            w.manager.get("a")
        with pytest.raises(NotFound):
            await w.manager.stop("a")


@pytest.mark.asyncio
async def test_stop_cancels_resting_orders_but_shutdown_leaves_them() -> None:
    w = World({"a": GRID_CLOSES, "b": GRID_CLOSES})
    async with w.manager:
        await w.manager.start("a", grid())
        await w.manager.start("b", grid())
        await w.clock.advance(1)
        assert w.manager.get("a").open_orders == 2
        await w.manager.stop("a")
        assert {o.status for o in w.store.orders["a"].values()} == {OrderStatus.CANCELED}
    assert {o.status for o in w.store.orders["b"].values()} == {OrderStatus.OPEN}
    assert w.store.engines["b"].desired is DesiredState.RUNNING
    assert w.states("b")[-1] is S.STOPPED


@pytest.mark.asyncio
async def test_engines_resume_after_a_daemon_restart_without_reusing_an_order_id() -> None:
    first = World({"a": SMA_CLOSES, "b": SMA_CLOSES})
    async with first.manager:
        await first.manager.start("a", sma())
        await first.manager.start("b", sma())
        await first.manager.stop("b")
        await first.clock.advance(5 * 60 + 1)  # cycles 1..6; the golden cross buys in cycle 5
    assert first.store.engines["a"].cycle == 1  # the last round (a cycle that placed orders)

    second = World({"a": SMA_CLOSES, "b": SMA_CLOSES}, store=first.store, clock=first.clock)
    async with second.manager:
        assert second.manager.get("b").state is S.STOPPED
        await second.clock.advance(4 * 60)
        status = second.manager.get("a")
        assert (status.state, status.engine_id) == (S.RUNNING, "e1e1")
        assert status.positions[0].amount == 0  # the death cross sold what cycle 5 bought
    orders = sorted(second.store.orders["a"].values(), key=lambda o: o.cycle)
    # the resumed engine numbers on from the next round
    assert [(o.side, o.cycle) for o in orders] == [(Side.BUY, 1), (Side.SELL, 2)]
    assert len({o.client_order_id for o in orders}) == 2


@pytest.mark.asyncio
async def test_a_live_engine_killed_mid_cycle_resumes_without_a_duplicate() -> None:
    exchange = FakeExchange(balances=(Balance("USDT", D(1000), D(1000)),))
    w = World({"a": GRID_CLOSES}, exchanges={"a": exchange})
    config = grid(mode=TradingMode.LIVE)
    w.store.engines["a"] = EngineRecord("a", "e1e1", config, DesiredState.RUNNING, cycle=3)
    sent = OrderRequest(client_order_id("e1e1", 3, 0), SYMBOL, Side.BUY, OrderType.LIMIT, D(10),
                        D("9.5"), "grid:BTC/USDT:-1:buy", 3)
    lost = OrderRequest(client_order_id("e1e1", 3, 1), SYMBOL, Side.BUY, OrderType.LIMIT, D(10),
                        D("9.0"), "grid:BTC/USDT:-2:buy", 3)
    for request in (sent, lost):  # written ahead, then SIGKILL: only `sent` reached the venue
        await w.store.save_execution("a", _pending(request))
    await exchange.create_order(SYMBOL, OrderType.LIMIT, Side.BUY, D(10), D("9.5"),
                                sent.client_order_id)
    async with w.manager:
        await w.clock.advance(1)
        assert w.manager.get("a").state is S.RUNNING
        stored = w.store.orders["a"]
        assert stored[sent.client_order_id].status is OrderStatus.OPEN
        assert stored[lost.client_order_id].status is OrderStatus.REJECTED
        live_tags = [o.tag for o in stored.values() if o.status is OrderStatus.OPEN]
        assert sorted(live_tags) == ["grid:BTC/USDT:-1:buy", "grid:BTC/USDT:-2:buy"]
        assert exchange.calls.count("create_order") == 2  # the setup's, and the -2 level again
        assert {o.cycle for o in stored.values()} == {3, 4}


def _pending(request: OrderRequest) -> Execution:
    return Execution(Order.pending(request, 0))


@pytest.mark.asyncio
async def test_a_dry_run_places_nothing() -> None:
    w = World({"a": SMA_CLOSES})
    async with w.manager:
        with pytest.raises(FailedPrecondition):
            await w.manager.test("a")
        await w.clock.advance(4 * 60)
        dry = await w.manager.test("a", sma())
        assert [(v.intent.side, v.accepted) for v in dry.verdicts] == [(Side.BUY, True)]
        assert w.backend.opened == [("a", TradingMode.PAPER)] and w.backend.closed == ["a"]
        await w.manager.start("a", grid())
        await w.clock.advance(1)
        placed = w.manager.get("a").orders_placed
        preview = await w.manager.test("a")
        assert preview.intents == ()  # every level already holds its order
        assert w.manager.get("a").orders_placed == placed
        assert "a" in w.store.orders and len(w.store.orders["a"]) == placed


@pytest.mark.asyncio
async def test_watchers_get_heartbeats_and_health_counts_engines() -> None:
    w = World({"a": SMA_CLOSES, "b": SMA_CLOSES})
    async with w.manager:
        watcher = w.manager.watch()
        await watcher.next_event()
        await w.manager.start("a", sma())
        await w.clock.advance(30)
        events = [await watcher.next_event() for _ in range(watcher.backlog)]
        assert Heartbeat(w.clock.now_ms()) in events
        health = w.manager.health()
        assert (health.engines, health.running, health.failed, health.watchers) == (1, 1, 0, 1)
        assert health.stalled == ()


@pytest.mark.asyncio
async def test_an_overrunning_cycle_skips_the_ticks_it_missed_and_counts_them() -> None:
    w = World({"a": SMA_CLOSES})
    market = w.markets["a"]
    slow_ticker = market.ticker

    async def ticker(symbol: str) -> Ticker:
        if len([c for c in market.calls if c == "ticker"]) == 1:  # the second cycle's
            await w.clock.sleep(150)
        return await slow_ticker(symbol)

    market.ticker = ticker  # type: ignore[method-assign]
    async with w.manager:
        await w.manager.start("a", sma())
        await w.clock.advance(60 + 150 + 1)  # cycle 2 runs 60 → 210: ticks 120, 180 missed
        assert w.manager.get("a").cycles == 2  # the skips are published with the next cycle
        await w.clock.advance(30)  # the next tick is 240, on the original schedule
        status = w.manager.get("a")
        assert (status.cycles, status.skipped_ticks, status.last_cycle_lag_s) == (3, 2, 0.0)


@pytest.mark.asyncio
async def test_a_stop_does_not_wait_for_a_cycle_that_is_still_reading() -> None:
    w = World({"a": GRID_CLOSES}, exchanges={"a": FakeExchange(balances=FUNDS)})
    market = w.markets["a"]
    ticker = market.ticker
    starved = asyncio.Event()

    async def starved_ticker(symbol: str) -> Ticker:
        if market.calls.count("ticker") == 1:  # the second cycle's: no budget for an hour
            starved.set()
            await w.clock.sleep(3600)
        return await ticker(symbol)

    market.ticker = starved_ticker  # type: ignore[method-assign]
    async with w.manager:
        await w.manager.start("a", grid(mode=TradingMode.LIVE))
        await w.clock.advance(60)
        await asyncio.wait_for(starved.wait(), 1)
        placed = w.manager.get("a").orders_placed
        stopped = await asyncio.wait_for(w.manager.stop("a"), 1)  # no clock advance needed
        assert stopped.state is S.STOPPED
        assert (stopped.cycles, stopped.orders_placed) == (1, placed)
