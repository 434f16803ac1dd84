"""Two fleet members in one process on one SQLite file, trading on one fake venue.

Each member is what a daemon holds: its own `Database` on the shared file, its
fleet store and engine store, an `EngineManager` with a `FleetMember` as its
leases, and its own view of the venue and the market. Every call a member makes
through those ports passes its `Gate`, which can freeze the member at its k-th
call from some moment on: every later call of that member blocks too, as in a
process stopped by SIGSTOP (whatever runs between two calls is plain Python that
touches nothing outside). Time is one virtual clock (one host): the database's
clock and each member's monotonic clock.

The venue acts on a placement or cancel only if it arrives before the deadline
the request carries (`ctsd.fencing.deadline_ms`, as Binance's `timestamp` +
`recvWindow`), and logs who asked what, so a test can tell what a member did
after losing its lease.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from ctsd import fencing
from ctsd.engine.config import EngineConfig, RiskLimits, TradingMode
from ctsd.engine.manager import EngineManager
from ctsd.engine.order_ports import ExchangeOrder
from ctsd.engine.status import EngineState
from ctsd.engine.store_ports import EngineStore
from ctsd.engine.supervisor import RestartPolicy
from ctsd.errors import Unavailable
from ctsd.fleet.member import FleetMember, LeaseSettings
from ctsd.fleet.model import MemberInfo
from ctsd.fleet.ports import FleetStore
from ctsd.fleet.statuses import FleetHub, StatusStore
from ctsd.store.database import Database
from ctsd.store.engine_statuses import SqlStatusStore
from ctsd.store.engines import SqlEngineStore
from ctsd.store.fleet import SqlFleetStore
from ctsd.strategies.base import DataNeeds
from ctsd.strategies.model import (
    Balance,
    CancelIntent,
    Intent,
    MarketSnapshot,
    OrderIntent,
    OrderType,
    Portfolio,
    PositionSide,
    Side,
)
from ctsd.strategies.registry import StrategyRegistry
from tests.engine.fakes import FakeBackend, FakeExchange, ScriptedMarket
from tests.support.strategies import PlainFactory
from tests.support.virtual_clock import VirtualClock

SYMBOL = "BTC/USDT"
CID = "c1"
NO_HISTORY = DataNeeds()
SETTINGS = LeaseSettings(ttl_s=10, renew_every_s=2.5, deadline_s=7, scan_s=1)


@dataclass(frozen=True)
class Churn:
    """Every cycle: cancel what rests, place two new limit buys -- a placement and a
    cancel in every cycle, so a pause anywhere falls near both."""

    needs: DataNeeds = NO_HISTORY

    def decide(self, market: MarketSnapshot, portfolio: Portfolio) -> tuple[Intent, ...]:
        last = market.symbols[0].ticker.last
        cancels = tuple(CancelIntent(o.client_order_id, o.symbol, o.tag)
                        for o in portfolio.open_orders)
        return cancels + tuple(
            OrderIntent(SYMBOL, Side.BUY, OrderType.LIMIT, Decimal("0.01"),
                        last * Decimal(k) / 10, f"churn:{k}") for k in (8, 9))


REGISTRY = StrategyRegistry.of(
    PlainFactory("churn", "cancels and places every cycle", lambda _: Churn()))
CONFIG = EngineConfig("churn", (SYMBOL,), mode=TradingMode.LIVE, interval_s=1.0,
                      risk=RiskLimits(max_orders_per_minute=None))


class Gate:
    """Counts a member's calls; frozen from its k-th call after `freeze_at(k)`."""

    def __init__(self, linked: Gate | None = None) -> None:
        self._linked = linked
        """Frozen with it too (the process is stopped), not the other way round."""
        self.calls = 0
        self._freeze_at: int | None = None
        self.frozen = asyncio.Event()
        self._thawed = asyncio.Event()
        self._thawed.set()
        self.inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def freeze_at(self, calls_from_now: int) -> None:
        self._freeze_at = self.calls + calls_from_now

    def thaw(self) -> None:
        self._freeze_at = None
        self._thawed.set()

    async def idle(self) -> None:
        await self._idle.wait()

    async def passing(self, call: Callable[[], Awaitable[Any]]) -> Any:
        await self._stop_point()  # frozen before the call reaches anything
        self.inflight += 1
        self._idle.clear()
        try:
            result = await call()
        finally:
            self.inflight -= 1
            if not self.inflight:
                self._idle.set()
        await self._stop_point()  # frozen after the call acted, before its caller goes on
        return result

    async def _stop_point(self) -> None:
        self.calls += 1
        if self._freeze_at is not None and self.calls > self._freeze_at:
            self._thawed.clear()
            self.frozen.set()
        await self._thawed.wait()
        if self._linked is not None:
            await self._linked._thawed.wait()


class Gated:
    """Every async method of `target`, through `gate`."""

    def __init__(self, target: object, gate: Gate) -> None:
        self._target = target
        self._gate = gate

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not asyncio.iscoroutinefunction(attribute):
            return attribute

        @functools.wraps(attribute)
        async def gated(*args: Any, **kwargs: Any) -> Any:
            return await self._gate.passing(lambda: attribute(*args, **kwargs))

        return gated


@dataclass(frozen=True)
class VenueCall:
    member: str
    method: str
    client_order_id: str
    acted: bool
    at_ms: int


