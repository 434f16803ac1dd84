"""Fees of orders filled in several trades, booked by a LIVE broker on each venue's private
order stream (ccxt.pro on the simulator, `/admin/fills` splitting every fill in parts).

Binance streams each trade's fee, not the order's: ccxt.pro sums the ones its cache saw,
so after a lost message or a resubscribe (a fresh cache) its sum is short and booking
`remote.fee - order.fee` books too little, or a negative fee. The ledger must book each
of the venue's trades' fees once, whatever the stream lost: here the booked fills and
fees of every order must equal the venue's own-fill history of it.

The hunting test draws, per part of each order, a stream fault from a seeded random
generator (a drop, a silent stall that loses the part's message, delayed messages, a gap,
a resubscribe with a fresh cache), on every streamed venue. `make soak` runs it for
CTS_SOAK_ROUNDS orders per venue (default here: 2)."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

import pytest
import pytest_asyncio

from ctsd.clock import SystemClock
from ctsd.engine.brokers.live import LiveBroker
from ctsd.engine.orders import Execution, Fill, Order, OrderRequest, OrderStatus, client_order_id
from ctsd.exchanges.client import ExchangeClient
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.order_stream import OrderStream
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import Lane, RateLimiter
from ctsd.ratelimit.config import LimitOverride, RateLimitOverrides
from ctsd.sim.faults import FaultKind, FaultSpec
from ctsd.sim.ratelimit import RateLimitConfig
from ctsd.sim.server import SimulatorServer
from ctsd.sim.ws.config import WsConfig
from ctsd.strategies.model import MarketInfo, MarketSnapshot, OrderType, Side, SymbolMarket, Ticker
from ctsd.wiring.engine_order_stream import OrderFeed
from ctsd.wiring.engine_orders import ExchangeOrders
from tests.marketdata.conftest import WAIT_S, polled, violations
from tests.support.exchange_clients import credentials_for, exchange_sim_config, make_factory

SYMBOL = "BTC/USDT"
PARTS = 3
AMOUNT = Decimal("0.003")
PRIVATE = {"binance": "/ws-api", "bybit": "/v5/private", "okx": "/ws/v5/private",
           "kraken": "/ws-auth"}
"""Each venue's private stream path (below the venue prefix), where faults are aimed."""
ROUNDS = int(os.environ.get("CTS_SOAK_ROUNDS", "2"))
CHAOS = ("ws_drop", "ws_stall", "ws_delay", "ws_gap", "resubscribe")
"""What may hit the private stream before each part (one draw a part): every WebSocket
fault kind the simulator injects (a gap hits books only: the order stream must not care),
and the broker resubscribing on its own (a missing echo), which starts a fresh cache."""
WINDOW_SCALE = 0.1
"""Every venue's REST windows ten times shorter, on the simulator and in the client alike:
Kraken's call counter (15, draining 0.33 a second) would otherwise pace the reconciliations
the faults cause seconds apart. The client still keeps every limit (none breached)."""


@pytest_asyncio.fixture
async def server() -> AsyncIterator[SimulatorServer]:
    config = exchange_sim_config(markets=30, ws=WsConfig(tick_s=0.02),
                                 limits=RateLimitConfig(window_scale=WINDOW_SCALE))
    async with SimulatorServer(config) as srv:
        yield srv


@pytest_asyncio.fixture
async def factory(server: SimulatorServer) -> AsyncIterator[ExchangeClientFactory]:
    counter = LimitOverride(interval_s=15 / 0.33 * WINDOW_SCALE)
    overrides = RateLimitOverrides(limits={("kraken", "api_counter"): counter})
    async with RateLimiter() as limiter, make_factory(server, limiter,
                                                      overrides=overrides) as built:
        yield built


@dataclass
class Live:
    broker: LiveBroker
    feed: OrderFeed
    client: ExchangeClient


@asynccontextmanager
async def live_on(factory: ExchangeClientFactory, venue: str, reconcile_s: float = 5.0,
                  echo_s: float = 1.0) -> AsyncIterator[Live]:
    """A LIVE spot broker on `venue`'s private stream, reconciling every `reconcile_s` at
    the latest (a lost last message is found then), or when an update it expects is
    `echo_s` late, its stream live."""
    target, credentials = ConnectionTarget(venue, ApiType.SPOT), credentials_for(venue)
    client = await factory.client(target, credentials, lane=Lane.ORDER)
    orders = ExchangeOrders(client)

    async def reopen() -> OrderStream:
        return await factory.order_stream(target, credentials)

    feed = OrderFeed(await reopen(), reopen, orders.streamed, lambda: None, SystemClock(),
                     settle_s=0.3, retry_s=0.05, max_retry_s=0.5)
    feed.start()
    broker = LiveBroker(orders, (SYMBOL,), SystemClock(), check_before_place=False,
                        updates=feed, reconcile_s=reconcile_s, echo_s=echo_s)
    try:
        await broker.reconcile([], [])
        async with asyncio.timeout(WAIT_S):
            await feed.until_live()
        yield Live(broker, feed, client)
    finally:
        await feed.close()
        await client.close()


