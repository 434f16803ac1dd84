"""Every repository write, cancelled at each of its await points in turn.

After each run, whatever point the cancellation hit: the next write works (the writer
is not left inside a transaction), and the in-memory read model equals a read model
rebuilt from the database (a committed write is visible, an uncommitted one is not).
For the tables without a read model, the rows are either the state before the write
or the state after it, never a part of it: the engines' tables, and the fleet's (members
registering, heartbeating, draining and leaving; leases taken, adopted, renewed and
released; engine statuses; engine writes under a lease's fence, a stale fence refused).
The fleet's engine requests (migration 9) have their own explorer, which also checks
their notices and the member's scan: tests/store/test_request_cancellation.py.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import pytest

from ctsd.connections.model import Connection, CredentialField, CredentialsInfo
from ctsd.engine.config import EngineConfig, TradingMode
from ctsd.engine.lease_ports import Fence
from ctsd.engine.orders import Execution, Fill, Order, OrderStatus
from ctsd.engine.perpetual import FundingPayment, PaymentKind
from ctsd.engine.status import EngineState, EngineStatus
from ctsd.engine.store_ports import DesiredState, EngineRecord
from ctsd.errors import LeaseLost
from ctsd.fleet.model import MemberInfo
from ctsd.store.connections import ConnectionRepository
from ctsd.store.database import Database
from ctsd.store.engine_statuses import SqlStatusStore
from ctsd.store.engines import SqlEngineStore
from ctsd.store.fleet import SqlFleetStore
from ctsd.store.migrations import SCHEMA_VERSION
from ctsd.store.sealed_secrets import SealedSecretRepository
from ctsd.strategies.model import OrderType, Side
from ctsd.vault.ports import StoredBlob
from ctsd.vault.sealer import SealedSecret
from tests.store.test_connection_index import conn as bare_conn
from tests.store.test_result_history import result
from tests.support.cancel_points import Exploration, Outcome, explore, report

PROBES = itertools.count()
CONFIG = EngineConfig("grid", ("BTC/USDT",), {}, TradingMode.PAPER, 1.0)


def conn(cid: str) -> Connection:
    """A connection whose credential flags match the one secret the tests store with it."""
    return replace(bare_conn(cid), credentials=CredentialsInfo(api_key_set=True,
                                                               api_key_hint="****"))


def secret(field: CredentialField, cid: str) -> SealedSecret:
    return SealedSecret(field.value, b"\x01" * 8, f"sealed-{field.value}-{cid}".encode())


async def consistent(db: Database, repo: ConnectionRepository, run: int) -> list[str]:
    """The next write works, and the read model equals one rebuilt from the rows."""
    problems: list[str] = []
    try:
        await repo.insert(bare_conn(f"probe-{next(PROBES)}"), "", [])
    except Exception as exc:
        problems.append(f"the next write failed: {type(exc).__name__}: {exc}")
    fresh = await ConnectionRepository(db).all()
    served = await repo.all()
    if fresh != served:
        only_db = {c.id for c in fresh} ^ {c.id for c in served}
        changed = [c.id for c in served if c.id not in only_db and c not in fresh]
        problems.append(f"read model differs from the rows: in one only {sorted(only_db)}, "
                        f"different {changed}")
    return problems


ConnectionWrite = Callable[[ConnectionRepository, str], Coroutine[Any, Any, Any]]


async def explore_connections(db: Database, name: str, prepare: ConnectionWrite | None,
                              write: ConnectionWrite) -> Exploration:
    """Runs `write` on connection `<name>-<run>`, made by `prepare` before each run."""
    repo = ConnectionRepository(db)

    async def make(run: int) -> Any:
        return await write(repo, f"{name}-{run}")

    async def check(run: int, outcome: Outcome) -> list[str]:
        problems = await consistent(db, repo, run)
        if outcome.error is not None:
            problems.append(f"error {type(outcome.error).__name__}: {outcome.error}")
        if prepare is not None:
            await prepare(repo, f"{name}-{run + 1}")  # the next run's row
        return problems

    if prepare is not None:
        await prepare(repo, f"{name}-0")
    return await explore(name, make, check)


async def insert(repo: ConnectionRepository, cid: str) -> None:
    await repo.insert(conn(cid), "****", [secret(CredentialField.API_KEY, cid)])


async def update(repo: ConnectionRepository, cid: str) -> Any:
    current = await repo.get(cid)
    changed = replace(current, display_name=f"renamed {cid}", revision=current.revision + 1,
                      credentials=CredentialsInfo(api_secret_set=True))
    return await repo.replace(changed, "", current.revision,
                              [secret(CredentialField.API_SECRET, cid)],
                              [CredentialField.API_KEY])


async def record_test(repo: ConnectionRepository, cid: str) -> Any:
    return await repo.record_test([cid], replace(result(1), account_uid=f"u-{cid}"))


async def delete(repo: ConnectionRepository, cid: str) -> None:
    await repo.delete(cid, 1)


@pytest.mark.asyncio
async def test_connection_writes_cancelled_at_every_await_point(db: Database) -> None:
    found = [
        await explore_connections(db, "insert", None, insert),
        await explore_connections(db, "replace", insert, update),
        await explore_connections(db, "record_test", insert, record_test),
        await explore_connections(db, "delete", insert, delete),
    ]
    report("repository writes", found)
    assert all(one.points >= 1 for one in found)
    assert not [p for one in found for p in one.problems]


def order(cid: str, status: OrderStatus) -> Order:
    return Order(cid, "BTC/USDT", Side.BUY, OrderType.LIMIT, Decimal("0.5"), Decimal("100"),
                 "t", 1, status, Decimal("0.5") if status is OrderStatus.FILLED else Decimal(0),
                 None, Decimal(0), "", "", 1, 2)


async def engine_rows(db: Database) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for table in ("engines", "engine_orders", "engine_fills", "engine_funding"):
        rows += [(table, *r) for r in await db.fetch_all(f"SELECT * FROM {table} ORDER BY 1")]
    return [tuple(v for v in row if not (isinstance(v, int) and v > 10**15)) for row in rows]


EngineWrite = Callable[[SqlEngineStore, int], Coroutine[Any, Any, Any]]


async def create_engine(store: SqlEngineStore, run: int) -> None:
    await store.create_engine(EngineRecord(f"e-{run}", f"id{run}", CONFIG, DesiredState.RUNNING))


async def set_desired(store: SqlEngineStore, run: int) -> None:
    await store.set_desired("e-0", DesiredState.STOPPED, f"stop {run}")


async def save_cycle(store: SqlEngineStore, run: int) -> None:
    await store.save_cycle("e-0", run + 10)


async def save_execution(store: SqlEngineStore, run: int) -> None:
    fills = (Fill(f"t{run}", f"o{run}", "BTC/USDT", Side.BUY, Decimal("0.5"), Decimal("100"),
                  Decimal("0.01"), "USDT", 3, False),)
    await store.save_execution("e-0", Execution(order(f"o{run}", OrderStatus.FILLED), fills))


async def save_funding(store: SqlEngineStore, run: int) -> None:
    await store.save_funding("e-0", (
        FundingPayment(f"f{run}", "BTC/USDT", Decimal("-0.1"), "USDT", 3),
        FundingPayment(f"i{run}", "BTC/USDT", Decimal("-0.01"), "USDT", 4, PaymentKind.INTEREST)))


async def save_pending(store: SqlEngineStore, run: int) -> None:
    """The write ahead of a placement: the order and the engine's cycle, both or neither."""
    pending = replace(order(f"p{run}", OrderStatus.PENDING), cycle=run + 20)
    await store.save_execution("e-0", Execution(pending))