@dataclass
class Venue:
    """One exchange for every member; `log` is every placement and cancel that arrived."""

    clock: VirtualClock
    book: FakeExchange = field(default_factory=lambda: FakeExchange(
        (Balance("USDT", Decimal(10**6), Decimal(10**6)),)))
    log: list[VenueCall] = field(default_factory=list)

    def arrived(self, member: str, method: str, client_order_id: str) -> None:
        """A request the venue acts on only before the deadline it carries."""
        deadline = fencing.deadline_ms()
        acted = deadline is None or self.clock.now_ms() <= deadline
        self.log.append(VenueCall(member, method, client_order_id, acted, self.clock.now_ms()))
        if not acted:
            raise Unavailable("the request arrived after its validity window (-1021)")


class VenueView:
    """A member's `ExchangeOrderClient` on the shared venue."""

    def __init__(self, venue: Venue, member: str) -> None:
        self._venue = venue
        self._member = member

    async def create_order(self, symbol: str, type: OrderType, side: Side, amount: Decimal,
                           price: Decimal | None, client_order_id: str, *,
                           reduce_only: bool = False,
                           position_side: PositionSide = PositionSide.BOTH) -> ExchangeOrder:
        self._venue.arrived(self._member, "create_order", client_order_id)
        return await self._venue.book.create_order(symbol, type, side, amount, price,
                                                   client_order_id)

    async def cancel_order(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        self._venue.arrived(self._member, "cancel_order", client_order_id)
        return await self._venue.book.cancel_order(symbol, client_order_id)

    async def fetch_order(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        return await self._venue.book.fetch_order(symbol, client_order_id)

    async def fetch_open_orders(self, symbol: str) -> tuple[ExchangeOrder, ...]:
        return await self._venue.book.fetch_open_orders(symbol)

    async def fetch_balance(self) -> tuple[Balance, ...]:
        return await self._venue.book.fetch_balance()


class Member:
    def __init__(self, name: str, db: Database, clock: VirtualClock, venue: Venue) -> None:
        self.name = name
        self.db = db
        self.gate = Gate()
        self.renewals = Gate(linked=self.gate)
        """Only the member's lease calls (renew, take, ...): a database slow for them alone."""
        fleet = SqlFleetStore(db, clock.now_ms)
        market = ScriptedMarket(clock, {SYMBOL: [Decimal(100)] * 10_000})
        self.backend = FakeBackend(
            {CID: cast(ScriptedMarket, Gated(market, self.gate))},
            {CID: cast(FakeExchange, Gated(VenueView(venue, name), self.gate))})
        hub = FleetHub(cast(StatusStore, Gated(SqlStatusStore(db), self.gate)), name)
        self.member = FleetMember(cast(FleetStore, Gated(fleet, self.renewals)),
                                  MemberInfo(name, f"{name}:1", "test", 7), clock, SETTINGS,
                                  hub)
        self.manager = EngineManager(
            cast(EngineStore, Gated(SqlEngineStore(db, fleet), self.gate)), self.backend,
            REGISTRY, clock=clock, leases=self.member, hub=hub, heartbeat_s=3600,
            shutdown_grace_s=0.5, policy=RestartPolicy(base_delay_s=1, max_delay_s=2))

    async def open(self) -> None:
        await self.manager.open()
        await self.member.open(self.manager)

    async def close(self) -> None:
        self.gate.thaw()
        self.renewals.thaw()
        await self.manager.close()
        await self.member.close()

    def state(self) -> EngineState | None:
        """The engine's state as this member runs it (None: it does not run it)."""
        status = self.manager.list()
        return status[0].state if status and status[0].owner == self.name else None

    def running(self) -> bool:
        return self.state() is EngineState.RUNNING and CID in self.manager.owned()


class Fleet:
    """Members on `path`'s database; `step` moves virtual time once everyone is idle."""

    def __init__(self, clock: VirtualClock, members: list[Member], venue: Venue) -> None:
        self.clock = clock
        self.members = members
        self.venue = venue

    @classmethod
    async def open(cls, path: Path, names: tuple[str, ...] = ("a", "b")) -> Fleet:
        clock = VirtualClock()
        venue = Venue(clock)
        members = [Member(n, await Database.open(path), clock, venue) for n in names]
        for member in members:
            await member.open()
        return cls(clock, members, venue)

    async def close(self) -> None:
        for member in self.members:
            await member.close()
            await member.db.close()

    async def quiet(self) -> None:
        """Until no member that is not frozen has a call in flight (the writer threads
        included), with the loop settled."""
        for _ in range(1000):
            await self.clock.settle()
            busy = [g for m in self.members for g in (m.gate, m.renewals) if g.inflight]
            if not busy:
                return
            await asyncio.wait_for(asyncio.gather(*(g.idle() for g in busy)), 10)
        raise AssertionError("the fleet never went quiet")

    async def step(self, seconds: float = 0.25) -> None:
        await self.quiet()
        await self.clock.advance(seconds)
        await self.quiet()

    async def until(self, condition: Callable[[], bool], limit_s: float = 60) -> None:
        """Move virtual time in steps until `condition` holds (bounded)."""
        deadline = self.clock.now + limit_s
        while not condition():
            if self.clock.now > deadline:
                raise AssertionError(f"not reached within {limit_s} virtual seconds")
            await self.step()
