"""StartEngine and StopEngine cancelled at each of their await points, on the SQL store.

Whatever point a caller's cancellation hits, once the operation has settled the
stored desired state and the engine the manager shows agree (RUNNING stored ⇔ an
engine active; STOPPED stored ⇔ stopped), and every client the backend opened for
an engine that is not running was closed again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from ctsd.engine.activity import ACTIVE_STATES
from ctsd.engine.backend import EngineResources
from ctsd.engine.config import TradingMode
from ctsd.engine.manager import EngineManager
from ctsd.engine.status import EngineState
from ctsd.engine.store_ports import DesiredState
from ctsd.errors import NotFound
from ctsd.store.database import Database
from ctsd.store.engines import SqlEngineStore
from tests.engine.fakes import FakeBackend, ScriptedMarket
from tests.engine.world import REGISTRY, SMA_CLOSES, SYMBOL, sma
from tests.support.cancel_points import Exploration, Outcome, explore, report
from tests.support.virtual_clock import VirtualClock

RUNS = 40


class YieldingBackend(FakeBackend):
    """The fake backend with an await in each call, as the real one has (network, store)."""

    async def open(self, connection_id: str, mode: TradingMode) -> EngineResources:
        await asyncio.sleep(0)
        return await super().open(connection_id, mode)

    async def close(self, connection_id: str, resources: EngineResources) -> None:
        await asyncio.sleep(0)
        await super().close(connection_id, resources)


@dataclass
class Rig:
    db: Database
    store: SqlEngineStore
    backend: YieldingBackend
    manager: EngineManager


@pytest_asyncio.fixture
async def rig(tmp_path: Path, store_url: str | None) -> AsyncIterator[Rig]:
    clock = VirtualClock()
    cids = [f"c{n}" for n in range(RUNS * 2 + 2)]
    markets = {c: ScriptedMarket(clock, {SYMBOL: SMA_CLOSES}) for c in cids}
    db = await Database.open(tmp_path, store_url)  # on SQLite, then on PostgreSQL
    store = SqlEngineStore(db)
    backend = YieldingBackend(markets)
    manager = EngineManager(store, backend, REGISTRY, clock=clock, heartbeat_s=30,
                            shutdown_grace_s=0.5)
    await manager.open()
    try:
        yield Rig(db, store, backend, manager)
    finally:
        await manager.close()
        await db.close()


async def agreement(rig: Rig, cid: str) -> list[str]:
    """What the store and the manager say about `cid`, once nothing is in flight."""
    await rig.manager.idle()
    records = {r.connection_id: r for r in await rig.store.load_engines()}
    try:
        shown = rig.manager.get(cid)
        state, engine_id = shown.state, shown.engine_id
    except NotFound:
        state, engine_id = None, None
    record = records.get(cid)
    desired = record.desired if record else None
    active = state in ACTIVE_STATES
    problems = []
    if (desired is DesiredState.RUNNING) != active:
        problems.append(f"{cid}: stored {desired}, engine {state}")
    if record is not None and engine_id is not None and record.engine_id != engine_id:
        problems.append(f"{cid}: stored engine {record.engine_id}, shown {engine_id}")
    backend = rig.backend
    open_clients = backend.opened.count((cid, TradingMode.PAPER)) - backend.closed.count(cid)
    if open_clients != int(active):
        problems.append(f"{cid}: {open_clients} clients open with the engine {state}")
    return problems


async def explored(rig: Rig, name: str, first: int) -> Exploration:
    """Start or stop on connection `c<first + run>`, cancelled at each await point in turn."""
    async def make(run: int) -> object:
        cid = f"c{first + run}"
        return await (rig.manager.start(cid, sma()) if name == "start" else
                      rig.manager.stop(cid))

    async def check(run: int, outcome: Outcome) -> list[str]:
        return await agreement(rig, f"c{first + run}")

    found = await explore(name, make, check, limit=RUNS)
    report(f"engine {name}", [found])
    return found


@pytest.mark.asyncio
async def test_start_cancelled_at_every_await_point(rig: Rig) -> None:
    found = await explored(rig, "start", 0)
    assert found.cancelled >= 1
    assert not found.problems


@pytest.mark.asyncio
async def test_stop_cancelled_at_every_await_point(rig: Rig) -> None:
    for run in range(RUNS + 1):
        await rig.manager.start(f"c{RUNS + 1 + run}", sma())
    found = await explored(rig, "stop", RUNS + 1)
    assert found.cancelled >= 1
    assert not found.problems


@pytest.mark.asyncio
async def test_a_start_and_a_stop_racing_on_one_connection_agree(rig: Rig) -> None:
    """Each start races a stop issued a few loop turns later; the two never interleave."""
    cid = "c0"
    await rig.manager.start(cid, sma())
    await rig.manager.stop(cid)
    problems = []
    for turns in range(10):
        start = asyncio.ensure_future(rig.manager.start(cid, sma()))
        for _ in range(turns):
            await asyncio.sleep(0)
        stop = asyncio.ensure_future(rig.manager.stop(cid))
        await asyncio.gather(start, stop, return_exceptions=True)
        problems += [f"after {turns} turns: {p}" for p in await agreement(rig, cid)]
        if rig.manager.get(cid).state is not EngineState.STOPPED:
            await rig.manager.stop(cid)
    assert not problems
