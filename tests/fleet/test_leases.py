"""The lease SQL with two fleet members on one SQLite file (two writers, one clock)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio

from ctsd.engine.config import EngineConfig
from ctsd.engine.orders import Execution, Order, OrderRequest
from ctsd.engine.ports import DesiredState, EngineRecord, Fence
from ctsd.errors import LeaseLost
from ctsd.fleet.model import MemberInfo
from ctsd.store.database import Database
from ctsd.store.engines import SqlEngineStore
from ctsd.store.fleet import SqlFleetStore
from ctsd.strategies.model import OrderType, Side
from tests.support.virtual_clock import VirtualClock

TTL_MS = 10_000
A = MemberInfo("a", "127.0.0.1:1", "test", 7)
B = MemberInfo("b", "127.0.0.1:2", "test", 7)


@dataclass
class Member:
    db: Database
    fleet: SqlFleetStore
    engines: SqlEngineStore


@pytest_asyncio.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[VirtualClock, Member, Member]]:
    clock = VirtualClock()
    sides = []
    for _ in range(2):
        db = await Database.open(tmp_path)
        fleet = SqlFleetStore(db, clock.now_ms)
        sides.append(Member(db, fleet, SqlEngineStore(db, fleet)))
    try:
        yield clock, sides[0], sides[1]
    finally:
        for side in sides:
            await side.db.close()


def pending(cid: str) -> Execution:
    request = OrderRequest(cid, "BTC/USDT", Side.BUY, OrderType.LIMIT, Decimal(1), Decimal(10),
                           "t", 1)
    return Execution(Order.pending(request, 0))


async def running(side: Member, cid: str = "c1") -> None:
    await side.engines.create_engine(EngineRecord(cid, "e1", EngineConfig(
        strategy="sma_cross", symbols=("BTC/USDT",)), DesiredState.RUNNING))


@pytest.mark.asyncio
async def test_one_owner_at_a_time_and_every_change_of_owner_raises_the_token(
        pair: tuple[VirtualClock, Member, Member]) -> None:
    clock, a, b = pair
    await running(a)
    assert await a.fleet.take("c1", "a", TTL_MS, running_only=True) == 1
    assert await b.fleet.take("c1", "b", TTL_MS, running_only=True) is None
    assert await a.fleet.take("c1", "a", TTL_MS, running_only=False) == 2  # own: new token
    await clock.advance(TTL_MS / 1000)  # expired exactly at now: free
    assert await b.fleet.orphans() == ["c1"]
    assert await b.fleet.take("c1", "b", TTL_MS, running_only=True) == 3
    assert await a.fleet.renew(A, TTL_MS) == {}
    assert await b.fleet.renew(B, TTL_MS) == {"c1": 3}
    assert await a.fleet.orphans() == []


@pytest.mark.asyncio
async def test_a_stale_fence_writes_nothing(pair: tuple[VirtualClock, Member, Member]) -> None:
    clock, a, b = pair
    await running(a)
    token = await a.fleet.take("c1", "a", TTL_MS, running_only=True)
    assert token == 1
    fence_a = Fence("a", token)
    await a.engines.save_execution("c1", pending("x1"), fence_a)
    await clock.advance(TTL_MS / 1000 + 0.001)
    with pytest.raises(LeaseLost):  # expired by the database's clock, even before adoption
        await a.engines.save_execution("c1", pending("x2"), fence_a)
    assert await b.fleet.take("c1", "b", TTL_MS, running_only=True) == 2
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
    assert (record.cycle, record.desired) == (0, DesiredState.RUNNING)


@pytest.mark.asyncio
async def test_renewal_keeps_only_unexpired_leases_and_release_frees_at_once(
        pair: tuple[VirtualClock, Member, Member]) -> None:
    clock, a, b = pair
    for cid in ("c1", "c2"):
        await running(a, cid)
        await a.fleet.take(cid, "a", TTL_MS, running_only=True)
    await clock.advance(9)
    assert await a.fleet.renew(A, TTL_MS) == {"c1": 1, "c2": 1}
    await clock.advance(9)  # 18 s after the take, 9 after the renewal: still held
    assert await b.fleet.take("c1", "b", TTL_MS, running_only=True) is None
    assert await a.fleet.release("c2", Fence("a", 1))
    assert not await a.fleet.release("c2", Fence("a", 1))  # already released
    assert await b.fleet.orphans() == ["c2"]
    assert await b.fleet.take("c2", "b", TTL_MS, running_only=True) == 2
    view = await b.fleet.view(TTL_MS)
    assert [(m.info.id, m.alive) for m in view.members] == [("a", True)]
    assert [(lease.connection_id, lease.owner, lease.live) for lease in view.leases] == [
        ("c1", "a", True), ("c2", "b", True)]


@pytest.mark.asyncio
async def test_an_engine_not_meant_to_run_is_not_adopted(
        pair: tuple[VirtualClock, Member, Member]) -> None:
    clock, a, b = pair
    await running(a)
    await a.fleet.take("c1", "a", TTL_MS, running_only=True)
    await a.engines.set_desired("c1", DesiredState.STOPPED, "", Fence("a", 1))
    await clock.advance(11)
    assert await b.fleet.orphans() == []
    assert await b.fleet.take("c1", "b", TTL_MS, running_only=True) is None
    assert await b.fleet.stopped(["c1", "c9"]) == ["c1"]
