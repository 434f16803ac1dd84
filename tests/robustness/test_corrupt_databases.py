"""A corpus of damaged databases: each one refused at start (exit 78, one line), or served
with the damaged rows quarantined -- never a traceback, never INTERNAL on a read.

One state dir is seeded in-process (connections with sealed secrets, a test result,
an engine with an order and a fill, a fleet member with a lease, a status, an order
written under the lease's fence and engine requests sent to it), then copied and damaged
once per case: a row whose enum, number, time, JSON or UTF-8 is invalid in every decoded
table (engine requests: a few here, where the audit must report each; every damage
in-process in tests/store/test_request_corpus.py), a table or column
dropped, the schema version moved, the file replaced by a directory, an empty file,
garbage in the header, the WAL or random pages. A daemon that serves must answer
every read with a deliberate code, and VerifyStartup and GetSystemStatus must name
the quarantined row. Quick form: the corpus and 3 random-page cases; `CTS_SOAK_ROUNDS`
random-page cases more in `make soak`.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from cts.v1 import connection_service_pb2 as cspb
from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as epb
from cts.v1 import engine_service_pb2_grpc as egrpc
from cts.v1 import fleet_service_pb2 as fpb
from cts.v1 import fleet_service_pb2_grpc as fgrpc
from cts.v1 import health_service_pb2 as hpb
from cts.v1 import health_service_pb2_grpc as hgrpc
from ctsd.engine.config import EngineConfig, TradingMode
from ctsd.engine.lease_ports import Fence
from ctsd.engine.orders import Execution, Fill, Order, OrderStatus
from ctsd.engine.perpetual import FundingPayment, PaymentKind
from ctsd.engine.status import EngineState, EngineStatus
from ctsd.engine.store_ports import DesiredState, EngineRecord
from ctsd.fleet.model import MemberInfo
from ctsd.store.connections import ConnectionRepository
from ctsd.store.database import Database
from ctsd.store.engine_statuses import SqlStatusStore
from ctsd.store.engines import SqlEngineStore
from ctsd.store.fleet import SqlFleetStore
from ctsd.store.migrations import SCHEMA_VERSION
from ctsd.store.sealed_secrets import SealedSecretRepository
from ctsd.strategies.model import OrderType, Side
from ctsd.vault.keyring_setup import open_keyring
from ctsd.vault.master_key import locate_key
from tests.robustness.tally import DELIBERATE, Tally, log_problems, soak_rounds
from tests.store.test_connection_index import conn
from tests.store.test_result_history import result
from tests.support.daemon_process import DaemonProcess, remove_tree, short_tempdir
from tests.support.damaged_requests import DAMAGE, PURGED, SQLITE_DAMAGE, seed_requests

pytestmark = pytest.mark.long

EX_CONFIG = 78
SEED = 5
CONNECTIONS = ("a", "b", "c")
MAX_INT = 9223372036854775807
"""A 64-bit integer column's largest value: a time no datetime holds."""
SEED_MEMBER = MemberInfo("seed-member", "unix:/run/seed.sock", "0.0.1", SCHEMA_VERSION)
Damage = Callable[[Path], None]


def sql(*statements: str) -> Damage:
    """Damage by SQL run straight on the file, constraints off (as a hand edit would)."""
    def damage(state: Path) -> None:
        db = sqlite3.connect(state / "ctsd.db", isolation_level=None)
        try:
            db.execute("PRAGMA ignore_check_constraints = ON")
            for statement in statements:
                db.execute(statement)
        finally:
            db.close()
    return damage


def replace_file(content: bytes | None) -> Damage:
    def damage(state: Path) -> None:
        (state / "ctsd.db").unlink()
        if content is None:
            (state / "ctsd.db").mkdir()
        else:
            (state / "ctsd.db").write_bytes(content)
    return damage


def overwrite(start: int, length: int | None, seed: int) -> Damage:
    def damage(state: Path) -> None:
        raw = bytearray((state / "ctsd.db").read_bytes())
        end = len(raw) if length is None else start + length
        raw[start:end] = random.Random(seed).randbytes(end - start)
        (state / "ctsd.db").write_bytes(bytes(raw))
    return damage


def garbage_wal(state: Path) -> None:
    (state / "ctsd.db-wal").write_bytes(random.Random(SEED).randbytes(8192))


