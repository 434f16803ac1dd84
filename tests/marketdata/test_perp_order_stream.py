"""The private order stream of a perpetuals connection (Binance USDⓈ-M listenKey user data,
Bybit `order`, OKX `orders`; ccxt.pro on the simulator) says what REST says: the same
order, in base units (OKX counts swap amounts in contracts), open and then filled."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from functools import partial

import pytest

from ctsd.clock import SystemClock
from ctsd.engine.perpetual import VenuePosition
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.perpetuals import PerpetualClient
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import Lane
from ctsd.sim.server import SimulatorServer
from ctsd.strategies.model import PositionSide
from ctsd.wiring.engine_order_stream import OrderFeed
from ctsd.wiring.engine_orders import ExchangeOrders
from ctsd.wiring.engine_perpetual import venue_position
from tests.marketdata.conftest import WAIT_S, violations
from tests.marketdata.order_streams import feed_of, stream_agrees_with_rest
from tests.support.exchange_clients import CREDENTIALS
from tests.support.perp_rig import MODES

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


async def next_positions(feed: OrderFeed, amount: Decimal) -> list[VenuePosition]:
    """Position updates of `PERP` until one of `amount` base units arrives; all so far."""
    found: list[VenuePosition] = []
    async with asyncio.timeout(WAIT_S):
        while not any(p.amount == amount for p in found):
            await asyncio.sleep(0.02)
            found += [p for p in feed.drain_positions()[0] if p.symbol == PERP]
    return found


@pytest.mark.asyncio
@pytest.mark.parametrize("venue", ["binance", "bybit", "okx"])
@pytest.mark.parametrize("modes", list(MODES), ids=list(MODES))
async def test_the_position_stream_says_what_rest_says_open_and_then_flat(
    server: SimulatorServer, factory: ExchangeClientFactory, venue: str, modes: str,
) -> None:
    """Binance `ACCOUNT_UPDATE`, Bybit `position`, OKX `positions`, as ccxt.pro parses them:
    the same leg, size, entry price and margin mode as the REST positions read at that
    moment, and a close as a flat leg of the same side."""
    hedge, margin = MODES[modes].hedge, MODES[modes].margin_mode
    target = ConnectionTarget(venue, ApiType.PERPETUAL_FUTURES)
    client = await factory.client(target, CREDENTIALS, lane=Lane.ORDER)
    perpetuals = PerpetualClient(client)
    await perpetuals.set_position_mode(hedge, PERP)
    await perpetuals.set_margin_mode(margin.value, PERP)
    reopen = partial(factory.order_stream, target, CREDENTIALS)
    engine_view = partial(venue_position, default_mode=margin)
    feed = OrderFeed(await reopen(), reopen, lambda order: None, lambda: None, SystemClock(),
                     settle_s=0.3, convert_position=engine_view)
    feed.start()
    per_order = margin.value if venue == "okx" else None
    leg = "long" if hedge else None
    try:
        async with asyncio.timeout(WAIT_S):
            await feed.until_live()
        feed.drain_positions()  # OKX: its snapshot on subscribing
        await client.create_order(PERP, "buy", "market", AMOUNT, leg=leg, margin_mode=per_order)
        [streamed] = [p for p in await next_positions(feed, AMOUNT) if p.amount]
        [rest] = map(engine_view, await perpetuals.positions([PERP]))
        side = PositionSide.LONG if hedge else PositionSide.BOTH
        assert (streamed.side, streamed.amount) == (rest.side, rest.amount) == (side, AMOUNT)
        assert (streamed.entry_price, streamed.margin_mode) == (rest.entry_price,
                                                                rest.margin_mode)
        await client.create_order(PERP, "sell", "market", AMOUNT, leg=leg, margin_mode=per_order,
                                  reduce_only=True)
        flat = [p for p in await next_positions(feed, Decimal(0)) if not p.amount]
        assert side in {p.side for p in flat}  # hedge: Binance and Bybit send both legs
        assert hedge or {p.side for p in flat} == {PositionSide.BOTH}
        assert await perpetuals.positions([PERP]) == ()
    finally:
        await feed.close()
        await client.close()
    assert violations(server) == {}
