"""Quiet bands on a LIVE connection (the real hub and private stream, ccxt.pro on the
simulator, a moving market): the private stream's fill wakes the engine whatever its
bands, and the broker bounds how long it may sleep (the echo deadline, the periodic
reconciliation)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import pytest_asyncio

from ctsd.clock import SystemClock
from ctsd.engine.brokers.live import LiveBroker
from ctsd.engine.orders import OrderRequest, OrderStatus, client_order_id
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.order_stream import OrderStream
from ctsd.marketdata.hub import MarketDataHub
from ctsd.ratelimit import Lane
from ctsd.sim.server import SimulatorServer
from ctsd.strategies.base import DataNeeds, PriceBand, PriceField
from ctsd.strategies.model import OrderType, Side
from ctsd.wiring.engine_order_stream import OrderFeed
from ctsd.wiring.engine_orders import ExchangeOrders
from ctsd.wiring.engine_streams import StreamingMarketData
from tests.marketdata.conftest import BINANCE, WAIT_S, polled, streaming_data, until, violations
from tests.support.exchange_clients import CREDENTIALS

D = Decimal
SYMBOL = "BTC/USDT"


@pytest_asyncio.fixture
async def streaming(hub: MarketDataHub, factory: ExchangeClientFactory,
                    ) -> AsyncIterator[StreamingMarketData]:
    async with streaming_data(hub, factory) as built:
        yield built


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
        server.sim.set_price(SYMBOL, D(28_900))  # fills the buy on the venue
        assert await streaming.next_event(WAIT_S) is not None  # the fill: no ticker can
        await polled(lambda: streaming.quiet_events >= 1)  # the move itself woke nothing
        await polled(lambda: any(e.order.status is OrderStatus.FILLED
                                 for e in broker.refresh_now() or ()))
    finally:
        await feed.close()
        await client.close()
    assert violations(server) == {}