def random_pages(seed: int) -> Damage:
    """A few random bytes somewhere past the header: what a bad sector or bit rot does."""
    def damage(state: Path) -> None:
        raw = bytearray((state / "ctsd.db").read_bytes())
        rng = random.Random(seed)
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(100, len(raw))
            raw[at] = rng.randrange(256)
        (state / "ctsd.db").write_bytes(bytes(raw))
    return damage


CORPUS: dict[str, Damage] = {
    "connection enum": sql("UPDATE connections SET api_type = 'bogus' WHERE id = 'a'"),
    "connection time": sql("UPDATE connections SET created_us = 'yesterday' WHERE id = 'b'"),
    "test result json": sql("UPDATE connection_tests SET result = '{not json'"),
    "test result enum": sql("UPDATE connection_tests SET result = '{\"status\": \"weird\"}'"),
    "engine config json": sql("UPDATE engines SET config = 'not json'"),
    "engine desired": sql("UPDATE engines SET desired = 'maybe'"),
    "order status": sql("UPDATE engine_orders SET status = 'lost'"),
    "order amount": sql("UPDATE engine_orders SET amount = 'lots'"),
    "fill side": sql("UPDATE engine_fills SET side = 'up'"),
    "payment kind": sql("UPDATE engine_funding SET kind = 'gift'"),
    "payment amount": sql("UPDATE engine_funding SET amount = 'some'"),
    "secret blob type": sql("UPDATE sealed_secrets SET blob = 'text' WHERE connection_id = 'c'"),
    "secret field": sql("UPDATE sealed_secrets SET field = 'nonsense' WHERE connection_id = 'b' "
                        "AND field = 'api_key'"),
    "secret key id": sql("UPDATE sealed_secrets SET key_id = 'ffffffffffffffff'"),
    "member heartbeat": sql("UPDATE fleet_members SET heartbeat_ms = 'soon'"),
    "member join time": sql(f"UPDATE fleet_members SET started_ms = {MAX_INT}"),
    "lease token": sql("UPDATE engine_leases SET token = 'many'"),
    "lease expiry": sql(f"UPDATE engine_leases SET expires_ms = -{MAX_INT}"),
    "status json": sql("UPDATE engine_statuses SET status = '{not json'"),
    "status shape": sql("UPDATE engine_statuses SET status = '{\"state\": \"dancing\"}'"),
    "order fence": sql("UPDATE engine_orders SET fence = 'stale'"),
    "name not UTF-8": sql("UPDATE connections SET display_name = CAST(X'41FF42' AS TEXT) "
                          "WHERE id = 'a'"),
    "status not UTF-8": sql("UPDATE engine_statuses SET status = CAST(X'7B22FF22' AS TEXT)"),
    "table dropped": sql("DROP TABLE engine_fills"),
    "fleet table dropped": sql("DROP TABLE engine_leases"),
    "column dropped": sql("ALTER TABLE connections DROP COLUMN account_uid"),
    "newer schema": sql("PRAGMA user_version = 999"),
    "older schema": sql("PRAGMA user_version = 0"),
    "path is a directory": replace_file(None),
    "empty file": replace_file(b""),
    "not a database": replace_file(b"SQLite format 2\x00" + b"x" * 5000),
    "header garbage": overwrite(0, 100, SEED),
    "schema page garbage": overwrite(100, 3996, SEED),
    "garbage WAL": garbage_wal,
    "requests table dropped": sql("DROP TABLE engine_requests"),
    **{f"request: {name}": sql(DAMAGE[name][1]) for name in (
        "request config json", "request state", "request time", "answer error kind")},
    "request: request not UTF-8": sql(SQLITE_DAMAGE["request not UTF-8"][1]),
}


