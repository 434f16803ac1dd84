"""The private order stream of a spot-margin connection (Binance's margin account by a
listenToken on the WebSocket API; Bybit `order`, OKX `orders`, Kraken `executions`, which
are account-wide; ccxt.pro on the simulator) says what REST says: the same margin order,
open and then filled. Binance's spot account stream does not carry it (the margin
account is another account there). Kraken's execution updates name an order by the
venue's id only (ccxt.pro takes `order_userref`, 0, for the client id), spot's as margin's:
they are matched to the engine's client order id by the id the placement answered."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from decimal import Decimal

import pytest

from ctsd.exchanges.ccxt_internals import pending_timers
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import Lane
from ctsd.sim.server import SimulatorServer
from ctsd.wiring.engine_orders import ExchangeOrders
from tests.marketdata.conftest import polled, violations
from tests.marketdata.order_streams import (
    feed_of,
    funded,
    stream_agrees_with_rest,
    stream_orders,
)

pytestmark = pytest.mark.asyncio
SYMBOL = "BTC/USDT"
AMOUNT = Decimal("0.002")


@pytest.mark.parametrize(("venue", "api_type"), [
    *[(v, ApiType.MARGIN) for v in ("binance", "bybit", "okx", "kraken")],
    ("kraken", ApiType.SPOT),  # its stream names an order by the venue's id only, as margin's
], ids=["binance", "bybit", "okx", "kraken", "kraken-spot"])
async def test_a_margin_order_streams_as_rest_reports_it(
    server: SimulatorServer, factory: ExchangeClientFactory, venue: str, api_type: ApiType,
) -> None:
    target = ConnectionTarget(venue, api_type)
    credentials = funded(server, f"{venue}-{api_type.value}-stream")
    async with AsyncExitStack() as stack:
        orders = await stream_orders(stack, factory, target, credentials, SYMBOL)
        feed = await feed_of(factory, target, credentials, orders)
        stack.push_async_callback(feed.close)
        spot = None
        if venue == "binance":  # the spot account's stream: it must not carry margin orders
            spot_target = ConnectionTarget(venue, ApiType.SPOT)
            spot_client = await factory.client(spot_target, credentials, lane=Lane.ORDER)
            stack.push_async_callback(spot_client.close)
            spot = await feed_of(factory, spot_target, credentials,
                                 ExchangeOrders(spot_client))
            stack.push_async_callback(spot.close)
        await stream_agrees_with_rest(server, orders, feed, SYMBOL, AMOUNT, "e4e4")
        if spot is not None:
            assert spot.updates == 0 and spot.live
    assert violations(server) == {}


async def test_a_closed_stream_keeps_no_timer_that_would_log_it_in_again(
    server: SimulatorServer, factory: ExchangeClientFactory,
) -> None:
    """ccxt.pro schedules the renewal of Binance margin's listenToken a day ahead (and its
    USDⓈ-M listenKey keepalive every 20 minutes) and never cancels it: on a closed
    instance it would log in again through the shared HTTP session and open a private
    socket nobody reads. Closing the stream cancels what it scheduled."""
    target = ConnectionTarget("binance", ApiType.MARGIN)
    stream = await factory.order_stream(target, funded(server, "binance-timers"))
    watch = asyncio.ensure_future(stream.orders())
    try:
        await polled(lambda: pending_timers(stream._exchange) >= 1)  # logged in: renewal due
    finally:
        watch.cancel()
        await stream.close()
    assert pending_timers(stream._exchange) == 0
