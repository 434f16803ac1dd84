"""A LIVE broker on Binance's private order stream (ccxt.pro on the simulator; the spot
account's and the cross-margin account's, by its listenToken) through every
WebSocket fault kind: each fill is booked exactly once, over the stream or over REST
reconciliation when the stream had a gap or stalled silently, and the simulator counts no
limit breached. The price is moved by hand, so a resting order fills when the test says."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
import pytest_asyncio

from ctsd.clock import SystemClock
from ctsd.engine.brokers.live import LiveBroker
from ctsd.engine.orders import Execution, Fill, OrderRequest, OrderStatus, client_order_id
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.margin import MarginClient
from ctsd.exchanges.model import ApiCredentials, ConnectionTarget
from ctsd.exchanges.order_stream import OrderStream
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import Lane
from ctsd.sim.faults import FaultKind, FaultSpec
from ctsd.sim.server import SimulatorServer
from ctsd.strategies.model import (
    MarketInfo,
    MarketSnapshot,
    OrderType,
    Side,
    SymbolMarket,
    Ticker,
)
from ctsd.wiring.engine_margin import MarginLeverage
from ctsd.wiring.engine_order_stream import OrderFeed
from ctsd.wiring.engine_orders import ExchangeOrders
from tests.marketdata.conftest import WAIT_S, polled, violations, ws_connections
from tests.sim.conftest import SECRET
from tests.support.exchange_clients import CREDENTIALS
from tests.support.market_rig import account_spec
from tests.support.virtual_clock import VirtualClock

SYMBOL = "BTC/USDT"
AMOUNT = Decimal("0.001")
PRIVATE = "/ws-api"
"""Where Binance spot's user data streams (the WebSocket API ccxt.pro logs in to)."""
CUTS = (FaultKind.WS_DROP, FaultKind.WS_DISCONNECT_EVERY)
"""Faults that close the socket: the feed must see each as a gap."""


@dataclass
class Live:
    broker: LiveBroker
    feed: OrderFeed
    woken: list[int]


@pytest_asyncio.fixture(params=[ApiType.SPOT, ApiType.MARGIN], ids=["spot", "margin"])
async def live(request: pytest.FixtureRequest, server: SimulatorServer,
               factory: ExchangeClientFactory) -> AsyncIterator[Live]:
    """The spot account's stream (the WebSocket API's signature subscription), or the
    cross-margin account's (its listenToken subscription) with margin orders that borrow."""
    target = ConnectionTarget("binance", request.param)
    credentials = CREDENTIALS
    if target.api_type is ApiType.MARGIN:
        credentials = ApiCredentials("binance-margin-live-key", SECRET)
        server.sim.provision(account_spec(credentials.api_key))
    client = await factory.client(target, credentials, lane=Lane.ORDER)
    params = MarginLeverage(MarginClient(client)).order_params if (
        target.api_type is ApiType.MARGIN) else None
    orders = ExchangeOrders(client, order_params=params)

    async def reopen() -> OrderStream:
        return await factory.order_stream(target, credentials)

    woken: list[int] = []
    feed = OrderFeed(await reopen(), reopen, orders.streamed, lambda: woken.append(1),
                     SystemClock(), settle_s=0.3, retry_s=0.05, max_retry_s=0.5, connect_s=2.0)
    feed.start()
    # An order's own update is due within `echo_s`: long enough for a busy machine to
    # deliver it (the faultless case must not reconcile), short for the silent stall's.
    broker = LiveBroker(orders, (SYMBOL,), SystemClock(), check_before_place=False,
                        updates=feed, reconcile_s=3600, echo_s=5.0)
    try:
        await broker.reconcile([], [])
        async with asyncio.timeout(WAIT_S):
            await feed.until_live()
        yield Live(broker, feed, woken)
    finally:
        await feed.close()
        await client.close()


async def fill_one(server: SimulatorServer, live: Live, cycle: int, fault: FaultSpec | None,
                   ) -> list[Fill]:
    """Rest a buy under the market, inject `fault` (until applied), move the price through
    the buy, and refresh and poll as engine cycles do until the broker has it FILLED (after
    a cut, the cycle the cut woke reconciles); the fills it booked.

    Each fault meets a live stream, as the case means: after a cut the feed is still
    reopening and settling, and a stall landing on the new socket before it is live is
    never doubted (only a live stream's missing echo is), so the cases after it would all
    run on REST within the settle time and the stream would carry nothing to the end."""
    async with asyncio.timeout(WAIT_S):
        await live.feed.until_live()
    market = server.sim.market
    price = market.price(SYMBOL)
    limit = (price * Decimal("0.99")).quantize(Decimal("0.1"), ROUND_DOWN)
    request = OrderRequest(client_order_id("e1e1", cycle, 0), SYMBOL, Side.BUY, OrderType.LIMIT,
                           AMOUNT, limit, "test", cycle)
    placed = await live.broker.place(request)
    assert placed.order.status is OrderStatus.OPEN, placed
    gaps = live.feed.gaps
    if fault is not None:
        server.sim.add_fault(fault)
        await applied(server, live, fault)
    server.sim.set_price(SYMBOL, limit - 10)  # crosses the buy: it fills on the venue
    booked: list[Execution] = []
    async with asyncio.timeout(WAIT_S):
        while not any(e.order.status is OrderStatus.FILLED for e in booked):
            now = live.broker.refresh_now()
            booked += now if now is not None else await live.broker.refresh()
            booked += await live.broker.poll(traded_at(limit - 10))  # the cycle's market
            await asyncio.sleep(0.05)  # an engine's next event
        while fault is not None and fault.kind in CUTS and live.feed.gaps == gaps:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # a loaded machine may book the fill before the cut shows
        if fault is not None and fault.kind in CUTS:  # the cycle the cut woke: it reconciles
            now = live.broker.refresh_now()
            booked += now if now is not None else await live.broker.refresh()
    server.sim.clear_faults()
    server.sim.set_price(SYMBOL, price)
    return [f for e in booked for f in e.fills if f.client_order_id == request.client_order_id]


