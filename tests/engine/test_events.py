"""Event-driven engines (a WebSocket connection): market events trigger cycles, at most one per
interval; a stream that is down sends the engine back to polling REST at the interval, shown
on its status; no event at all still cycles now and then. Virtual time throughout."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal

import pytest

from ctsd.engine.status import DataSource, EngineState, EngineStatus
from ctsd.strategies.base import DataNeeds
from ctsd.strategies.model import MarketInfo, MarketSnapshot, SymbolMarket, Ticker
from tests.engine.fakes import ScriptedEvents
from tests.engine.world import SMA_CLOSES, World, grid

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
async def test_health_reads_the_default_idle_timeout_of_a_streaming_engine() -> None:
    """The daemon gives the manager no restart policy; a running engine on a WebSocket
    connection may sleep for the default policy's idle cycles, and health allows for it
    (it raised NameError there, so GetCoordinatorHealth answered INTERNAL)."""
    w = World({"a": SMA_CLOSES}, policy=None)
    w.backend.events["a"] = ScriptedEvents(w.clock)
    async with w.manager:
        await w.manager.start("a", grid(interval_s=INTERVAL))
        await w.clock.advance(20 * INTERVAL)  # no event: asleep since the first cycle
        health = w.manager.health()
        assert (health.running, health.stalled) == (1, ())


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


class MemoryEvents(ScriptedEvents):
    """Market data in memory, as the hub's: a cycle reads and decides without an await.
    Each read is noted in `trail`, shared by the engines of one test."""

    def __init__(self, w: World, name: str, trail: list[tuple[str, str]]) -> None:
        super().__init__(w.clock)
        self._name, self._trail = name, trail

    def snapshot_now(self, infos: Mapping[str, MarketInfo], needs: DataNeeds, now_ms: int,
                     ) -> MarketSnapshot | None:
        self._trail.append(("read", self._name))
        return MarketSnapshot(now_ms, tuple(
            SymbolMarket(i, Ticker(i.symbol, D("9.99"), D("10.01"), D(10), now_ms))
            for i in infos.values()))


@pytest.mark.asyncio
async def test_engines_woken_together_all_decide_before_any_does_its_bookkeeping() -> None:
    """One market event wakes many engines (the venue trades every pair at once): each
    one's cycle-end status waits until every woken engine decided (the after-cycle reads
    suspend the cycle first), so no engine's decision queues behind others' bookkeeping."""
    names = [f"c{i}" for i in range(5)]
    w = World({n: SMA_CLOSES for n in names})
    trail: list[tuple[str, str]] = []
    streams = {n: MemoryEvents(w, n, trail) for n in names}
    w.backend.events.update(streams)
    publish = w.hub.publish

    def noted(status: EngineStatus) -> None:
        if status.cycles and status.cycles > (w.hub.get(status.connection_id) or status).cycles:
            trail.append(("done", status.connection_id))
        publish(status)

    w.hub.publish = noted  # type: ignore[method-assign]
    async with w.manager:
        for n in names:
            await w.manager.start(n, grid(interval_s=INTERVAL))
        await w.clock.advance(5.0)
        trail.clear()
        for n in names:  # in one instant, as the hub's feed notifies its listeners
            streams[n].push()
        await w.clock.advance(0.1)
    kinds = [kind for kind, _ in trail]
    assert kinds == ["read"] * len(names) + ["done"] * len(names), trail
