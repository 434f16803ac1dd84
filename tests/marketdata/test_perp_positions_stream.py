"""LIVE perpetuals engines on a WebSocket connection: positions from the private stream
(Binance USDⓈ-M `ACCOUNT_UPDATE`, Bybit `position`, OKX `positions`, through unmodified
ccxt.pro on the order stream's socket) and funding terms held between funding times, so a
cycle in steady state sends no REST request at all; REST reads the positions only when the
session starts, after a stream gap, when a difference outlasts the stream-lag rule, and
at the slow interval.

Real parts throughout: the simulator over HTTP and WebSocket, the market-data hub, the
order feed, the daemon's exchange layer and shared rate limiter, the engine with its
brokers (`assemble_engine`) and the SQLite store; the strategy is scripted (it places what
the test queues) and the engine's clock is the wall clock that a test may step past the
stream-lag wait (`SteppedClock`) instead of sleeping through it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
import pytest_asyncio

from ctsd.engine.perpetual import AccountModes, MarginMode
from ctsd.engine.position_check import STREAM_LAG_S, PositionMismatch
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.spec import ApiType
from ctsd.marketdata.hub import MarketDataHub
from ctsd.ratelimit import Lane
from ctsd.sim.faults import FaultKind, FaultSpec
from ctsd.sim.funding import FUNDING_INTERVAL_MS
from ctsd.sim.server import SimulatorServer
from ctsd.store.engines import SqlEngineStore
from ctsd.strategies.model import Side
from tests.marketdata.conftest import WAIT_S, polled, violations
from tests.support.exchange_clients import ClientMaker, make_client
from tests.support.perp_rig import SYMBOL, market_order
from tests.support.perp_stream_rig import Driven, open_engine, rest_calls
from tests.wiring.conftest import store

pytestmark = pytest.mark.asyncio
BY_VENUE = pytest.mark.parametrize("venue", ["binance", "bybit", "okx"])
QUIET_CYCLES = 5
Opener = Callable[..., Awaitable[Driven]]
__all__ = ["make_client", "store"]  # fixtures


@pytest_asyncio.fixture
async def opened(server: SimulatorServer, factory: ExchangeClientFactory, hub: MarketDataHub,
                 store: SqlEngineStore) -> AsyncIterator[Opener]:
    """`await opened(venue, ...)`: a streaming engine (`open_engine`), closed after."""
    async with AsyncExitStack() as stack:
        yield partial(open_engine, server, factory, hub, store, stack)


async def long(opened: Opener, venue: str, amount: str, **more: Any) -> Driven:
    """A streaming engine that bought `amount`, its stream showing it, and past the one
    funding-history read a first held position makes."""
    s: Driven = await opened(venue, **more)
    await s.cycle(market_order(Side.BUY, amount))
    await s.holding(amount)
    await s.cycle()
    return s


async def assert_quiet(s: Driven, server: SimulatorServer) -> None:
    """`QUIET_CYCLES` cycles: not one REST request, every position from the stream."""
    reads, before = s.broker.position_reads, rest_calls(server, s.venue)
    for _ in range(QUIET_CYCLES):
        await s.cycle()
    assert rest_calls(server, s.venue) - before == Counter()
    assert s.broker.position_reads == reads
    assert s.engine.status.position_differences == 0


async def trusted(s: Driven, server: SimulatorServer) -> None:
    """Until two cycles in a row take everything from the streams again (the private
    stream live with no gap since REST last read, the hub's ticker live)."""
    async def quiet() -> bool:
        before = rest_calls(server, s.venue)
        await s.cycle()
        return s.broker.positions_streamed() and rest_calls(server, s.venue) == before

    async with asyncio.timeout(WAIT_S):
        while True:
            if await quiet() and await quiet():
                return
            await asyncio.sleep(0.25)  # an engine's spacing, not a hammering of REST


@BY_VENUE
async def test_steady_cycles_send_no_rest_request_and_an_outside_trade_is_found_on_the_stream(
    server: SimulatorServer, opened: Opener, make_client: ClientMaker, venue: str,
) -> None:
    s = await long(opened, venue, "0.01")
    await assert_quiet(s, server)
    streamed = await s.streams.ticker(SYMBOL)  # the mark between REST reads of the terms
    assert (streamed.mark is not None) == (venue == "bybit")  # others: the last price

    # Another program buys on the same account: the stream shows it at once; the engine
    # allows the stream its lag, then confirms over REST and stops, naming the trade.
    updates = s.order_feed.position_updates
    client = await make_client(venue, ApiType.PERPETUAL_FUTURES, lane=Lane.ORDER)
    await client.create_order(SYMBOL, "buy", "market", Decimal("0.002"),
                              margin_mode="cross" if venue == "okx" else None)
    await polled(lambda: s.order_feed.position_updates > updates)
    await s.cycle()  # within the stream's lag: not acted on yet
    assert s.net() == Decimal("0.012") and s.engine.status.position_differences == 0
    s.clock.step(STREAM_LAG_S)
    with pytest.raises(PositionMismatch) as stopped:
        await s.cycle()
    assert "ledger 0.01, venue 0.012 (outside trade: venue order " in str(stopped.value)
    assert violations(server) == {}


@BY_VENUE
async def test_a_liquidation_is_found_on_the_stream(
    server: SimulatorServer, opened: Opener, venue: str,
) -> None:
    s = await long(opened, venue, "0.05", modes=AccountModes(MarginMode.ISOLATED, False),
                   leverage=50)
    [position] = s.broker.positions()
    assert position.liquidation_price is not None
    updates = s.order_feed.position_updates
    server.sim.set_price(SYMBOL, position.liquidation_price - 50)
    await polled(lambda: s.order_feed.position_updates > updates)
    await s.holding("0")  # the stream closed the position; the engine waits its lag
    assert s.engine.status.position_differences == 0
    s.clock.step(STREAM_LAG_S)
    with pytest.raises(PositionMismatch) as stopped:
        await s.cycle()
    assert str(stopped.value) == f"{SYMBOL}: ledger 0.05, venue 0 (liquidation)"
    assert s.engine.status.liquidations == 1


@BY_VENUE
async def test_a_dropped_stream_falls_back_to_rest_and_recovers(
    server: SimulatorServer, opened: Opener, venue: str,
) -> None:
    s = await long(opened, venue, "0.01")
    reads, gaps = s.broker.position_reads, s.order_feed.gaps
    server.sim.add_fault(FaultSpec(FaultKind.WS_DROP, venue=venue, count=8))
    await polled(lambda: s.order_feed.gaps > gaps)
    await s.cycle()  # the stream had a gap: positions (and orders) over REST
    assert s.broker.position_reads > reads
    server.sim.clear_faults()
    await trusted(s, server)  # back on the stream, REST read what it said during the gap
    await assert_quiet(s, server)
    assert s.net() == Decimal("0.01")


@BY_VENUE
async def test_funding_across_a_funding_time_is_booked_once(
    server: SimulatorServer, opened: Opener, store: SqlEngineStore, venue: str,
) -> None:
    s = await long(opened, venue, "0.1")
    assert s.engine.status.funding_pnl == 0
    k = server.sim.set_funding_rate(SYMBOL, Decimal("0.001"))
    server.sim.advance(FUNDING_INTERVAL_MS / 1000)  # the venue's clock crosses a funding time
    s.clock.step(FUNDING_INTERVAL_MS / 1000)  # and so does the daemon's
    expected = -Decimal("0.1") * server.sim.funding.mark_at(SYMBOL, k) * Decimal("0.001")
    for _ in range(3):
        await s.cycle()
        assert s.engine.status.funding_pnl == expected
    assert len(await store.list_funding(s.engine.connection_id)) == 1
