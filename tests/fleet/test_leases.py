"""The lease SQL with two fleet members on one database: one SQLite file (two writers), and
one PostgreSQL database (two daemons' connections), each by its own clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio

from ctsd.engine.config import EngineConfig
from ctsd.engine.lease_ports import Fence
from ctsd.engine.orders import Execution, Order, OrderRequest
from ctsd.engine.store_ports import DesiredState, EngineRecord
from ctsd.errors import LeaseLost
from ctsd.fleet.model import MemberInfo
from ctsd.store.database import Database
from ctsd.store.engines import SqlEngineStore
from ctsd.store.fleet import SqlFleetStore
from ctsd.strategies.model import OrderType, Side
from tests.support.pg_databases import PgDatabases
from tests.support.virtual_clock import VirtualClock

A = MemberInfo("a", "127.0.0.1:1", "test", 7)
B = MemberInfo("b", "127.0.0.1:2", "test", 7)


@dataclass
class Member:
    db: Database
    fleet: SqlFleetStore
    engines: SqlEngineStore


class Time:
    """SQLite: one host's clock, virtual. PostgreSQL: the server's own clock, which only
    real time moves, so there the TTL is short and time passes for real."""

    def __init__(self, clock: VirtualClock | None) -> None:
        self.clock = clock
        self.ttl_ms = 10_000 if clock is not None else 1_000

    async def advance(self, ttls: float) -> None:
        if self.clock is not None:
            await self.clock.advance(self.ttl_ms * ttls / 1000)
        else:
            await asyncio.sleep(self.ttl_ms * ttls / 1000)


Pair = tuple[Time, Member, Member]


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Pair]:
    url: str | None = None
    databases: PgDatabases | None = None
    clock = None
    if request.param == "postgresql":
        databases = PgDatabases(request.getfixturevalue("postgres_url"))
        url = await databases.fresh()
    else:
        clock = VirtualClock()
    members = []
    for _ in range(2):
        db = await Database.open(tmp_path, url)
        fleet = SqlFleetStore(db, clock.now_ms) if clock else SqlFleetStore(db)
        members.append(Member(db, fleet, SqlEngineStore(db, fleet)))
    try:
        yield Time(clock), members[0], members[1]
    finally:
        for member in members:
            await member.db.close()
        if databases is not None and url is not None:
            await databases.drop(url)


def pending(cid: str) -> Execution:
    request = OrderRequest(cid, "BTC/USDT", Side.BUY, OrderType.LIMIT, Decimal(1), Decimal(10),
                           "t", 1)
    return Execution(Order.pending(request, 0))


async def running(side: Member, cid: str = "c1") -> None:
    await side.engines.create_engine(EngineRecord(cid, "e1", EngineConfig(
        strategy="sma_cross", symbols=("BTC/USDT",)), DesiredState.RUNNING))


@pytest.mark.asyncio
async def test_one_owner_at_a_time_and_every_change_of_owner_raises_the_token(
        pair: Pair) -> None:
    time, a, b = pair
    ttl = time.ttl_ms
    await running(a)
    assert await a.fleet.take("c1", "a", ttl, running_only=True) == 1
    assert await b.fleet.take("c1", "b", ttl, running_only=True) is None
    assert await a.fleet.take("c1", "a", ttl, running_only=False) == 2  # own: new token
    await time.advance(1)  # expired (at the latest exactly now): free
    assert await b.fleet.orphans() == ["c1"]
    assert await b.fleet.take("c1", "b", ttl, running_only=True) == 3
    assert await a.fleet.renew(A, ttl) == {}
    assert await b.fleet.renew(B, ttl) == {"c1": 3}
    assert await a.fleet.orphans() == []


@pytest.mark.asyncio
async def test_a_stale_fence_writes_nothing(pair: Pair) -> None:
    time, a, b = pair
    ttl = time.ttl_ms
    await running(a)
    token = await a.fleet.take("c1", "a", ttl, running_only=True)
    assert token == 1
    fence_a = Fence("a", token)
    await a.engines.save_execution("c1", pending("x1"), fence_a)
    await time.advance(1.01)
    with pytest.raises(LeaseLost):  # expired by the database's clock, even before adoption
        await a.engines.save_execution("c1", pending("x2"), fence_a)
    assert await b.fleet.take("c1", "b", ttl, running_only=True) == 2
    for write in (a.engines.save_execution("c1", pending("x3"), fence_a),
                  a.engines.save_cycle("c1", 9, fence_a),
                  a.engines.set_desired("c1", DesiredState.STOPPED, "x", fence_a),
                  a.engines.save_funding("c1", (), fence_a)):
        with pytest.raises(LeaseLost):
            await write
    await b.engines.save_execution("c1", pending("y1"), Fence("b", 2))
    rows = await a.db.fetch_all(
        "SELECT client_order_id, fence FROM engine_orders ORDER BY seq")
    assert rows == [("x1", 1), ("y1", 2)]
    record = (await a.engines.load_engines())[0]
    # cycle 1: the accepted PENDING orders' (written with them); not the refused save_cycle's 9
    assert (record.cycle, record.desired) == (1, DesiredState.RUNNING)


@pytest.mark.asyncio
async def test_renewal_keeps_only_unexpired_leases_and_release_frees_at_once(
        pair: Pair) -> None:
    time, a, b = pair
    ttl = time.ttl_ms
    for cid in ("c1", "c2"):
        await running(a, cid)
        await a.fleet.take(cid, "a", ttl, running_only=True)
    await time.advance(0.5)
    assert await a.fleet.renew(A, ttl) == {"c1": 1, "c2": 1}
    await time.advance(0.6)  # 1.1 TTL after the take, 0.6 after the renewal: still held
    assert await b.fleet.take("c1", "b", ttl, running_only=True) is None
    assert await a.fleet.release("c2", Fence("a", 1))
    assert not await a.fleet.release("c2", Fence("a", 1))  # already released
    assert await b.fleet.orphans() == ["c2"]
    assert await b.fleet.take("c2", "b", ttl, running_only=True) == 2
    view = await b.fleet.view(ttl)
    assert [(m.info.id, m.alive) for m in view.members] == [("a", True)]
    assert [(lease.connection_id, lease.owner, lease.live) for lease in view.leases] == [
        ("c1", "a", True), ("c2", "b", True)]


@pytest.mark.asyncio
async def test_an_engine_not_meant_to_run_is_not_adopted(
        pair: Pair) -> None:
    time, a, b = pair
    ttl = time.ttl_ms
    await running(a)
    await a.fleet.take("c1", "a", ttl, running_only=True)
    await a.engines.set_desired("c1", DesiredState.STOPPED, "", Fence("a", 1))
    await time.advance(1.1)
    assert await b.fleet.orphans() == []
    assert await b.fleet.take("c1", "b", ttl, running_only=True) is None
    assert await b.fleet.stopped(["c1", "c9"]) == ["c1"]