async def seed(state: Path, url: str | None = None) -> None:
    """The seeded rows, in `state`'s SQLite file or the PostgreSQL database at `url` (the
    master key in `state` either way)."""
    db = await Database.open(state, url)
    try:
        keyring = await open_keyring(locate_key(state, None, env={}), SealedSecretRepository(db))
        repo = ConnectionRepository(db)
        for cid in CONNECTIONS:
            await repo.insert(conn(cid), "****", [
                keyring.seal(cid, f, f"{f}-of-{cid}-0123456789") for f in ("api_key",
                                                                        "api_secret")])
        await repo.record_test(["a"], result(1))
        store = SqlEngineStore(db)
        config = EngineConfig("grid", ("BTC/USDT",), {}, TradingMode.PAPER)
        await store.create_engine(EngineRecord("a", "e1", config, DesiredState.STOPPED, 3))
        order = Order("o1", "BTC/USDT", Side.BUY, OrderType.LIMIT, Decimal(1), Decimal(10),
                      "t", 1, OrderStatus.FILLED, Decimal(1), Decimal(10), Decimal(0), "x1",
                      "", 1, 2)
        fill = Fill("t1", "o1", "BTC/USDT", Side.BUY, Decimal(1), Decimal(10), Decimal(0),
                    "USDT", 2, False)
        await store.save_execution("a", Execution(replace(order), (fill,)))
        await store.save_funding("a", (
            FundingPayment("f1", "BTC/USDT", Decimal("-0.1"), "USDT", 3),
            FundingPayment("i1", "BTC/USDT", Decimal("-0.01"), "USDT", 4, PaymentKind.INTEREST)))
        await seed_fleet(db, store, replace(order, client_order_id="o2", exchange_order_id="x2"))
    finally:
        await db.close()


async def seed_fleet(db: Database, store: SqlEngineStore, order: Order) -> None:
    """A fleet member gone since (its heartbeat and lease long expired when a case runs),
    its lease of the stopped engine "a", the status it published, an order it wrote
    under that lease's fence, and engine requests sent to it (`damaged_requests`)."""
    fleet = SqlFleetStore(db)
    await fleet.renew(SEED_MEMBER, 1)
    token = await fleet.take("a", SEED_MEMBER.id, 60_000, running_only=False)
    assert token is not None
    await store.save_execution("a", Execution(order), Fence(SEED_MEMBER.id, token))
    await SqlStatusStore(db).save(SEED_MEMBER.id, [EngineStatus(
        "a", "e1", EngineState.STOPPED, TradingMode.PAPER, "grid", ("BTC/USDT",))])
    await seed_requests(db, SEED_MEMBER.id)


@pytest.fixture(scope="module")
def seeded() -> Iterator[Path]:
    root = short_tempdir()
    state = root / "state"
    state.mkdir(mode=0o700)
    asyncio.run(seed(state))
    try:
        yield state
    finally:
        remove_tree(root)


CALL_TIMEOUT_S = 30.0


def reads(address: str) -> list[tuple[str, grpc.StatusCode, str]]:
    """Every read RPC on the seeded data: (call, code, what it said)."""
    answers = []
    with grpc.insecure_channel(address) as channel:
        cs, es = csgrpc.ConnectionServiceStub(channel), egrpc.EngineServiceStub(channel)
        hs, fs = hgrpc.HealthServiceStub(channel), fgrpc.FleetServiceStub(channel)
        calls: list[tuple[str, Callable[..., object], object]] = [
            ("ListConnections", cs.ListConnections, cspb.ListConnectionsRequest()),
            ("GetSystemStatus", hs.GetSystemStatus, hpb.GetSystemStatusRequest()),
            ("GetConnectionsHealth", hs.GetConnectionsHealth,
             hpb.GetConnectionsHealthRequest()),
            ("VerifyStartup", hs.VerifyStartup, hpb.VerifyStartupRequest()),
            ("ListEngines", es.ListEngines, epb.ListEnginesRequest()),
            ("ListOrders", es.ListOrders, epb.ListOrdersRequest(parent="connections/a/engine")),
            ("ListTrades", es.ListTrades, epb.ListTradesRequest(parent="connections/a/engine")),
            ("GetFleet", fs.GetFleet, fpb.GetFleetRequest()),
            *((f"GetConnection {c}", cs.GetConnection,
               cspb.GetConnectionRequest(name=f"connections/{c}")) for c in CONNECTIONS),
        ]
        for name, method, request in calls:
            try:
                # A deadline on each: a hang is a finding (DEADLINE_EXCEEDED), not a stall.
                answer = method(request, timeout=CALL_TIMEOUT_S)
                answers.append((name, grpc.StatusCode.OK, str(answer)))
            except grpc.RpcError as exc:
                answers.append((name, exc.code(), str(exc.details())))
    return answers


