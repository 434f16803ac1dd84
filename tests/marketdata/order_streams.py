"""What the private order stream tests share: one order through a stream and REST."""

from __future__ import annotations

import asyncio
import base64
from contextlib import AsyncExitStack
from decimal import ROUND_DOWN, Decimal
from functools import partial

from ctsd.clock import SystemClock
from ctsd.engine.order_ports import ExchangeOrder
from ctsd.engine.orders import OrderStatus, client_order_id
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.margin import MarginClient
from ctsd.exchanges.model import ApiCredentials, ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import Lane
from ctsd.sim.server import SimulatorServer
from ctsd.strategies.model import OrderType, Side
from ctsd.wiring.engine_margin import MarginLeverage
from ctsd.wiring.engine_order_stream import OrderFeed
from ctsd.wiring.engine_orders import ExchangeOrders
from tests.marketdata.conftest import WAIT_S
from tests.support.market_rig import account_spec


def funded(server: SimulatorServer, name: str) -> ApiCredentials:
    """An account of the test's own with spot and (Binance) cross-margin USDT."""
    secret = base64.b64encode(f"{name}-secret".encode().ljust(64, b".")).decode()
    credentials = ApiCredentials(f"{name}-key", secret, "sim-pass")
    server.sim.provision(account_spec(credentials.api_key, secret=secret,
                                      passphrase=credentials.passphrase))
    return credentials


async def stream_orders(stack: AsyncExitStack, factory: ExchangeClientFactory,
                        target: ConnectionTarget, credentials: ApiCredentials,
                        symbol: str, margin_mode: str | None = None) -> ExchangeOrders:
    """The engine's order calls on an ORDER-lane client of `target` (closed with `stack`);
    a margin connection's orders borrow as an engine's do."""
    client = await factory.client(target, credentials, lane=Lane.ORDER)
    stack.push_async_callback(client.close)
    params = None
    if target.api_type is ApiType.MARGIN:
        margin = MarginClient(client)
        await margin.prepare((symbol,), {})  # Bybit: the account's spot-margin switch
        params = MarginLeverage(margin).order_params
    return ExchangeOrders(client, margin_mode=margin_mode, order_params=params)


async def feed_of(factory: ExchangeClientFactory, target: ConnectionTarget,
                  credentials: ApiCredentials, orders: ExchangeOrders, *,
                  retry_s: float = 1.0, max_retry_s: float = 30.0,
                  connect_s: float = 60.0) -> OrderFeed:
    """A started private order stream of `target`'s account, live (logged in)."""
    reopen = partial(factory.order_stream, target, credentials)
    feed = OrderFeed(await reopen(), reopen, orders.streamed, lambda: None, SystemClock(),
                     settle_s=0.3, retry_s=retry_s, max_retry_s=max_retry_s,
                     connect_s=connect_s)
    feed.start()
    try:
        async with asyncio.timeout(WAIT_S):
            await feed.until_live()
    except BaseException:
        await feed.close()
        raise
    return feed


async def next_update(feed: OrderFeed, cid: str, status: OrderStatus) -> ExchangeOrder:
    found: list[ExchangeOrder] = []
    async with asyncio.timeout(WAIT_S):
        while not any(o.status is status for o in found):
            await asyncio.sleep(0.02)
            found += [o for o in feed.drain()[0] if o.client_order_id == cid]
    return next(o for o in found if o.status is status)


async def stream_agrees_with_rest(server: SimulatorServer, orders: ExchangeOrders,
                                  feed: OrderFeed, symbol: str, amount: Decimal,
                                  engine: str) -> ExchangeOrder:
    """A buy 1 % under the market: OPEN on the stream as placed, then (the price moved
    through it) FILLED on the stream as REST reports it; the stream's FILLED update."""
    price = server.sim.market.price(symbol)
    limit = (price * Decimal("0.99")).quantize(Decimal("0.1"), ROUND_DOWN)
    cid = client_order_id(engine, 1, 0)
    placed = await orders.create_order(symbol, OrderType.LIMIT, Side.BUY, amount, limit, cid)
    assert placed.amount == amount
    opened = await next_update(feed, cid, OrderStatus.OPEN)
    assert (opened.amount, opened.filled, opened.price) == (amount, Decimal(0), limit)
    server.sim.set_price(symbol, limit - 10)  # crosses the buy: it fills on the venue
    filled = await next_update(feed, cid, OrderStatus.FILLED)
    rest = await orders.fetch_order(symbol, cid)
    assert rest is not None and rest.status is OrderStatus.FILLED
    assert (filled.amount, filled.filled) == (rest.amount, rest.filled) == (amount, amount)
    assert filled.exchange_order_id == rest.exchange_order_id
    return filled
