"""The private order stream of a perpetuals connection (Binance USDⓈ-M listenKey user data,
Bybit `order`, OKX `orders`; ccxt.pro on the simulator) says what REST says: the same
order, in base units (OKX counts swap amounts in contracts), open and then filled."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import Lane
from ctsd.sim.server import SimulatorServer
from ctsd.wiring.engine_orders import ExchangeOrders
from tests.marketdata.conftest import violations
from tests.marketdata.order_streams import feed_of, stream_agrees_with_rest
from tests.support.exchange_clients import CREDENTIALS

PERP = "BTC/USDT:USDT"
AMOUNT = Decimal("0.002")


@pytest.mark.asyncio
@pytest.mark.parametrize("venue", ["binance", "bybit", "okx"])
async def test_a_perpetuals_order_streams_as_rest_reports_it_in_base_units(
    server: SimulatorServer, factory: ExchangeClientFactory, venue: str,
) -> None:
    target = ConnectionTarget(venue, ApiType.PERPETUAL_FUTURES)
    client = await factory.client(target, CREDENTIALS, lane=Lane.ORDER)
    orders = ExchangeOrders(client, margin_mode="cross")
    feed = await feed_of(factory, target, CREDENTIALS, orders)
    try:
        await stream_agrees_with_rest(server, orders, feed, PERP, AMOUNT, "e3e3")
    finally:
        await feed.close()
        await client.close()
    assert violations(server) == {}