def traded_at(price: Decimal) -> MarketSnapshot:
    ticker = Ticker(SYMBOL, price, price, price, 0)
    info = MarketInfo(SYMBOL, "BTC", "USDT", Decimal("0.00001"), Decimal("0.1"))
    return MarketSnapshot(0, (SymbolMarket(info, ticker),))


async def cycle(live: Live, price: Decimal) -> list[Execution]:
    """What an engine cycle asks of the broker: the stream's word, or REST when in doubt,
    the market it saw, and the periodic reconciliation after it."""
    now = live.broker.refresh_now()
    booked = list(now if now is not None else await live.broker.refresh())
    await live.broker.poll(traded_at(price))
    booked += await live.broker.after_cycle()
    return booked


Chaos = Callable[[int], Awaitable[None]]


async def fill_in_parts(server: SimulatorServer, live: Live, venue: str, cid: str,
                        chaos: Chaos) -> tuple[list[Fill], Order]:
    """Rest a buy under the market and fill it in PARTS trades (the price through it,
    then one tape trade a part), `chaos(k)` before part k, engine cycles between; the
    fills the broker booked once it has the order FILLED, and the broker's order."""
    sim = server.sim
    sim.fill_split = PARTS
    price = sim.market.price(SYMBOL)
    limit = (price * Decimal("0.99")).quantize(Decimal("0.1"), ROUND_DOWN)
    request = OrderRequest(cid, SYMBOL, Side.BUY, OrderType.LIMIT, AMOUNT, limit, "test", 1)
    placed = await live.broker.place(request)
    assert placed.order.status is OrderStatus.OPEN and not placed.fills, "the buy rests"
    booked: list[Execution] = [placed]
    account = sim.accounts.get(credentials_for(venue).api_key)
    assert account is not None
    venue_order = max(account.orders.values(), key=lambda o: o.id)  # the one just placed
    through = (limit * Decimal("0.98")).quantize(Decimal("0.1"))
    for k in range(PARTS):
        await chaos(k)
        if k == 0:
            sim.set_price(SYMBOL, through)
        else:
            sim.advance(5)  # the next public trade: the next part
        # one part a tape trade (more if the wall clock printed trades meanwhile)
        assert venue_order.filled >= AMOUNT * (k + 1) / PARTS
        for _ in range(3):  # a few engine cycles while the part's messages arrive
            booked += await cycle(live, through)
            await asyncio.sleep(0.05)
    async with asyncio.timeout(WAIT_S):
        while not any(e.order.status is OrderStatus.FILLED for e in booked):
            booked += await cycle(live, through)
            await asyncio.sleep(0.05)
    sim.clear_faults()
    sim.set_price(SYMBOL, price)
    final = next(e.order for e in booked if e.order.status is OrderStatus.FILLED)
    fills = [f for e in booked for f in e.fills if f.client_order_id == cid]
    history = await live.client.fetch_order_trades(final.exchange_order_id or "", SYMBOL)
    assert len(history) == len(account.fills_of(venue_order.id)) == PARTS
    assert sum(f.amount for f in fills) == sum(t.amount for t in history) == AMOUNT
    assert all(f.fee >= 0 for f in fills), fills
    charged = sum(t.fee for t in history)
    assert charged == sum(f.fee for f in account.fills_of(venue_order.id)) > 0
    assert sum(f.fee for f in fills) == final.fee == charged, (fills, history)
    assert {f.fee_asset for f in fills} == {t.fee_asset for t in history}
    assert len({f.trade_id for f in fills}) == len(fills)
    return fills, final


@pytest.mark.asyncio
@pytest.mark.parametrize("loss", ["resubscribe", "lost_message", "lost_remainder"])
async def test_binance_fees_of_a_partly_streamed_order_are_each_trades_fee_once(
    server: SimulatorServer, factory: ExchangeClientFactory, loss: str,
) -> None:
    """After the first part: the stream resubscribes (ccxt.pro's fresh cache then sums only
    the trades it saw since), or loses the second part's message in a silent stall that
    is over before the third, or loses the rest of the order in a stall that outlasts it
    (nothing more comes: the market is through the order's price, so the broker expects
    the rest within its echo time and reconciles when it does not come). The ledger
    still books exactly what the venue's three trades charged. No periodic
    reconciliation meanwhile: only the stream, or its silence, says what happened."""
    async with live_on(factory, "binance", reconcile_s=3600) as live:
        async def chaos(k: int) -> None:
            if k == 1 and loss == "resubscribe":
                live.feed.suspect()
                await polled(lambda: live.feed.live and live.feed.gaps > 0)
            if k == 1 and loss in ("lost_message", "lost_remainder"):
                await stall(server, live, "binance", 0.3 if loss == "lost_message" else 5.0)
            if k == 2 and loss == "lost_message":
                await polled(lambda: not stalled(server, "binance"))

        await fill_in_parts(server, live, "binance", client_order_id("fee1", 1, 0), chaos)
    assert violations(server) == {}