AT_ONCE = 3
"""Cases judged at a time, each on a state dir and a daemon of its own: a case is a
start-up and a dozen reads, mostly waiting, so one after another the corpus took a
minute or two of a test worker."""


def case_daemon(seeded: Path, damage: Damage) -> Callable[[], DaemonProcess]:
    """Makes a daemon (not started) on a copy of `seeded` with `damage` done to it."""
    def make() -> DaemonProcess:
        root = short_tempdir()
        shutil.copytree(seeded, root / "state")
        damage(root / "state")
        return DaemonProcess(root)
    return make


def judge_all(tally: Tally, cases: Mapping[str, Callable[[], DaemonProcess]]) -> None:
    """Makes every case's daemon (one after another), judges them `AT_ONCE` at a time,
    and counts each in `tally` in the corpus' order; every root is removed after."""
    made: dict[str, DaemonProcess] = {}
    try:
        for name, make in cases.items():
            made[name] = make()
        with ThreadPoolExecutor(AT_ONCE) as pool:
            verdicts = {name: pool.submit(verdict, daemon) for name, daemon in made.items()}
        for name, found in verdicts.items():
            outcome, problems = found.result()
            tally.tried += 1
            if problems:
                tally.lost += 1
                tally.notes.append(f"{name}: {outcome}; {problems[:3]}")
            else:
                tally.survived += 1
                tally.notes.append(f"{name}: {outcome}")
    finally:
        for daemon in made.values():
            remove_tree(daemon.root)


def verdict(daemon: DaemonProcess) -> tuple[str, list[str]]:
    """Starts `daemon` on a damaged store: it must exit 78 with one line, or serve every
    read with a deliberate code. What it did, and the problems (none: it survived)."""
    try:
        daemon.start()
        code = None
    except (RuntimeError, TimeoutError):
        code = daemon.stop()
    logs = daemon.logs()
    lines = [line for line in logs.splitlines() if line.startswith("ctsd: ")]
    problems = log_problems(logs)
    if code is None:
        try:
            answers = reads(daemon.address)
        finally:  # even when the test's timeout lands here: no daemon outlives its case
            daemon.stop()
        problems += log_problems(daemon.logs())
        problems += [f"{call}: {c.name} {said[:120]}" for call, c, said in answers
                     if c not in DELIBERATE]
        said = " ".join(s for _, _, s in answers)
        return "served" + (", quarantine reported" if "quarantined" in said else ""), problems
    if code != EX_CONFIG or len(lines) != 1:
        problems.append(f"exit {code} with {len(lines)} ctsd: lines")
    return f"exit {code}: {lines[0][:90] if lines else 'no line'}", problems


@pytest.mark.timeout(300)  # 43 daemons started: about 60 s at load 7, over 120 s at 13
def test_every_damaged_database_is_refused_or_served_without_a_crash(seeded: Path) -> None:
    tally = Tally("corrupt databases: exit 78 or quarantine")
    cases = dict(CORPUS)
    extra = soak_rounds(0) * 2 if "CTS_SOAK_ROUNDS" in os.environ else 0
    for n in range(3 + extra):
        cases[f"random bytes #{n}"] = random_pages(SEED + n)
    judge_all(tally, {name: case_daemon(seeded, damage) for name, damage in cases.items()})
    tally.report()
    assert tally.lost == 0, [n for n in tally.notes if "[" in n]
    assert_requests_quarantined(tally)


def assert_requests_quarantined(tally: Tally) -> None:
    """A damaged request row is reported by the audit, not only survived (unless the
    daemon's scan purged it as a leftover first)."""
    unreported = [n for n in tally.notes if n.startswith("request: ")
                  and n.split(": ")[1] not in PURGED and "quarantine reported" not in n]
    assert not unreported, unreported


def test_a_damaged_row_is_named_by_verify_startup_and_status(seeded: Path) -> None:
    root = short_tempdir()
    try:
        shutil.copytree(seeded, root / "state")
        CORPUS["connection enum"](root / "state")
        daemon = DaemonProcess(root).start()
        answers = {call: said for call, _, said in reads(daemon.address)}
        daemon.stop()
    finally:
        remove_tree(root)
    assert "connections a" in answers["VerifyStartup"] and "quarantined" in answers[
        "VerifyStartup"]
    assert "quarantined" in answers["GetSystemStatus"]
    assert "connections/b" in answers["ListConnections"]
