"""LIVE perpetuals engines on the simulator as `ExchangeEngineBackend` opens them, on a
WebSocket connection (the hub's market data, the private order and position stream) or on
REST, driven one cycle at a time.

Real parts throughout: the simulator over HTTP and WebSocket, the market-data hub, the
order feed, the daemon's exchange layer and shared rate limiter, the engine with its
brokers (`assemble_engine`) and the store. The strategy is scripted (it places what the
caller queues); the engine's clock is the wall clock, which a test may step past a wait
(`SteppedClock`) instead of sleeping through it. Used by
`tests/marketdata/test_perp_positions_stream.py` and `bench/perp_stream_bench.py`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import partial

from ctsd.clock import SystemClock
from ctsd.engine.assembly import assemble_engine
from ctsd.engine.backend import EngineResources
from ctsd.engine.brokers.live_perp import LivePerpBroker
from ctsd.engine.config import validate_config
from ctsd.engine.engine import Engine
from ctsd.engine.perpetual import AccountModes
from ctsd.engine.store_ports import DesiredState, EngineRecord, EngineStore
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.marketdata.hub import MarketDataHub
from ctsd.ratelimit import Lane
from ctsd.sim.server import SimulatorServer
from ctsd.strategies.model import OrderIntent
from ctsd.strategies.registry import StrategyRegistry
from ctsd.wiring.engine_exchange import engine_resources
from ctsd.wiring.engine_order_stream import OrderFeed
from ctsd.wiring.engine_perpetual import streamed_position
from ctsd.wiring.engine_streams import StreamingMarketData
from tests.support.exchange_clients import CREDENTIALS
from tests.support.perp_rig import MODES, SYMBOL, PerpRig, ScriptedFactory

WAIT_S = 15.0


class SteppedClock(SystemClock):
    """The wall clock, moved on by `step` (past a wait a test must not sleep through)."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def step(self, seconds: float) -> None:
        self.offset_s += seconds

    def now_ms(self) -> int:
        return super().now_ms() + int(self.offset_s * 1000)

    def monotonic(self) -> float:
        return super().monotonic() + self.offset_s


@dataclass
class Driven:
    """One LIVE perpetuals engine, cycle by cycle; on a WebSocket connection its feed and
    market data too (None on REST)."""

    engine: Engine
    broker: LivePerpBroker
    clock: SteppedClock
    strategy: ScriptedFactory
    venue: str
    feed: OrderFeed | None = None
    market: StreamingMarketData | None = None

    @property
    def order_feed(self) -> OrderFeed:
        assert self.feed is not None, "an engine on REST has no private stream"
        return self.feed

    @property
    def streams(self) -> StreamingMarketData:
        assert self.market is not None, "an engine on REST has no market streams"
        return self.market

    async def cycle(self, *intents: OrderIntent) -> None:
        self.strategy.queue.append(tuple(intents))
        assert await self.engine.run_cycle()

    def net(self) -> Decimal:
        return sum((p.amount for p in self.broker.positions()), Decimal(0))

    async def holding(self, amount: str) -> None:
        """Cycles until the broker holds `amount` (on streams: the stream has said so)."""
        async with asyncio.timeout(WAIT_S):
            while True:
                await self.cycle()
                if self.net() == Decimal(amount):
                    return
                await asyncio.sleep(0.05)


async def open_engine(server: SimulatorServer, factory: ExchangeClientFactory,
                      hub: MarketDataHub | None, store: EngineStore, stack: AsyncExitStack,
                      venue: str, modes: AccountModes = MODES["one-way-cross"],
                      leverage: int | None = None, engine_id: str = "abcd1234") -> Driven:
    """A LIVE perpetuals engine of `venue`, reconciled: with `hub` as on a WebSocket
    connection (following the market, its streams live), without as on REST."""
    target = ConnectionTarget(venue, ApiType.PERPETUAL_FUTURES)
    clock = SteppedClock()
    market = await factory.client(target, None, lane=Lane.POLL)
    stack.push_async_callback(market.close)
    keyed = await factory.client(target, CREDENTIALS, lane=Lane.ORDER)
    stack.push_async_callback(keyed.close)
    resources = engine_resources(market, keyed, modes)
    feed = streaming = None
    if hub is not None:
        streaming = StreamingMarketData(hub, target, resources.market_data, clock)
        stack.callback(streaming.close)
        resources, feed = await _with_streams(resources, streaming, factory, target, modes,
                                              clock, stack)
    strategy = ScriptedFactory()
    rig = PerpRig(server, None, store, venue, modes, strategy)  # type: ignore[arg-type]
    config = rig.config(leverage={SYMBOL: leverage} if leverage else None)
    record = EngineRecord(f"{venue}-{engine_id}", engine_id, config, DesiredState.RUNNING, 0)
    await store.create_engine(record)
    engine = assemble_engine(record, validate_config(config, StrategyRegistry.of(strategy)),
                             resources, store, clock, lambda status: None)
    broker = engine._broker
    assert isinstance(broker, LivePerpBroker)
    await engine.reconcile()
    if streaming is not None and feed is not None and hub is not None:
        engine.follow_market()
        async with asyncio.timeout(WAIT_S):
            await feed.until_live()
            await hub.wait_for(lambda: streaming.streaming)
    return Driven(engine, broker, clock, strategy, venue, feed, streaming)


async def _with_streams(resources: EngineResources, streaming: StreamingMarketData,
                        factory: ExchangeClientFactory, target: ConnectionTarget,
                        modes: AccountModes, clock: SteppedClock, stack: AsyncExitStack,
                        ) -> tuple[EngineResources, OrderFeed]:
    reopen = partial(factory.order_stream, target, CREDENTIALS)
    orders = resources.orders
    assert orders is not None
    feed = OrderFeed(await reopen(), reopen, orders.streamed,  # type: ignore[attr-defined]
                     streaming.wake, clock, settle_s=0.3, retry_s=0.5, max_retry_s=1.0,
                     convert_position=partial(streamed_position, default_mode=modes.margin_mode))
    feed.start()
    stack.push_async_callback(feed.close)
    return replace(resources, market_data=streaming, events=streaming, order_updates=feed,
                   position_updates=feed), feed


def rest_calls(server: SimulatorServer, venue: str) -> Counter[str]:
    """REST requests the simulator served `venue` so far, by method and path."""
    return Counter({path: count for path, count in server.sim.stats.endpoints.items()
                    if path.startswith(f"{venue} ")})
