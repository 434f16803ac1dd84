"""A whole engine world for manager tests: virtual clock, store, markets, backend, manager."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from ctsd.clock import Clock
from ctsd.engine.config import EngineConfig, PaperSettings
from ctsd.engine.manager import EngineManager
from ctsd.engine.status import EngineState, EngineStatus
from ctsd.engine.supervisor import RestartPolicy
from ctsd.engine.watch import StatusHub
from ctsd.strategies.base import DataNeeds
from ctsd.strategies.grid import GRID
from ctsd.strategies.model import Intent, MarketSnapshot, Portfolio
from ctsd.strategies.params import ParamKind, ParamSchema, ParamSpec
from ctsd.strategies.registry import StrategyRegistry
from ctsd.strategies.sma_cross import SMA_CROSS
from tests.engine.fakes import FakeBackend, FakeExchange, MemoryStore, ScriptedMarket
from tests.support.strategies import PlainFactory
from tests.support.virtual_clock import VirtualClock

D = Decimal
SYMBOL = "BTC/USDT"
SMA_CLOSES = [D(x) for x in (10, 10, 10, 10, 11, 12, 13, 12, 10, 9, 9, 10, 12)]
NO_SLIPPAGE = PaperSettings(balances=(("USDT", D(1000)),), slippage_bps=D(0))
NO_HISTORY = DataNeeds()
FRAGILE_SCHEMA = ParamSchema((ParamSpec("poison", ParamKind.DECIMAL, "price"),))
FAST_RESTARTS = RestartPolicy(max_restarts=3, base_delay_s=10, max_delay_s=40)


@dataclass(frozen=True)
class Fragile:
    """Raises whenever the last price is `poison`: a deterministic crashing strategy."""

    poison: Decimal
    needs: DataNeeds = NO_HISTORY

    def decide(self, market: MarketSnapshot, portfolio: Portfolio) -> tuple[Intent, ...]:
        if any(m.ticker.last == self.poison for m in market.symbols):
            raise ValueError(f"poisoned by {self.poison}")
        return ()


REGISTRY = StrategyRegistry.of(SMA_CROSS, GRID, PlainFactory(
    "fragile", "crashes on one price", lambda params: Fragile(params.decimal("poison")),
    FRAGILE_SCHEMA))


class RecordingHub(StatusHub):
    """A status hub that also keeps every published status with its virtual time."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(capacity=10_000)
        self._clock = clock
        self.log: list[tuple[float, EngineStatus]] = []

    def publish(self, status: EngineStatus) -> None:
        self.log.append((self._clock.monotonic(), status))
        super().publish(status)


def sma(**overrides: object) -> EngineConfig:
    fields: dict[str, object] = {
        "strategy": "sma_cross", "symbols": (SYMBOL,), "paper": NO_SLIPPAGE,
        "params": {"fast": "2", "slow": "3", "quote_amount": "100"}}
    fields.update(overrides)
    return EngineConfig(**fields)  # type: ignore[arg-type]


def grid(**overrides: object) -> EngineConfig:
    fields: dict[str, object] = {
        "strategy": "grid", "symbols": (SYMBOL,), "paper": NO_SLIPPAGE,
        "params": {"reference_price": "10", "spacing_pct": "5", "levels": "2", "amount": "10"}}
    fields.update(overrides)
    return EngineConfig(**fields)  # type: ignore[arg-type]


def fragile(poison: str) -> EngineConfig:
    return EngineConfig("fragile", (SYMBOL,), {"poison": poison})


class World:
    def __init__(
        self, closes: dict[str, Sequence[Decimal]], *, store: MemoryStore | None = None,
        clock: VirtualClock | None = None, exchanges: dict[str, FakeExchange] | None = None,
        policy: RestartPolicy | None = FAST_RESTARTS, first_engine: int = 1,
    ) -> None:
        """`first_engine`: the number in the first engine id the manager mints (`eNeN`):
        above those a resumed store holds, when a test starts an engine anew. `policy`
        None: the manager's default, as the daemon runs it."""
        self.clock = clock or VirtualClock()
        self.store = store or MemoryStore()
        self.markets = {c: ScriptedMarket(self.clock, {SYMBOL: s}) for c, s in closes.items()}
        self.backend = FakeBackend(self.markets, exchanges or {})
        self.hub = RecordingHub(self.clock)
        ids = (f"e{n}e{n}" for n in itertools.count(first_engine))
        self.manager = EngineManager(
            self.store, self.backend, REGISTRY, clock=self.clock, hub=self.hub, policy=policy,
            engine_ids=lambda: next(ids), heartbeat_s=30, shutdown_grace_s=0.2)

    def states(self, connection_id: str) -> list[EngineState]:
        """The distinct states the engine went through, in order."""
        states: list[EngineState] = []
        for _, status in self.hub.log:
            if status.connection_id == connection_id and (
                    not states or states[-1] is not status.state):
                states.append(status.state)
        return states

    def times(self, connection_id: str, state: EngineState) -> list[float]:
        """When the engine entered `state`."""
        found, previous = [], None
        for at, status in self.hub.log:
            if status.connection_id != connection_id:
                continue
            if status.state is state and previous is not state:
                found.append(at)
            previous = status.state
        return found
