"""Perpetuals engines on the simulator, driven one session and one cycle at a time.

Real parts throughout: the simulator over HTTP, unmodified ccxt through the
daemon's exchange layer and shared rate limiter, the engine with its brokers
(`assemble_engine`, as the manager builds it) and the SQLite store. Only the
strategy is scripted (`Scripted`: each cycle places what the test queued), so
a test says exactly which orders go out, and the simulator's market clock is
frozen (`freeze`) so prices are exact.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ctsd.clock import SystemClock
from ctsd.engine.assembly import assemble_engine
from ctsd.engine.config import EngineConfig, PaperSettings, TradingMode, validate_config
from ctsd.engine.engine import Engine
from ctsd.engine.perpetual import AccountModes, MarginMode, MismatchPolicy
from ctsd.engine.status import EngineStatus
from ctsd.engine.store_ports import DesiredState, EngineRecord, EngineStore
from ctsd.errors import FieldViolation
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import Lane
from ctsd.sim.accounts import Account
from ctsd.sim.clock import ManualClock
from ctsd.sim.server import SimulatorServer
from ctsd.strategies.base import DataNeeds, Strategy
from ctsd.strategies.model import Intent, MarketSnapshot, OrderIntent, OrderType, Portfolio, Side
from ctsd.strategies.params import ParamSchema, StrategyParams
from ctsd.strategies.registry import StrategyRegistry
from ctsd.wiring.engine_exchange import engine_resources
from tests.sim.conftest import API_KEY
from tests.support.exchange_clients import ClientMaker

SYMBOL = "BTC/USDT:USDT"
PRICE = Decimal(60_000)
MODES = {
    "one-way-cross": AccountModes(MarginMode.CROSS, hedge=False),
    "hedge-isolated": AccountModes(MarginMode.ISOLATED, hedge=True),
}


@dataclass
class Scripted:
    """A strategy that places, each cycle, the intents a test queued for that cycle."""

    queue: deque[tuple[OrderIntent, ...]]
    needs: DataNeeds = field(default_factory=DataNeeds)

    def decide(self, market: MarketSnapshot, portfolio: Portfolio) -> tuple[Intent, ...]:
        return self.queue.popleft() if self.queue else ()


@dataclass
class ScriptedFactory:
    queue: deque[tuple[OrderIntent, ...]] = field(default_factory=deque)
    name: str = "scripted"
    description: str = "places what the test queued"
    schema: ParamSchema = field(default_factory=lambda: ParamSchema(()))

    def check(self, params: StrategyParams, prefix: str) -> list[FieldViolation]:
        return []

    def create(self, params: StrategyParams) -> Strategy:
        return Scripted(self.queue)


def market_order(side: Side, amount: str, **terms: Any) -> OrderIntent:
    return OrderIntent(SYMBOL, side, OrderType.MARKET, Decimal(amount), None, "test", **terms)


def freeze(server: SimulatorServer, price: Decimal = PRICE) -> ManualClock:
    """The simulator's market clock stopped (its server clock, which signatures are checked
    against, keeps the wall time) and the path fixed at `price`."""
    clock = ManualClock(server.sim.clock.now_ms())
    server.sim.market.clock = clock
    server.sim.set_price(SYMBOL, price)
    return clock


def account(server: SimulatorServer) -> Account:
    found = server.sim.accounts.get(API_KEY)
    assert found is not None
    return found


@dataclass
class PerpRig:
    """One connection's engines: each `engine()` is a fresh session on the same store."""

    server: SimulatorServer
    make_client: ClientMaker
    store: EngineStore
    exchange: str
    modes: AccountModes
    strategy: ScriptedFactory = field(default_factory=ScriptedFactory)
    statuses: list[EngineStatus] = field(default_factory=list)
    engine_id: str = "abcd1234"

    def config(self, mode: TradingMode = TradingMode.LIVE, *,
               leverage: Mapping[str, int] | None = None,
               policy: MismatchPolicy = MismatchPolicy.STOP, **more: Any) -> EngineConfig:
        return EngineConfig("scripted", (SYMBOL,), mode=mode, leverage=dict(leverage or {}),
                            on_position_mismatch=policy,
                            paper=PaperSettings((("USDT", Decimal(50_000)),), Decimal(0)), **more)

    async def engine(self, config: EngineConfig, connection_id: str | None = None) -> Engine:
        """A new engine session (as after a daemon restart: resumed at the stored cycle),
        not yet prepared; `connection_id` defaults to the venue's name."""
        cid = connection_id or self.exchange
        stored = {r.connection_id: r.cycle for r in await self.store.load_engines()}
        cycle = stored.get(cid, 0)
        market = await self.make_client(self.exchange, ApiType.PERPETUAL_FUTURES,
                                        credentials=None, lane=Lane.POLL)
        keyed = await self.make_client(self.exchange, ApiType.PERPETUAL_FUTURES,
                                       lane=Lane.ORDER if config.mode is TradingMode.LIVE
                                       else Lane.POLL)
        resources = (engine_resources(market, keyed, self.modes)
                     if config.mode is TradingMode.LIVE
                     else engine_resources(market, None, self.modes, keyed))
        engine_id = self.engine_id if config.mode is TradingMode.LIVE else f"p{self.engine_id}"
        record = EngineRecord(cid, engine_id, config, DesiredState.RUNNING, cycle)
        await self.store.create_engine(record)
        validated = validate_config(config, StrategyRegistry.of(self.strategy))
        return assemble_engine(record, validated, resources, self.store, SystemClock(),
                               self.statuses.append, funding_poll_s=0.0)

    async def run(self, engine: Engine, *intents: OrderIntent) -> None:
        """One cycle that places `intents` (none: a cycle that only reads)."""
        self.strategy.queue.append(tuple(intents))
        assert await engine.run_cycle()