@pytest.mark.asyncio
async def test_every_fill_is_booked_once_through_every_websocket_fault(
    server: SimulatorServer, live: Live,
) -> None:
    faults = [None] + [FaultSpec(kind, venue="binance", path_prefix=PRIVATE, delay_s=delay)
                       for kind, delay in ((FaultKind.WS_DROP, 1.0), (FaultKind.WS_STALL, 30.0),
                                           (FaultKind.WS_DELAY, 0.5), (FaultKind.WS_GAP, 1.0),
                                           (FaultKind.WS_DISCONNECT_EVERY, 0.5))]
    reconciled, delivered, trace = [], [], []
    for cycle, fault in enumerate(faults, start=1):
        before = live.broker.reconciliations
        fills = await fill_one(server, live, cycle, fault)
        assert sum(f.amount for f in fills) == AMOUNT, (fault, fills)
        assert len({f.trade_id for f in fills}) == len(fills)
        reconciled.append(live.broker.reconciliations > before)
        delivered.append(live.feed.updates)
        name = fault.kind.value if fault else "no fault"
        trace.append(f"after {name}: {stream_state(server, live)}")
    # A text, which pytest shows whole: a tuple's repr it cuts to a few hundred characters,
    # which hid where the feed waited when this failed in a full run.
    seen = "\n".join([f"delivered {delivered}, reconciled {reconciled}", *trace])
    assert reconciled[0] is False, seen  # no fault: the fill came by stream, no REST asked
    assert reconciled[1] and reconciled[2], seen  # a drop is a gap; a silent stall no echo
    assert live.feed.gaps >= 2 and live.woken, seen
    # the stream delivers again after the faults (a reopened socket that ccxt.pro did not
    # log in again would carry nothing, every fill then read over REST)
    assert delivered[-1] > delivered[1], seen
    assert violations(server) == {}


async def applied(server: SimulatorServer, live: Live, fault: FaultSpec) -> None:
    """Until the hub has applied `fault` to the private socket (on its next tick): a fill
    made before that would come by stream ahead of a stall, unlike what the test means."""
    if fault.kind is FaultKind.WS_DISCONNECT_EVERY:  # never consumed: it applies at once
        return
    try:
        await polled(lambda: fault not in server.sim.faults.pending())
    except TimeoutError:
        raise AssertionError(f"{fault.kind.value} found no private socket: "
                             f"{stream_state(server, live)}") from None


def stream_state(server: SimulatorServer, live: Live) -> str:
    """The feed as the broker sees it and the private sockets as the simulator does:
    what a stream that stopped delivering is made of (no socket, no subscription on it,
    a stall, a task that ended)."""
    feed, task = live.feed, live.feed._task
    where = "ended" if task is None or task.done() else awaiting(task.get_coro())
    sockets = [{k: c[k] for k in ("id", "sent", "stalled", "channels", "faults_taken")}
               for c in ws_connections(server) if c["path"].startswith(PRIVATE)]
    return (f"updates {feed.updates}, gaps {feed.gaps}, live {feed.live}, problem "
            f"{feed.problem!r}, feed task at {where}, client connected "
            f"{feed._stream.connected()}, waiting to dial {feed._stream.pacing()}, "
            f"sockets {sockets}, listening "
            f"{server.sim.events.listening_keys()}, at {asyncio.get_running_loop().time():.3f}")


def awaiting(coro: Any) -> str:
    """Where a suspended coroutine waits, down the chain of what it awaits."""
    found = []
    while getattr(coro, "cr_frame", None) is not None:
        frame = coro.cr_frame
        futures = {k: v for k, v in frame.f_locals.items() if isinstance(v, asyncio.Future)}
        found.append(f"{frame.f_code.co_name}:{frame.f_lineno} {futures}"[:300])
        coro = coro.cr_await
    return " > ".join(found) + (f" > {coro!r}"[:200] if coro is not None else "")


def rest_requests(server: SimulatorServer) -> int:
    """REST requests the simulator's Binance served."""
    return int(server.sim.stats.requests["binance"])


