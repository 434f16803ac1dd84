"""Event-driven engines (a WebSocket connection): market events trigger cycles, at most one per
interval; a stream that is down sends the engine back to polling REST at the interval, shown
on its status; no event at all still cycles now and then; ticker changes inside the
engine's quiet bands wake nothing. Virtual time throughout."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from ctsd.engine.config import RiskLimits
from ctsd.engine.status import DataSource, EngineState, FailureCode
from ctsd.strategies.model import Ticker
from tests.engine.fakes import ScriptedEvents, ScriptedMarket
from tests.engine.world import SMA_CLOSES, SYMBOL, World, grid

D = Decimal

INTERVAL = 1.0  # the default EngineConfig interval: the minimum spacing of cycles


def cycle_times(w: World, connection_id: str = "a") -> list[float]:
    """When each cycle finished (a status with a new cycle count), in virtual seconds."""
    seen, times = 0, []
    for at, status in w.hub.log:
        if status.connection_id == connection_id and status.cycles > seen:
            seen = status.cycles
            times.append(at)
    return times


@contextlib.asynccontextmanager
async def streaming_engine() -> AsyncIterator[tuple[World, ScriptedEvents]]:
    """A grid engine on a WebSocket connection, started at 0 (its first cycle runs then)."""
    w = World({"a": SMA_CLOSES})
    events = ScriptedEvents(w.clock)
    w.backend.events["a"] = events
    async with w.manager:
        await w.manager.start("a", grid(interval_s=INTERVAL))
        yield w, events


@pytest.mark.asyncio
async def test_market_events_trigger_cycles_no_closer_than_the_interval() -> None:
    async with streaming_engine() as (w, events):
        await w.clock.advance(0.1)
        assert cycle_times(w) == [0.0]  # the first cycle at once
        assert events.followed and events.followed[0][0] == ("BTC/USDT",)
        await w.clock.advance(5.0)
        assert cycle_times(w) == [0.0]  # no event: no cycle (and no REST poll)
        events.push()  # at 5.1: due now
        await w.clock.advance(0.1)
        events.push()  # at 5.2, 5.4: within the spacing, one cycle serves both
        await w.clock.advance(0.2)
        events.push()
        await w.clock.advance(2.0)
        assert cycle_times(w) == [0.0, 5.1, 6.1]
        status = w.manager.get("a")
        assert status.data_source is DataSource.STREAM
        assert status.last_cycle_lag_s == pytest.approx(0.0)  # ran when the spacing allowed


@pytest.mark.asyncio
async def test_a_stream_that_is_down_falls_back_to_polling_and_says_so() -> None:
    async with streaming_engine() as (w, events):
        await w.clock.advance(0.1)
        events.streaming = False
        events.problem = "binance:spot:ticker:BTC/USDT stale: no data for 10.0 s"
        events.fallbacks = 3
        events.push()  # served once the spacing allows, then polls at the interval
        await w.clock.advance(3.0)
        assert cycle_times(w) == [0.0, 1.0, 2.0, 3.0]
        status = w.manager.get("a")
        assert status.data_source is DataSource.REST_FALLBACK
        assert "stale" in status.data_problem and status.data_fallbacks == 3
        events.streaming, events.problem = True, ""
        await w.clock.advance(1.0)  # one more poll, then back to waiting for events
        await w.clock.advance(10.0)
        assert len(cycle_times(w)) == 5
        assert w.manager.get("a").data_source is DataSource.STREAM


@pytest.mark.asyncio
async def test_a_quiet_market_still_cycles_now_and_then() -> None:
    async with streaming_engine() as (w, _):
        await w.clock.advance(65.0)
        assert cycle_times(w) == [0.0, 30.0, 60.0]  # every idle_cycles (30) intervals


@pytest.mark.asyncio
async def test_a_stop_does_not_wait_for_the_next_event() -> None:
    async with streaming_engine() as (w, events):
        await w.clock.advance(0.5)
        stopped = await w.clock.run_coroutine(w.manager.stop("a"), limit_s=1.0)
        assert stopped.state is EngineState.STOPPED
        assert events.closed == 0  # the backend closes it (see the wiring tests)


class PathMarket(ScriptedMarket):
    """The ticker a test sets (bid = ask = last)."""

    price = D(10)

    async def ticker(self, symbol: str) -> Ticker:
        return Ticker(symbol, self.price, self.price, self.price, self._clock.now_ms())


@pytest.mark.asyncio
async def test_a_grid_sleeps_inside_its_bands_and_its_loss_limit_trips_on_the_tick() -> None:
    """Levels 9, 9.5, 10.5, 11; a daily loss limit of 3. The engine cycles on the ticks that
    leave its bands (a level crossed, a resting buy reached, the loss limit's price), on
    the idle timer, and on nothing else."""
    w = World({"a": SMA_CLOSES})
    market = PathMarket(w.clock, {})
    w.markets["a"] = market  # the backend's
    events = ScriptedEvents(w.clock)
    w.backend.events["a"] = events

    async def tick(price: str) -> bool:
        market.price = D(price)
        woke = events.tick(SYMBOL, await market.ticker(SYMBOL))
        await w.clock.advance(INTERVAL)
        return woke

    market.price = D("10.2")
    async with w.manager:
        await w.manager.start("a", grid(interval_s=INTERVAL,
                                        risk=RiskLimits(daily_loss_limit=D(3))))
        await w.clock.advance(INTERVAL)  # the first cycle: buys at 9.5 and 9
        assert await tick("10.25")  # it placed orders: the next tick is looked at
        assert [await tick(p) for p in ("10.1", "10.45", "9.55")] == [False] * 3
        assert len(cycle_times(w)) == 2
        await w.clock.advance(30 * INTERVAL)  # the idle timer still cycles
        assert len(cycle_times(w)) == 3
        assert await tick("9.4")  # the buy at 9.5 fills: 10 held, a sell at 9.5
        assert w.manager.get("a").orders_filled == 1
        assert await tick("9.3")  # it placed the sell: looked at once more
        # 10 held at 9.5 with 0.0475 fees paid: the limit is reached at 9.20475
        assert not await tick("9.25")
        assert w.manager.get("a").state is EngineState.RUNNING
        assert await tick("9.2")
        status = w.manager.get("a")
        assert status.failure is not None and status.failure.code is FailureCode.RISK_LIMIT
        assert events.quiet_events == 4
        assert status.quiet_events == 3  # as of the last cycle that ran to its end
