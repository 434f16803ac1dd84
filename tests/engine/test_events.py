"""Event-driven engines (a WebSocket connection): market events trigger cycles, at most one per
interval; a stream that is down sends the engine back to polling REST at the interval, shown
on its status; no event at all still cycles now and then. Virtual time throughout."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from ctsd.engine.status import DataSource, EngineState
from tests.engine.fakes import ScriptedEvents
from tests.engine.world import SMA_CLOSES, World, grid

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
