"""Engines on any api type against the simulator, driven one cycle at a time, on one clock.

Real parts throughout, as in `tests/support/perp_rig.py`: the simulator over HTTP,
unmodified ccxt through the daemon's exchange layer and a shared rate limiter, the
engine with its brokers (`assemble_engine`) and the SQLite store. The strategy is
scripted (each cycle places what the test queued), or the built-in grid. One
`ManualClock` is both the simulator's market clock and the engines' clock, so a test
moves time (interest periods, option expiries) for the venue and the paper account
alike, and prices stay where the test put them. The venues' rate limits and the
daemon's are scaled up alike (`LIMIT_SCALE`): these tests are about engines, and Kraken's
starter call counter (15, draining 0.33 a second) would otherwise keep a LIVE margin
test waiting in real time for over a minute; tests/ratelimit proves the limits.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest_asyncio

from ctsd.engine.assembly import assemble_engine
from ctsd.engine.config import EngineConfig, PaperSettings, TradingMode, validate_config
from ctsd.engine.engine import Engine
from ctsd.engine.perpetual import AccountModes, AppliedSetting
from ctsd.engine.status import EngineStatus
from ctsd.engine.store_ports import DesiredState, EngineRecord, EngineStore
from ctsd.exchanges.client import ExchangeClient
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ApiCredentials, ConnectionTarget
from ctsd.exchanges.registry import ExchangeRegistry
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import Lane, LimitOverride, RateLimiter, RateLimitOverrides
from ctsd.sim.accounts import AccountSpec
from ctsd.sim.clock import ManualClock
from ctsd.sim.options import OptionContract
from ctsd.sim.ratelimit import RateLimitConfig
from ctsd.sim.server import SimulatorServer
from ctsd.strategies.grid import GRID
from ctsd.strategies.model import OrderIntent, OrderType, Side
from ctsd.strategies.registry import StrategyRegistry
from ctsd.wiring.engine_exchange import engine_resources
from tests.sim.conftest import API_KEY, PASSPHRASE, SECRET, trader_spec
from tests.support.exchange_clients import (
    KRAKEN_CREDENTIALS,
    credentials_for,
    exchange_sim_config,
    make_factory,
)
from tests.support.perp_rig import ScriptedFactory

FUNDS: Mapping[str, Any] = {"margin": {"USDT": Decimal(20_000)},
                            "options": {"USDT": Decimal(20_000)}}
"""Binance's margin and options wallets are apart from spot: funded for the tests."""
LIMIT_SCALE = 100
"""Every venue limit of the simulator and every limit of the daemon, multiplied alike
(as in `bench/parity_bench.py`)."""


def raised_limits(scale: int = LIMIT_SCALE) -> RateLimitOverrides:
    """The daemon's limits of every venue multiplied by `scale` (a decaying counter's
    drain rate too: its interval stays, its cap grows)."""
    return RateLimitOverrides(limits={
        (spec.id, limit.name): LimitOverride(limit=limit.limit * scale)
        for spec in ExchangeRegistry.default().all() for limit in spec.rate_limits})


def raised_limits_toml(scale: int = LIMIT_SCALE) -> str:
    """`raised_limits` as a daemon's `[rate_limits.<id>.<limit>]` tables."""
    return "".join(f"[rate_limits.{venue}.{name}]\nlimit = {override.limit}\n"
                   for (venue, name), override in raised_limits(scale).limits.items())


def funded_config(**overrides: Any) -> Any:
    """The simulator's accounts (as `exchange_sim_config`) with margin and options funds."""
    kraken = trader_spec(api_key=KRAKEN_CREDENTIALS.api_key, secret=KRAKEN_CREDENTIALS.secret,
                         **FUNDS)
    accounts = (trader_spec(**FUNDS), kraken)
    return exchange_sim_config(accounts=accounts, **overrides)


@pytest_asyncio.fixture
async def funded_server() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(funded_config(limits=RateLimitConfig(scale=LIMIT_SCALE))) as srv:
        yield srv


@pytest_asyncio.fixture
async def funded_factory(funded_server: SimulatorServer,
                         ) -> AsyncIterator[ExchangeClientFactory]:
    async with RateLimiter() as limiter, make_factory(funded_server, limiter,
                                                      overrides=raised_limits()) as built:
        yield built


def order(symbol: str, side: Side, amount: str, price: str | None = None,
          **terms: Any) -> OrderIntent:
    kind = OrderType.MARKET if price is None else OrderType.LIMIT
    return OrderIntent(symbol, side, kind, Decimal(amount),
                       None if price is None else Decimal(price), "test", **terms)