async def stall(server: SimulatorServer, live: Live, venue: str, seconds: float) -> None:
    """The private stream stalls silently (pings go on) for `seconds` from now: what it
    would have sent meanwhile is lost."""
    server.sim.add_fault(FaultSpec(FaultKind.WS_STALL, venue=venue,
                                   path_prefix=PRIVATE[venue], delay_s=seconds))
    await polled(lambda: stalled(server, venue))


def stalled(server: SimulatorServer, venue: str) -> bool:
    return any(c["stalled"] for c in server.streams.snapshot()["connections"]
               if c["venue"] == venue and c["path"].startswith(PRIVATE[venue]))


@pytest.mark.asyncio
@pytest.mark.parametrize("venue", ["binance", "bybit", "okx", "kraken"])
async def test_random_stream_faults_during_multi_trade_fills_book_the_venues_fees(
    server: SimulatorServer, factory: ExchangeClientFactory, venue: str,
) -> None:
    """No periodic reconciliation: whatever a fault loses, the broker must notice itself
    (a gap, a reconnect, an update it cannot account for, an expected update missing)."""
    rng = random.Random(f"fees-{venue}")
    async with live_on(factory, venue, reconcile_s=3600) as live:
        async def chaos(k: int) -> None:
            kind = rng.choice(CHAOS)
            if kind == "resubscribe":
                live.feed.suspect()
            elif kind == "ws_stall":  # a short one, or one that swallows the rest
                await stall(server, live, venue, rng.choice((0.3, 5.0)))
            elif kind != "none":
                server.sim.add_fault(FaultSpec(FaultKind(kind), venue=venue,
                                               path_prefix=PRIVATE[venue], delay_s=0.3))

        for n in range(ROUNDS):
            await fill_in_parts(server, live, venue, client_order_id("fee2", n + 1, 0), chaos)
    assert violations(server) == {}


async def reconciled(live: Live, price: Decimal, booked: list[Execution]) -> int:
    """Cycles (what they book added to `booked`) until the stream is live with no gap
    left to reconcile; the broker's count of REST reconciliations then."""
    async with asyncio.timeout(WAIT_S):
        while live.feed.gap or not live.feed.live:
            booked += await cycle(live, price)
            await asyncio.sleep(0.02)
    return live.broker.reconciliations


@pytest.mark.asyncio
@pytest.mark.parametrize("venue", ["binance", "bybit", "okx", "kraken"])
@pytest.mark.parametrize("fresh", [False, True], ids=["one_cache", "fresh_cache"])
async def test_each_part_of_an_order_is_booked_from_the_stream_alone(
    server: SimulatorServer, factory: ExchangeClientFactory, venue: str, fresh: bool,
) -> None:
    """No fault: the tape fills a resting buy in PARTS trades, each part's update says
    what the order has filled so far, and the broker books it as it comes, from the
    stream, with no REST reconciliation after the start. With `fresh`, the stream
    resubscribes after the first part (reconciled once): ccxt.pro's new cache then knows
    the order from the venue's snapshot and the later parts alone. ccxt.pro's Kraken
    parses no filled amount until the order closes: the venue's `cum_qty` says it."""
    sim = server.sim
    sim.fill_split = PARTS
    async with live_on(factory, venue, reconcile_s=3600, echo_s=3600) as live:
        price = sim.market.price(SYMBOL)
        booked: list[Execution] = []
        started = await reconciled(live, price, booked)
        limit = (price * Decimal("0.99")).quantize(Decimal("0.1"), ROUND_DOWN)
        cid = client_order_id("fee3", 1, 0)
        booked.append(await live.broker.place(
            OrderRequest(cid, SYMBOL, Side.BUY, OrderType.LIMIT, AMOUNT, limit, "test", 1)))
        through = (limit * Decimal("0.98")).quantize(Decimal("0.1"))
        account = sim.accounts.get(credentials_for(venue).api_key)
        assert account is not None
        venue_order = max(account.orders.values(), key=lambda o: o.id)
        sim.set_price(SYMBOL, through)  # a part a tape trade from now on
        async with asyncio.timeout(WAIT_S):
            while booked[-1].order.status is not OrderStatus.FILLED:
                booked += await cycle(live, through)
                if booked[-1].order.filled == venue_order.filled < AMOUNT:
                    sim.advance(5)  # booked so far: the next tape trade, the next part
                if fresh and live.feed.gaps == 0 and booked[-1].order.filled:
                    live.feed.suspect()
                    await polled(lambda: live.feed.gaps > 0)
                    started = await reconciled(live, through, booked)
                await asyncio.sleep(0.02)
        partly = [e.order.filled for e in booked if e.order.status is OrderStatus.OPEN
                  and e.order.filled]
        assert partly, f"no part booked before the order closed: {booked}"
        assert live.broker.reconciliations == started, "a part needed REST"
        assert sum(f.amount for e in booked for f in e.fills) == AMOUNT
        sim.set_price(SYMBOL, price)
