"""Quiet bands on the real hub (`StreamingMarketData` over ccxt.pro on the simulator, the
market standing still but for the moves a test makes): a PAPER grid sleeps through ticker
moves between its levels and cycles and fills when the price leaves them; a stream that
goes stale, and its return, still wake it; bands lapse on time, and bands the market
already left wake at once. (LIVE: `test_quiet_wakes_live.py`.)"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal

import pytest
import pytest_asyncio

from ctsd.clock import SystemClock
from ctsd.engine.brokers.paper import PaperBroker
from ctsd.engine.config import EngineConfig, PaperSettings, validate_config
from ctsd.engine.engine import Engine
from ctsd.engine.store_ports import DesiredState, EngineRecord
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.streams import StreamKind
from ctsd.marketdata.feeds import SubKey
from ctsd.marketdata.hub import MarketDataHub
from ctsd.sim.clock import ManualClock
from ctsd.sim.server import SimulatorServer
from ctsd.strategies.base import DataNeeds, PriceBand, PriceField
from ctsd.wiring.engine_streams import StreamingMarketData
from tests.engine.fakes import MemoryStore
from tests.engine.world import REGISTRY
from tests.marketdata.conftest import BINANCE, FAST, WAIT_S, streaming_data, until, violations
from tests.sim.ws.conftest import frozen_clock

D = Decimal
SYMBOL = "BTC/USDT"
GRID = EngineConfig("grid", (SYMBOL,), {"reference_price": "100", "spacing_pct": "1",
                                        "levels": "5", "amount": "0.01"},
                    paper=PaperSettings(balances=(("USDT", D(1000)),), slippage_bps=D(0)))
"""Levels 95 ... 99 and 101 ... 105 (none at the reference), buys below the mid."""


@pytest.fixture
def sim_clock() -> ManualClock:
    """The market stands still: it moves when a test sets the price."""
    return frozen_clock()


@pytest_asyncio.fixture
async def calm(factory: ExchangeClientFactory) -> AsyncIterator[MarketDataHub]:
    """A hub that waits a minute for a ticker before it calls the stream stale: the
    standing market sends none between a test's moves."""
    settings = replace(FAST, ticker_cadence_s=60.0)
    async with MarketDataHub(factory.market_stream, SystemClock(), settings) as built:
        yield built


@pytest_asyncio.fixture
async def streaming(calm: MarketDataHub, factory: ExchangeClientFactory,
                    ) -> AsyncIterator[StreamingMarketData]:
    async with streaming_data(calm, factory) as built:
        yield built


async def moved(hub: MarketDataHub, server: SimulatorServer, streaming: StreamingMarketData,
                price: str) -> None:
    """The price set a second on (the ticker stream's period: the standing market sends
    nothing in between) until the hub has it. Again if it did not come: ccxt.pro
    resolves a watch with the message that woke it, so one that lands before the hub
    watches again stays in ccxt's cache (a moving market's next message brings it)."""
    clock = server.sim.clock
    assert isinstance(clock, ManualClock)
    sub = streaming._leases[SubKey(BINANCE, StreamKind.TICKER, SYMBOL)].subscription
    for _ in range(5):
        clock.advance(1.0)
        server.sim.set_price(SYMBOL, D(price))
        with contextlib.suppress(TimeoutError):
            await until(hub, lambda: sub.value is not None and sub.value.last == D(price), 1.0)
            return
    raise AssertionError(f"the hub never saw {price}")


async def woken(streaming: StreamingMarketData) -> bool:
    """Whether an event is pending now (none comes while the market stands still)."""
    return await streaming.next_event(0.0) is not None


