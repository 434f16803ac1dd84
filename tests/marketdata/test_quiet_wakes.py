"""Quiet bands on the real hub (`StreamingMarketData` over ccxt.pro on the simulator, the
market moved by hand): a PAPER grid sleeps through ticker moves between its levels and
cycles, fills and re-places when the price leaves them; a stream that goes stale, and
its return, still wake it; a band lapses on time; on a LIVE connection the private
stream's fill wakes the engine whatever its band, and the broker bounds how long it may
sleep (the echo deadline, the periodic reconciliation)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import pytest_asyncio

from ctsd.clock import SystemClock
from ctsd.engine.brokers.live import LiveBroker
from ctsd.engine.brokers.paper import PaperBroker
from ctsd.engine.config import EngineConfig, PaperSettings, validate_config
from ctsd.engine.engine import Engine
from ctsd.engine.orders import OrderRequest, OrderStatus, client_order_id
from ctsd.engine.ports import DesiredState, EngineRecord
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.streams import OrderStream, StreamKind
from ctsd.marketdata.feeds import SubKey
from ctsd.marketdata.hub import MarketDataHub
from ctsd.ratelimit import Lane
from ctsd.sim.faults import FaultKind, FaultSpec
from ctsd.sim.server import SimulatorServer
from ctsd.strategies.base import DataNeeds, PriceBand, PriceField
from ctsd.strategies.model import OrderType, Side
from ctsd.wiring.engine_exchange import ExchangeMarketData
from ctsd.wiring.engine_order_stream import OrderFeed
from ctsd.wiring.engine_orders import ExchangeOrders
from ctsd.wiring.engine_streams import StreamingMarketData
from tests.engine.fakes import MemoryStore
from tests.engine.world import REGISTRY
from tests.marketdata.conftest import BINANCE, WAIT_S, polled, until, violations
from tests.support.exchange_clients import CREDENTIALS

D = Decimal
SYMBOL = "BTC/USDT"
GRID = EngineConfig("grid", (SYMBOL,), {"reference_price": "100", "spacing_pct": "1",
                                        "levels": "5", "amount": "0.01"},
                    paper=PaperSettings(balances=(("USDT", D(1000)),), slippage_bps=D(0)))
"""Levels 95 ... 99 and 101 ... 105 (none at the reference), buys below the mid."""


@pytest_asyncio.fixture
async def streaming(hub: MarketDataHub, factory: ExchangeClientFactory,
                    ) -> AsyncIterator[StreamingMarketData]:
    client = await factory.client(BINANCE, lane=Lane.POLL)
    built = StreamingMarketData(hub, BINANCE, ExchangeMarketData(client), SystemClock())
    try:
        yield built
    finally:
        built.close()
        await client.close()


async def moved(hub: MarketDataHub, server: SimulatorServer, streaming: StreamingMarketData,
                price: str) -> None:
    """Set the price and wait until the hub has the ticker there (the simulated path
    moves on from it by cents a second: levels are a whole unit apart)."""
    server.sim.set_price(SYMBOL, D(price))
    lease = streaming._leases[SubKey(BINANCE, StreamKind.TICKER, SYMBOL)]
    sub = lease.subscription
    await until(hub, lambda: sub.value is not None and abs(sub.value.last - D(price)) < D(
        "0.1"))


async def woken(streaming: StreamingMarketData) -> bool:
    """Whether an event is pending now (none comes while the market stands still)."""
    return await streaming.next_event(0.0) is not None


@pytest.mark.asyncio
async def test_a_grid_sleeps_between_its_levels_and_trades_when_the_price_leaves_them(
    hub: MarketDataHub, server: SimulatorServer, streaming: StreamingMarketData,
) -> None:
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
    """A stalled socket (pings go on, data stops) goes stale after the hub's cadence (3 s
    here): the engine wakes, on REST, and the stream's return wakes it again."""
    client = await factory.client(BINANCE, lane=Lane.POLL)
    streaming = StreamingMarketData(hub, BINANCE, ExchangeMarketData(client), SystemClock())
    try:
        server.sim.set_price(SYMBOL, D("100.5"))
        streaming.follow((SYMBOL,), DataNeeds())
        await until(hub, lambda: streaming.streaming)
        assert await woken(streaming)
        streaming.quiet({SYMBOL: (PriceBand(PriceField.LAST),)}, math.inf)
        server.sim.add_fault(FaultSpec(FaultKind.WS_STALL, venue="binance", delay_s=60))
        assert await streaming.next_event(WAIT_S) is not None  # stale: not a ticker move
        assert not streaming.streaming and "stale" in streaming.problem
        streaming.quiet({SYMBOL: (PriceBand(PriceField.LAST),)}, math.inf)  # refused
        await until(hub, lambda: streaming.streaming)  # on a new socket
        assert await woken(streaming)
    finally:
        streaming.close()
        await client.close()
    assert violations(server) == {}


@pytest.mark.asyncio
async def test_bands_the_market_already_left_wake_at_once_and_bands_lapse_on_time(
    hub: MarketDataHub, server: SimulatorServer, streaming: StreamingMarketData,
) -> None:
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


@pytest.mark.asyncio
async def test_a_live_fill_wakes_the_engine_through_its_band_and_the_broker_bounds_it(
    hub: MarketDataHub, server: SimulatorServer, factory: ExchangeClientFactory,
    streaming: StreamingMarketData,
) -> None:
    client = await factory.client(BINANCE, CREDENTIALS, lane=Lane.ORDER)
    orders = ExchangeOrders(client)

    async def reopen() -> OrderStream:
        return await factory.order_stream(BINANCE, CREDENTIALS)

    feed = OrderFeed(await reopen(), reopen, orders.streamed, streaming.wake, SystemClock(),
                     settle_s=0.3, retry_s=0.05, max_retry_s=0.5)
    feed.start()
    broker = LiveBroker(orders, (SYMBOL,), SystemClock(), check_before_place=False,
                        updates=feed, reconcile_s=3600, echo_s=5.0)
    try:
        assert broker.quiet_until() is None  # not reconciled, the stream not up
        await broker.reconcile([], [])
        async with asyncio.timeout(WAIT_S):
            await feed.until_live()
        reconciled = broker.quiet_until()
        assert reconciled is not None and reconciled > SystemClock().monotonic() + 3000

        server.sim.set_price(SYMBOL, D(30_000))
        streaming.follow((SYMBOL,), DataNeeds())
        await until(hub, lambda: streaming.streaming)
        await streaming.next_event(0.0)
        request = OrderRequest(client_order_id("e3e3", 1, 0), SYMBOL, Side.BUY,
                               OrderType.LIMIT, D("0.001"), D(29_000), "test", 1)
        assert (await broker.place(request)).order.status is OrderStatus.OPEN
        echo = broker.quiet_until()  # the order's echo is due within echo_s
        assert echo is not None and echo < SystemClock().monotonic() + 5.1
        assert await streaming.next_event(WAIT_S) is not None  # the echo woke it
        await polled(lambda: broker.refresh_now() is not None and broker.open_orders() != ())
        streaming.quiet({SYMBOL: (PriceBand(PriceField.LAST),)}, math.inf)
        await moved(hub, server, streaming, "28900")  # fills the buy on the venue
        assert await streaming.next_event(WAIT_S) is not None  # the fill, not the ticker
        assert streaming.quiet_events >= 1
        await polled(lambda: any(e.order.status is OrderStatus.FILLED
                                 for e in broker.refresh_now() or ()))
    finally:
        await feed.close()
        await client.close()
