"""ListOrders and ListTrades page in the store by position, the SQL store and the tests'
in-memory one alike: pages stay exact while the engine keeps writing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ctsd.engine.orders import Execution, OrderStatus
from ctsd.engine.store_ports import EngineStore
from ctsd.store.database import Database
from ctsd.store.engines import SqlEngineStore
from tests.engine.fakes import MemoryStore
from tests.store.test_engines import fill, order

STORES: dict[str, Callable[[Database], EngineStore]] = {
    "sql": SqlEngineStore, "memory": lambda _db: MemoryStore()}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, db: Database) -> EngineStore:
    return STORES[request.param](db)


@pytest.mark.asyncio
async def test_orders_page_by_position_and_closing_one_shifts_nothing(store: EngineStore) -> None:
    for n in range(5):
        await store.save_execution("a", Execution(order(f"c{n}", OrderStatus.OPEN)))
    await store.save_execution("b", Execution(order("other", OrderStatus.OPEN)))
    first = await store.page_orders("a", open_only=True, after=0, limit=2)
    assert [o.client_order_id for o in first.items] == ["c0", "c1"]
    assert first.next_after is not None
    # c0 fills and c2 is updated while the client reads page one: neither moves
    await store.save_execution("a", Execution(order("c0", OrderStatus.FILLED, "0.5")))
    await store.save_execution("a", Execution(order("c2", OrderStatus.OPEN, "0.25")))
    second = await store.page_orders("a", open_only=True, after=first.next_after, limit=2)
    assert [o.client_order_id for o in second.items] == ["c2", "c3"]
    assert second.items[0].filled == order("c2", OrderStatus.OPEN, "0.25").filled
    assert second.next_after is not None
    last = await store.page_orders("a", open_only=True, after=second.next_after, limit=2)
    assert ([o.client_order_id for o in last.items], last.next_after) == (["c4"], None)
    every = await store.page_orders("a", open_only=False, after=0, limit=10)
    assert len(every.items) == 5 and every.next_after is None


@pytest.mark.asyncio
async def test_fills_page_by_position(store: EngineStore) -> None:
    await store.save_execution("a", Execution(order("c1", OrderStatus.OPEN, "0.25"),
                                              (fill("t1", "c1"), fill("t2", "c1"))))
    await store.save_execution("a", Execution(order("c1", OrderStatus.FILLED, "0.5"),
                                              (fill("t2", "c1"), fill("t3", "c1"))))
    first = await store.page_fills("a", after=0, limit=2)
    assert [f.trade_id for f in first.items] == ["t1", "t2"] and first.next_after is not None
    rest = await store.page_fills("a", after=first.next_after, limit=2)
    assert ([f.trade_id for f in rest.items], rest.next_after) == (["t3"], None)
    assert (await store.page_fills("nobody", after=0, limit=5)).items == ()
