"""Failure handling of engine tasks: restart with backoff, isolation, and the fail-closed stops."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from ctsd.engine.config import RiskLimits
from ctsd.engine.orders import OrderStatus
from ctsd.engine.ports import DesiredState
from ctsd.engine.status import EngineState, FailureCode
from ctsd.engine.supervisor import RestartPolicy
from ctsd.strategies.model import Ticker
from tests.engine.world import SMA_CLOSES, World, fragile, grid, sma

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
async def test_a_hung_cycle_shows_as_stalled_and_shutdown_still_finishes() -> None:
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
    assert w.manager.get("a").state is S.RUNNING  # aborted, not stopped cleanly
    assert w.backend.closed == ["a"]


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RestartPolicy(base_delay_s=1, max_delay_s=10)
    assert [policy.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