def start_clock(server: SimulatorServer) -> ManualClock:
    """The market clock stopped at the start of a minute (prices move only with it): the
    current one, so that runs walk different stretches of the seeded path, or
    `CTS_MARKET_MINUTE`'s (minutes since the epoch), which replays a run. A failing test
    shows the minute it ran from (pytest prints what it captured)."""
    minute = int(os.environ.get("CTS_MARKET_MINUTE") or server.sim.clock.now_ms() // 60_000)
    print(f"market clock from minute {minute} (CTS_MARKET_MINUTE={minute} replays it)")
    clock = ManualClock(minute * 60_000)
    server.sim.market.clock = clock
    return clock


@dataclass
class MarketRig:
    """One venue and api type: each `engine()` is a fresh session on the same store."""

    server: SimulatorServer
    factory: ExchangeClientFactory
    store: EngineStore
    exchange: str
    api_type: ApiType
    symbol: str
    clock: ManualClock
    modes: AccountModes = field(default_factory=AccountModes)
    credentials: ApiCredentials | None = None
    strategy: ScriptedFactory = field(default_factory=ScriptedFactory)
    statuses: list[EngineStatus] = field(default_factory=list)
    clients: list[ExchangeClient] = field(default_factory=list)
    applied: tuple[AppliedSetting, ...] = ()
    """What the last engine's start set on the venue."""

    def config(self, mode: TradingMode = TradingMode.LIVE, *,
               balances: tuple[tuple[str, Decimal], ...] = (("USDT", Decimal(20_000)),),
               **more: Any) -> EngineConfig:
        return EngineConfig("scripted", (self.symbol,), mode=mode,
                            paper=PaperSettings(balances, Decimal(0)), **more)

    async def engine(self, config: EngineConfig, connection_id: str | None = None) -> Engine:
        """A new, prepared and reconciled engine session (resumed at the stored cycle)."""
        cid = connection_id or f"{self.exchange}-{config.mode.value}"
        stored = {r.connection_id: r.cycle for r in await self.store.load_engines()}
        target = ConnectionTarget(self.exchange, self.api_type)
        credentials = self.credentials or credentials_for(self.exchange)
        live = config.mode is TradingMode.LIVE
        market = await self.factory.client(target, None, lane=Lane.POLL)
        keyed = await self.factory.client(target, credentials,
                                          lane=Lane.ORDER if live else Lane.POLL)
        self.clients += [market, keyed]
        resources = engine_resources(market, keyed if live else None, self.modes,
                                     None if live else keyed, now_ms=self.clock.now_ms)
        record = EngineRecord(cid, f"{config.mode.value[0]}{len(self.clients):03d}", config,
                              DesiredState.RUNNING, stored.get(cid, 0))
        await self.store.create_engine(record)
        validated = validate_config(config, StrategyRegistry.of(self.strategy, GRID))
        engine = assemble_engine(record, validated, resources, self.store, self.clock,
                                 self.statuses.append, funding_poll_s=0.0)
        self.applied = await engine.prepare()
        await engine.reconcile()
        return engine

    async def run(self, engine: Engine, *intents: OrderIntent) -> None:
        """One cycle that places `intents` (none: a cycle that only reads)."""
        self.strategy.queue.append(tuple(intents))
        assert await engine.run_cycle()

    def venue_account(self) -> Any:
        """The simulator's account the rig's key trades."""
        key = (self.credentials or credentials_for(self.exchange)).api_key
        found = self.server.sim.accounts.get(key)
        assert found is not None
        return found

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


def nearest_call(server: SimulatorServer, after_ms: int = 0) -> tuple[str, OptionContract]:
    """The soonest BTC call expiring after `after_ms` (the path clock), struck nearest the
    price, and its ccxt symbol on the USDT-settled venues (Binance, Bybit)."""
    price = server.sim.market.price("BTC/USDT")
    calls = [c for c in server.sim.options.contracts(underlying="BTC")
             if c.call and c.expiry_ms > after_ms]
    soonest = min(c.expiry_ms for c in calls)
    contract = min((c for c in calls if c.expiry_ms == soonest),
                   key=lambda c: abs(c.strike - price))
    return f"BTC/USDT:USDT-{contract.yymmdd}-{contract.strike_text}-C", contract


def sim_account(server: SimulatorServer, exchange: str) -> Any:
    key = KRAKEN_CREDENTIALS.api_key if exchange == "kraken" else API_KEY
    found = server.sim.accounts.get(key)
    assert found is not None
    return found


def account_spec(api_key: str, **spec: Any) -> AccountSpec:
    """A fresh simulated account of a test's own, funded like the default one."""
    fields: dict[str, Any] = {"secret": SECRET, "passphrase": PASSPHRASE, **FUNDS}
    fields.update(spec)
    return trader_spec(api_key=api_key, **fields)