@pytest.mark.asyncio
async def test_a_grid_sleeps_between_its_levels_and_trades_when_the_price_leaves_them(
    calm: MarketDataHub, server: SimulatorServer, streaming: StreamingMarketData,
) -> None:
    hub = calm
    clock = SystemClock()
    store = MemoryStore()
    record = EngineRecord("c1", "e1e1", GRID, DesiredState.RUNNING)
    store.engines["c1"] = record
    engine = Engine(record, validate_config(GRID, REGISTRY), PaperBroker(GRID.paper, clock),
                    streaming, store, clock, lambda _: None, events=streaming)
    server.sim.set_price(SYMBOL, D("100.5"))
    engine.follow_market()
    await until(hub, lambda: streaming.streaming)

    async def cycle() -> None:
        assert await streaming.next_event(WAIT_S) is not None
        assert await engine.run_cycle()

    await cycle()  # the first: buys on every level below 100.5
    assert engine.status.orders_placed == 5
    await moved(hub, server, streaming, "100.7")
    await cycle()  # nothing to do: from now on it sleeps between 99 and 101
    assert engine.status.cycles == 2 and streaming.quiet_events == 0
    for price in ("100.3", "99.9"):
        await moved(hub, server, streaming, price)
        assert not await woken(streaming)
    assert streaming.quiet_events >= 2

    await moved(hub, server, streaming, "98.8")  # through the buy at 99
    await cycle()
    assert engine.status.orders_filled == 1 and engine.status.cycles == 3
    assert engine.status.quiet_events == streaming.quiet_events >= 2
    if engine.status.orders_placed > 5:  # it sold what the fill left: looks once more
        await moved(hub, server, streaming, "98.7")
        await cycle()
    await moved(hub, server, streaming, "98.3")  # between 98 and 99 now
    assert not await woken(streaming)

    streaming.wake()  # what the private stream's update calls
    assert await woken(streaming)
    assert violations(server) == {}


@pytest.mark.asyncio
async def test_a_stream_going_stale_and_coming_back_wakes_through_the_bands(
    hub: MarketDataHub, server: SimulatorServer, factory: ExchangeClientFactory,
) -> None:
    """The standing market sends nothing: the stream goes stale after the hub's cadence
    (3 s here) and the engine wakes (REST now); the stream's return (a new socket's first
    message, the price unchanged) wakes it again."""
    async with streaming_data(hub, factory) as streaming:
        server.sim.set_price(SYMBOL, D("100.5"))
        streaming.follow((SYMBOL,), DataNeeds())
        await until(hub, lambda: streaming.streaming)
        assert await woken(streaming)
        streaming.quiet({SYMBOL: (PriceBand(PriceField.LAST),)}, math.inf)
        assert await streaming.next_event(WAIT_S) is not None  # stale: not a ticker move
        assert not streaming.streaming and "stale" in streaming.problem
        streaming.quiet({SYMBOL: (PriceBand(PriceField.LAST),)}, math.inf)  # refused
        await until(hub, lambda: streaming.streaming)  # on a new socket
        assert await woken(streaming)
    assert violations(server) == {}


@pytest.mark.asyncio
async def test_bands_the_market_already_left_wake_at_once_and_bands_lapse_on_time(
    calm: MarketDataHub, server: SimulatorServer, streaming: StreamingMarketData,
) -> None:
    hub = calm
    server.sim.set_price(SYMBOL, D("100.5"))
    streaming.follow((SYMBOL,), DataNeeds())
    await until(hub, lambda: streaming.streaming)
    assert await woken(streaming)  # the first cycle's
    streaming.quiet({SYMBOL: (PriceBand(PriceField.LAST, D(101)),)}, math.inf)
    assert await woken(streaming)  # it moved on (below 101) while the cycle ran
    whole = {SYMBOL: (PriceBand(PriceField.LAST),)}
    streaming.quiet(whole, math.inf)
    await moved(hub, server, streaming, "100.7")
    assert not await woken(streaming) and streaming.quiet_events >= 1
    clock = SystemClock()
    lapse = clock.monotonic() + 0.2
    streaming.quiet(whole, lapse)
    assert await streaming.next_event(WAIT_S) is not None  # the lapse, 0.2 s on
    assert clock.monotonic() >= lapse - 0.01
    assert streaming.snapshot_now({}, DataNeeds(), 0) is not None
    await moved(hub, server, streaming, "100.9")  # the read dropped the bands
    assert await woken(streaming)