async def explore_engine_store(db: Database, name: str, write: EngineWrite) -> Exploration:
    store = SqlEngineStore(db)
    before: list[list[tuple[Any, ...]]] = [await engine_rows(db)]

    async def check(run: int, outcome: Outcome) -> list[str]:
        problems: list[str] = []
        try:
            await store.save_cycle("probe", run)  # the next write works (and orders the reads)
        except Exception as exc:
            problems.append(f"the next write failed: {type(exc).__name__}: {exc}")
        now = await engine_rows(db)
        if outcome.error is not None:
            problems.append(f"error {type(outcome.error).__name__}: {outcome.error}")
        after_clean = await _rows_after(db, write, run)
        if now not in (before[0], after_clean):
            problems.append("the rows are neither before nor after the write")
        before[0] = after_clean if now == after_clean else now
        return problems

    await create_engine(store, 0)
    before[0] = await engine_rows(db)
    return await explore(name, functools.partial(_call, write, store), check)


async def _call(write: EngineWrite, store: SqlEngineStore, run: int) -> Any:
    return await write(store, run)


async def _rows_after(db: Database, write: EngineWrite, run: int) -> list[tuple[Any, ...]]:
    """The rows as the write leaves them: re-applying it is idempotent for every write here."""
    await write(SqlEngineStore(db), run)
    return await engine_rows(db)


