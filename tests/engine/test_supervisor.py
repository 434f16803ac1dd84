"""Failure handling of engine tasks: restart with backoff, isolation, and the fail-closed stops."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from ctsd.clock import SystemClock
from ctsd.engine.config import RiskLimits, TradingMode
from ctsd.engine.manager import EngineManager
from ctsd.engine.orders import OrderStatus
from ctsd.engine.status import EngineState, EngineStatus, FailureCode
from ctsd.engine.store_ports import DesiredState
from ctsd.engine.supervisor import RestartPolicy
from ctsd.store.database import Database
from ctsd.store.engines import SqlEngineStore
from ctsd.strategies.model import Balance, Ticker
from tests.engine.fakes import FakeBackend, FakeExchange, ScriptedMarket
from tests.engine.world import (
    FAST_RESTARTS,
    REGISTRY,
    SMA_CLOSES,
    SYMBOL,
    RecordingHub,
    World,
    fragile,
    grid,
    sma,
)
from tests.support.virtual_clock import VirtualClock

D = Decimal
S = EngineState


@pytest.mark.asyncio
async def test_a_crashing_engine_restarts_with_backoff_while_others_run_on() -> None:
    # "a" crashes whenever the price is 3: the candle from t=120 to t=180.
    w = World({"a": [D(x) for x in range(1, 30)], "b": SMA_CLOSES * 3})
    async with w.manager:
        await w.manager.start("a", fragile("3"))
        await w.manager.start("b", sma())
        await w.clock.advance(600.5)
        a, b = w.manager.get("a"), w.manager.get("b")
    assert w.times("a", S.FAILED) == [120, 130, 150]
    assert w.times("a", S.STARTING)[1:] == [130, 150, 190]  # backoff 10, 20, 40 s
    assert (a.state, a.restarts, a.failure) == (S.RUNNING, 3, None)
    assert a.last_error.startswith("CYCLE_ERROR: ValueError: poisoned by 3")
    assert w.states("b")[:2] == [S.STARTING, S.RUNNING] and S.FAILED not in w.states("b")
    assert (b.state, b.cycles, b.restarts) == (S.RUNNING, 11, 0)


@pytest.mark.asyncio
async def test_restarts_give_up_after_the_limit_until_started_again() -> None:
    w = World({"a": [D(3)] * 100})
    async with w.manager:
        await w.manager.start("a", fragile("3"))
        await w.clock.advance(10_000)
        status = w.manager.get("a")
        assert status.state is S.FAILED and status.failure is not None
        assert status.failure.code is FailureCode.RESTART_LIMIT
        assert status.restarts == 3
        assert w.store.engines["a"].last_error.startswith("RESTART_LIMIT: 4 failures in a row")
        assert (await w.manager.stop("a")).state is S.STOPPED
        assert (await w.manager.start("a", sma())).state is S.STARTING


@pytest.mark.asyncio
async def test_a_failed_reconciliation_fails_closed_and_is_not_retried() -> None:
    w = World({"a": SMA_CLOSES})
    w.store.fail_list_orders = True
    async with w.manager:
        await w.manager.start("a", sma())
        await w.clock.advance(3_600)
        status = w.manager.get("a")
        assert status.failure is not None
        assert status.failure.code is FailureCode.RECONCILIATION_FAILED
        assert "store is down" in status.failure.message
        assert w.states("a") == [S.STARTING, S.FAILED]
        assert w.markets["a"].calls == []  # never looked at the market, never traded
        assert w.store.engines["a"].desired is DesiredState.RUNNING  # a daemon restart retries


@pytest.mark.asyncio
async def test_the_daily_loss_limit_stops_the_engine_and_cancels_its_orders() -> None:
    # Buys rest at 9.5 and 9.0 (10 each); 9.4 fills one, 5 fills the other: 20 held at 9.25,
    # marked at 5 that is -85, plus 0.0925 of maker fees.
    w = World({"a": [D("10.2"), D("9.4"), D(5), D(5)]})
    async with w.manager:
        await w.manager.start("a", grid(risk=RiskLimits(daily_loss_limit=D(50))))
        await w.clock.advance(600)
        status = w.manager.get("a")
    assert status.state is S.FAILED and status.failure is not None
    assert status.failure.code is FailureCode.RISK_LIMIT
    assert status.failure.message == "daily loss 85.09 reached daily_loss_limit 50"
    assert w.states("a") == [S.STARTING, S.RUNNING, S.FAILED]
    assert w.store.engines["a"].desired is DesiredState.STOPPED
    assert w.store.engines["a"].last_error.startswith("RISK_LIMIT")
    assert [o.status for o in w.store.orders["a"].values()].count(OrderStatus.OPEN) == 0
    assert status.open_orders == 0


@pytest.mark.asyncio
async def test_a_cycle_hung_in_a_read_shows_as_stalled_and_shutdown_stops_it_cleanly() -> None:
    w = World({"a": SMA_CLOSES})
    market = w.markets["a"]
    hang = asyncio.Event()
    original = market.ticker

    async def ticker(symbol: str) -> Ticker:
        if w.clock.monotonic() >= 120:
            await hang.wait()
        return await original(symbol)

    market.ticker = ticker  # type: ignore[method-assign]
    async with w.manager:
        await w.manager.start("a", sma())
        await w.clock.advance(600)
        assert w.manager.health().stalled == ("a",)
    # Reads are abandoned at a stop; a cycle hung while placing is aborted after the
    # grace instead (test_manager_shutdown's hanging cancels).
    assert w.manager.get("a").state is S.STOPPED
    assert w.backend.closed == ["a"]


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RestartPolicy(base_delay_s=1, max_delay_s=10)
    assert [policy.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def entered(hub: RecordingHub, connection_id: str, state: EngineState) -> list[float]:
    """When the engine entered `state` (statuses repeat while it stays there)."""
    found, previous = [], None
    for at, status in hub.log:
        if status.connection_id == connection_id:
            if status.state is state and previous is not state:
                found.append(at)
            previous = status.state
    return found


def final(status: EngineStatus) -> bool:
    """Failed for good: the restart limit, not one of the failures before it."""
    return status.failure is not None and status.failure.code is FailureCode.RESTART_LIMIT


REAL_TIME_RESTARTS = RestartPolicy(max_restarts=3, base_delay_s=0.1, max_delay_s=0.4)


@pytest.mark.asyncio
async def test_a_crashing_strategy_stays_isolated_on_the_real_sql_store(tmp_path: Path) -> None:
    """Real time and a real SQLite store (its I/O runs on threads a virtual clock cannot
    wait for): "a" runs the test-only `fragile` plugin, which raises on every cycle."""
    clock = SystemClock()
    still = VirtualClock()  # the scripted prices never move: "a" always sees its poison
    markets = {"a": ScriptedMarket(still, {SYMBOL: [D(3)] * 30}),
               "b": ScriptedMarket(still, {SYMBOL: SMA_CLOSES})}
    hub = RecordingHub(clock)
    db = await Database.open(tmp_path)
    try:
        store = SqlEngineStore(db)
        manager = EngineManager(store, FakeBackend(markets, {}), REGISTRY, clock=clock, hub=hub,
                                policy=REAL_TIME_RESTARTS, heartbeat_s=30, shutdown_grace_s=1)
        async with manager:
            watcher = manager.watch()
            await manager.start("b", sma(interval_s=1.0))
            await manager.start("a", fragile("3"))
            async with asyncio.timeout(30):  # a bound, not a wait: each status change is awaited
                while not (final(manager.get("a")) and manager.get("b").cycles >= 3):
                    await watcher.next_event()
            watcher.close()
            a, b = manager.get("a"), manager.get("b")
        records = {r.connection_id: r for r in await store.load_engines()}
    finally:
        await db.close()
    failed, restarted = entered(hub, "a", S.FAILED), entered(hub, "a", S.STARTING)[1:]
    assert len(failed) == 4 and len(restarted) == 3  # the fourth failure in a row is final
    gaps = [start - fail for fail, start in zip(failed, restarted, strict=False)]
    assert all(gap >= backoff - 0.01 for gap, backoff in zip(gaps, [0.1, 0.2, 0.4],
                                                             strict=True)), gaps
    assert a.state is S.FAILED and a.restarts == 3
    assert a.failure is not None and a.failure.code is FailureCode.RESTART_LIMIT
    assert records["a"].last_error == a.last_error == (
        "RESTART_LIMIT: 4 failures in a row; last: ValueError: poisoned by 3")
    # "b" ran on undisturbed: every cycle on time, never failed, never restarted.
    assert not any(s.state is S.FAILED for _, s in hub.log if s.connection_id == "b")
    assert (b.state, b.restarts, b.last_error) == (S.RUNNING, 0, "") and b.cycles >= 3
    assert records["b"].desired is DesiredState.RUNNING


@pytest.mark.asyncio
async def test_an_exchange_outage_is_waited_out_however_long_it_lasts() -> None:
    exchange = FakeExchange(balances=(Balance("USDT", D(1000), D(1000)),))
    w = World({"a": [D("10.2")] * 20}, exchanges={"a": exchange})
    async with w.manager:
        await w.manager.start("a", grid(mode=TradingMode.LIVE))
        await w.clock.advance(1)
        assert w.manager.get("a").open_orders == 2
        exchange.fail_fetch = True  # maintenance: every read fails, reconciliation too
        await w.clock.advance(2 * 3600)
        down = w.manager.get("a")
        assert down.state in (S.FAILED, S.STARTING) and down.failure is not None
        assert down.failure.code is FailureCode.EXCHANGE_UNAVAILABLE
        assert down.restarts > FAST_RESTARTS.max_restarts  # an outage is not the engine's fault
        assert "exchange in maintenance" in down.failure.message
        exchange.fail_fetch = False
        await w.clock.advance(FAST_RESTARTS.max_delay_s + 61)
        up = w.manager.get("a")
        assert (up.state, up.open_orders) == (S.RUNNING, 2)  # reconciled, not placed again
        assert len(exchange.orders) == 2


class StubbornClock(VirtualClock):
    """A clock whose sleeps, once armed, ignore their first cancellation: what code that
    loses a cancellation does (`ctsd.tasks`)."""

    armed = False
    swallowed = 0

    async def sleep(self, seconds: float) -> None:
        try:
            await super().sleep(seconds)
        except asyncio.CancelledError:
            if not self.armed:
                raise
            self.swallowed += 1
            await super().sleep(seconds)  # the virtual clock stands still: for ever


@pytest.mark.asyncio
async def test_a_stop_ends_a_wait_whose_sleep_ignores_its_cancellation() -> None:
    """The engine's wait between cycles races the stop against a sleep; the sleep left is
    ended by `cancel_and_wait`, which cancels it again (a hand-written cancel and await
    waited for it for ever)."""
    clock = StubbornClock()
    w = World({"a": SMA_CLOSES}, clock=clock)
    async with w.manager:
        await w.manager.start("a", sma())
        await clock.advance(90)  # between cycles: the engine waits on the clock
        clock.armed = True
        async with asyncio.timeout(20):  # a bound, not a wait: the stop ends in ~1 s
            status = await w.manager.stop("a")
        clock.armed = False
    assert status.state is S.STOPPED and clock.swallowed == 1
