"""A simulator serving WebSockets, a client factory on it, and a hub with fast liveness
settings (seconds, not the production tens of seconds), closed in order at teardown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from ctsd.clock import SystemClock
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.marketdata.feeds import StreamState, Subscription
from ctsd.marketdata.hub import HubSettings, MarketDataHub
from ctsd.ratelimit import Lane, RateLimiter
from ctsd.sim.clock import Clock
from ctsd.sim.server import SimulatorServer
from ctsd.sim.ws.config import WsConfig
from ctsd.wiring.engine_exchange import ExchangeMarketData
from ctsd.wiring.engine_streams import StreamingMarketData
from tests.support.exchange_clients import exchange_sim_config, make_factory

WAIT_S = 15.0
"""Upper bound on any wait here: a failing test fails, it never hangs."""
FAST = HubSettings(ticker_cadence_s=3.0, book_cadence_s=3.0, candle_cadence_min_s=6.0,
                   check_s=0.1, retry_s=0.1, max_retry_s=0.5, gather_s=0.05)
BINANCE = ConnectionTarget("binance", ApiType.SPOT)


@pytest.fixture
def sim_clock() -> Clock | None:
    """The simulator's clock: the wall clock (None) unless a module freezes it."""
    return None


@pytest_asyncio.fixture
async def server(sim_clock: Clock | None) -> AsyncIterator[SimulatorServer]:
    config = exchange_sim_config(markets=30, ws=WsConfig(tick_s=0.02))
    async with SimulatorServer(config, clock=sim_clock) as srv:
        yield srv


@pytest_asyncio.fixture
async def factory(server: SimulatorServer) -> AsyncIterator[ExchangeClientFactory]:
    async with RateLimiter() as limiter, make_factory(server, limiter) as built:
        yield built


@pytest_asyncio.fixture
async def hub(factory: ExchangeClientFactory) -> AsyncIterator[MarketDataHub]:
    async with MarketDataHub(factory.market_stream, SystemClock(), FAST) as built:
        yield built


@contextlib.asynccontextmanager
async def streaming_data(hub: MarketDataHub, factory: ExchangeClientFactory,
                         ) -> AsyncIterator[StreamingMarketData]:
    """An engine's market data over `hub` (REST through a client of `factory`), closed after."""
    client = await factory.client(BINANCE, lane=Lane.POLL)
    built = StreamingMarketData(hub, BINANCE, ExchangeMarketData(client), SystemClock())
    try:
        yield built
    finally:
        built.close()
        await client.close()


async def until(hub: MarketDataHub, check: Callable[[], bool], within: float = WAIT_S) -> None:
    """Until `check` holds, re-checked at each of the hub's data batches and watchdog
    rounds (`check_s`, 0.1 s); fails after `within`."""
    async with asyncio.timeout(within):
        await hub.wait_for(check)


async def live(hub: MarketDataHub, sub: Subscription, within: float = WAIT_S) -> None:
    await until(hub, lambda: sub.state is StreamState.LIVE, within)


async def polled(check: Callable[[], bool], every_s: float = 0.02) -> None:
    """Until `check` holds, for what signals nothing (the simulator's state, a callback
    count); fails after WAIT_S."""
    async with asyncio.timeout(WAIT_S):
        while True:
            if check():
                return
            await asyncio.sleep(every_s)


def ws_connections(server: SimulatorServer, venue: str = "binance") -> list[dict[str, Any]]:
    return [c for c in server.streams.snapshot()["connections"] if c["venue"] == venue]


def violations(server: SimulatorServer) -> Any:
    """REST and WebSocket limit breaches the simulator counted, by venue and limit."""
    return server.sim.stats.snapshot()["violations_by_kind"]