@pytest.mark.asyncio
async def test_engine_store_writes_cancelled_at_every_await_point(db: Database) -> None:
    found = [await explore_engine_store(db, name, write) for name, write in (
        ("create_engine", create_engine), ("set_desired", set_desired),
        ("save_cycle", save_cycle), ("save_execution", save_execution),
        ("save_funding", save_funding), ("save_pending", save_pending))]
    report("repository writes", found)
    assert not [p for one in found for p in one.problems]


@pytest.mark.asyncio
async def test_reseal_cancelled_at_every_await_point(db: Database) -> None:
    repo = ConnectionRepository(db)
    secrets = SealedSecretRepository(db)
    for n in range(3):
        await insert(repo, f"s-{n}")

    async def make(run: int) -> int:
        def reseal(stored: StoredBlob) -> tuple[str, bytes]:
            return f"{run:016x}", stored.blob + b"!"

        return await secrets.reseal_all(reseal)

    async def check(run: int, outcome: Outcome) -> list[str]:
        problems = []
        await repo.insert(bare_conn(f"x-{run}"), "", [])  # orders the read after the write
        ids = await secrets.key_ids()
        if len(ids) != 1:
            problems.append(f"blobs under {len(ids)} key ids: a half-applied re-seal")
        return problems + await consistent(db, repo, run)

    found = await explore("reseal_all", make, check)
    report("repository writes", [found])
    assert not found.problems


# --- the fleet's writes: members, leases, statuses, fenced engine writes ---------------------

MEMBER = MemberInfo("m", "unix:/run/m.sock", "0.1.0", SCHEMA_VERSION)
TTL_MS = 60_000
FLEET_TABLES = (
    ("fleet_members", "id, address, version, schema_version, draining"),
    ("engine_leases", "connection_id, owner, token, CASE WHEN expires_ms > 0 THEN 1 ELSE 0 END"),
    ("engine_statuses", "connection_id, owner, status, version"),
    ("engine_orders", "connection_id, client_order_id, status, fence"),
    ("engines", "connection_id, desired, cycle"),
)
"""What a fleet write changes, without the clocks (heartbeats and expiries move on)."""


@dataclass(frozen=True)
class Fleet:
    leases: SqlFleetStore
    engines: SqlEngineStore
    statuses: SqlStatusStore


FleetStep = Callable[[Fleet, int], Coroutine[Any, Any, Any]]


@dataclass(frozen=True)
class FleetWrite:
    name: str
    write: FleetStep
    prepare: FleetStep | None = None
    """Makes run `run`'s rows (a lease to release, a member to drain) before it."""
    adds: Callable[[int], list[tuple[Any, ...]]] | None = None
    """The rows a clean run adds, for a write that is not idempotent (a take's token
    grows); others are applied once more to see the rows after them."""
    refused: type[Exception] | None = None
    """The write's deliberate answer, which leaves the rows as they were."""


async def fleet_rows(db: Database) -> Counter[tuple[Any, ...]]:
    rows: Counter[tuple[Any, ...]] = Counter()
    for table, columns in FLEET_TABLES:
        rows.update((table, *r) for r in await db.fetch_all(f"SELECT {columns} FROM {table}"))
    return rows


def member(name: str) -> MemberInfo:
    return replace(MEMBER, id=name)


async def engine_with_lease(fleet: Fleet, cid: str, takes: int = 1) -> None:
    await fleet.engines.create_engine(EngineRecord(cid, f"id-{cid}", CONFIG,
                                                   DesiredState.RUNNING))
    for _ in range(takes):
        await fleet.leases.take(cid, MEMBER.id, TTL_MS, running_only=False)


async def pending_order(fleet: Fleet, cid: str, token: int) -> None:
    pending = replace(order(f"o-{cid}", OrderStatus.PENDING), cycle=5)
    await fleet.engines.save_execution(cid, Execution(pending), Fence(MEMBER.id, token))


def status(cid: str) -> EngineStatus:
    return replace(EngineStatus(cid, f"id-{cid}", EngineState.RUNNING, TradingMode.PAPER,
                                "grid", ("BTC/USDT",)), version=3)