def traded_at(price: Decimal) -> MarketSnapshot:
    ticker = Ticker(SYMBOL, price, price, price, 0)
    info = MarketInfo(SYMBOL, "BTC", "USDT", Decimal("0.001"), Decimal("0.001"))
    return MarketSnapshot(0, (SymbolMarket(info, ticker),))


@pytest.mark.asyncio
async def test_a_fill_lost_in_a_silent_stall_is_reconciled_once_the_market_trades_through(
    server: SimulatorServer, live: Live,
) -> None:
    """The order's echo came, then the private stream stalls (pings go on) and the fill's
    update is lost: the market trading through the order's price is what says an update
    is due; its absence is a gap, reconciled long before the slow interval (an hour here)."""
    price = server.sim.market.price(SYMBOL)
    limit = (price * Decimal("0.99")).quantize(Decimal("0.1"), ROUND_DOWN)
    request = OrderRequest(client_order_id("e2e2", 1, 0), SYMBOL, Side.BUY, OrderType.LIMIT,
                           AMOUNT, limit, "test", 1)
    woken = len(live.woken)
    assert (await live.broker.place(request)).order.status is OrderStatus.OPEN
    await polled(lambda: len(live.woken) > woken)  # the order's own update came by stream
    assert live.broker.refresh_now() is not None  # the stream is trusted: no REST
    server.sim.add_fault(FaultSpec(FaultKind.WS_STALL, venue="binance", path_prefix=PRIVATE,
                                   delay_s=60.0))
    await polled(lambda: any(c["stalled"] for c in ws_connections(server)  # its next tick
                             if c["path"].startswith(PRIVATE)))
    server.sim.set_price(SYMBOL, limit - 10)
    before = live.broker.reconciliations
    booked: list[Execution] = []
    async with asyncio.timeout(WAIT_S):
        while not any(e.order.status is OrderStatus.FILLED for e in booked):
            now = live.broker.refresh_now()
            booked += now if now is not None else await live.broker.refresh()
            await live.broker.poll(traded_at(limit - 10))  # what the engine's cycle reads
            await asyncio.sleep(0.05)
    server.sim.clear_faults()
    server.sim.set_price(SYMBOL, price)
    fills = [f for e in booked for f in e.fills]
    assert sum(f.amount for f in fills) == AMOUNT and live.broker.reconciliations > before
    assert violations(server) == {}


@pytest.mark.asyncio
async def test_orders_leave_on_the_streams_word_and_the_periodic_reconciliation_follows(
    server: SimulatorServer, live: Live,
) -> None:
    """The stream stalls silently after an order's echo and its fill is lost, with no
    trade-through the engine saw (nothing to doubt the stream). When the periodic
    reconciliation falls due, a cycle still decides and places from the stream's state
    without a REST read first; `after_cycle`, once the order left, reconciles and books the
    lost fill once. The broker runs on a virtual clock (time for the interval only)."""
    clock = VirtualClock()
    broker = LiveBroker(live.broker._client, (SYMBOL,), clock, check_before_place=False,
                        updates=live.feed, reconcile_s=60, echo_s=3600)
    await broker.reconcile([], [])
    price = server.sim.market.price(SYMBOL)
    limit = (price * Decimal("0.99")).quantize(Decimal("0.1"), ROUND_DOWN)
    first = OrderRequest(client_order_id("e3e3", 1, 0), SYMBOL, Side.BUY, OrderType.LIMIT,
                         AMOUNT, limit, "test", 1)
    woken = len(live.woken)
    assert (await broker.place(first)).order.status is OrderStatus.OPEN
    await polled(lambda: len(live.woken) > woken)  # the order's own update came by stream
    assert broker.refresh_now() == ()
    server.sim.add_fault(FaultSpec(FaultKind.WS_STALL, venue="binance", path_prefix=PRIVATE,
                                   delay_s=60.0))
    await polled(lambda: any(c["stalled"] for c in ws_connections(server)
                             if c["path"].startswith(PRIVATE)))
    server.sim.set_price(SYMBOL, limit - 10)  # fills on the venue; the update is lost
    await polled(lambda: server.sim.market.price(SYMBOL) == limit - 10)
    await clock.advance(61)  # the periodic reconciliation is due
    requests_before = rest_requests(server)
    assert broker.refresh_now() == ()  # still the stream's word: no REST before deciding
    second = OrderRequest(client_order_id("e3e3", 2, 0), SYMBOL, Side.SELL, OrderType.LIMIT,
                          AMOUNT, price * 2, "test", 2)
    assert (await broker.place(second)).order.status is OrderStatus.OPEN
    assert rest_requests(server) == requests_before + 1  # the order was the only request
    before = broker.reconciliations
    booked = await broker.after_cycle()
    assert broker.reconciliations == before + 1
    fills = [f for e in booked for f in e.fills]
    assert [(f.client_order_id, f.amount) for f in fills] == [(first.client_order_id, AMOUNT)]
    assert await broker.after_cycle() == ()  # reconciled: nothing due until the next interval
    server.sim.clear_faults()
    server.sim.set_price(SYMBOL, price)
    await broker.cancel(broker.open_orders()[0])
    assert violations(server) == {}