def taken(cid: str) -> list[tuple[Any, ...]]:
    return [("engine_leases", cid, MEMBER.id, 1, 1)]


FLEET_WRITES = (
    FleetWrite("register", lambda f, run: f.leases.renew(member(f"m-{run}"), TTL_MS)),
    FleetWrite("heartbeat", lambda f, run: f.leases.renew(MEMBER, TTL_MS),
               prepare=lambda f, run: engine_with_lease(f, f"h-{run}")),
    FleetWrite("take", lambda f, run: f.leases.take(f"t-{run}", MEMBER.id, TTL_MS,
                                                    running_only=False),
               adds=lambda run: taken(f"t-{run}")),
    FleetWrite("adopt", lambda f, run: f.leases.take(f"a-{run}", MEMBER.id, TTL_MS,
                                                     running_only=True),
               prepare=lambda f, run: f.engines.create_engine(EngineRecord(
                   f"a-{run}", "id", CONFIG, DesiredState.RUNNING)),
               adds=lambda run: taken(f"a-{run}")),
    FleetWrite("release", lambda f, run: f.leases.release(f"r-{run}", Fence(MEMBER.id, 1)),
               prepare=lambda f, run: engine_with_lease(f, f"r-{run}")),
    FleetWrite("leave", lambda f, run: f.leases.leave(f"l-{run}"),
               prepare=lambda f, run: f.leases.renew(member(f"l-{run}"), TTL_MS)),
    FleetWrite("set_draining", lambda f, run: f.leases.set_draining(f"d-{run}", True),
               prepare=lambda f, run: f.leases.renew(member(f"d-{run}"), TTL_MS)),
    FleetWrite("save_status", lambda f, run: f.statuses.save(MEMBER.id, [status(f"s-{run}")])),
    FleetWrite("fenced_pending", lambda f, run: pending_order(f, f"f-{run}", 1),
               prepare=lambda f, run: engine_with_lease(f, f"f-{run}")),
    FleetWrite("fenced_set_desired", lambda f, run: f.engines.set_desired(
        f"g-{run}", DesiredState.STOPPED, "", Fence(MEMBER.id, 1)),
               prepare=lambda f, run: engine_with_lease(f, f"g-{run}")),
    FleetWrite("stale_fence", lambda f, run: pending_order(f, f"x-{run}", 1),
               prepare=lambda f, run: engine_with_lease(f, f"x-{run}", takes=2),
               refused=LeaseLost),
)


async def explore_fleet_write(db: Database, fleet: Fleet, spec: FleetWrite) -> Exploration:
    """Rows before or after the write, never a part of it; the next write works."""
    if spec.prepare is not None:
        await spec.prepare(fleet, 0)
    before = [await fleet_rows(db)]

    async def check(run: int, outcome: Outcome) -> list[str]:
        problems: list[str] = []
        try:
            await fleet.leases.set_draining("nobody", False)  # the next write works
        except Exception as exc:
            problems.append(f"the next write failed: {type(exc).__name__}: {exc}")
        error = outcome.error
        if error is not None and not (spec.refused and isinstance(error, spec.refused)):
            problems.append(f"error {type(error).__name__}: {error}")
        now = await fleet_rows(db)
        if spec.adds is not None:
            after = before[0] + Counter(spec.adds(run))
        else:
            with contextlib.suppress(*(spec.refused,) if spec.refused else ()):
                await spec.write(fleet, run)  # idempotent: the rows as a clean run leaves them
            after = await fleet_rows(db)
        if now not in (before[0], after):
            problems.append(f"the rows are neither before nor after the write: "
                            f"{sorted(map(str, (now - before[0]) + (before[0] - now)))}")
        if spec.prepare is not None:
            await spec.prepare(fleet, run + 1)
        before[0] = await fleet_rows(db)
        return problems

    return await explore(spec.name, functools.partial(spec.write, fleet), check)


@pytest.mark.asyncio
async def test_fleet_writes_cancelled_at_every_await_point(db: Database) -> None:
    fleet = Fleet(SqlFleetStore(db), SqlEngineStore(db), SqlStatusStore(db))
    await fleet.leases.renew(MEMBER, TTL_MS)
    found = [await explore_fleet_write(db, fleet, spec) for spec in FLEET_WRITES]
    report("fleet writes", found)
    assert all(one.points >= 1 for one in found)
    assert not [p for one in found for p in one.problems]
