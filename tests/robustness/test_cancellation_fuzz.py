"""Every write RPC and engine action, cancelled at random points over a real socket.

Worker threads call CreateConnection, UpdateConnection, SetConnectionEnabled,
DeleteConnection, TestConnection, StartEngine and StopEngine on a small pool of
connection ids, most with a deadline spread over 0-20 ms, some through a channel
closed 0-20 ms into the call (a client that disconnects), a few left to finish; two
busy-looping processes keep both cores loaded meanwhile (the race of a cancel and a
write waiting for `BEGIN IMMEDIATE` is narrow on an idle machine). Afterwards:

- every answer was a deliberate code (DEADLINE_EXCEEDED and CANCELLED are the
  client's own), and the log holds no unhandled error;
- every connection the API lists agrees with its row field by field (name, enabled,
  revision, key hint, stored credentials, last test), and no row is missing from it;
- every engine agrees with its row (RUNNING stored ⇔ running, same engine id); after
  the engines are stopped, every order and fill ListOrders/ListTrades show is its row;
- writes still succeed: a connection is created, changed, disabled and deleted, an
  engine started and stopped. (A test may wait for rate-limit budget the storm's
  tests and engines used up: that is the limiter at work, so none is run here.)

The deterministic half (a cancel at every await point of each write) is
`tests/store/test_write_cancellation.py` and its kin. Quick form: 1,200 calls;
`CTS_SOAK_ROUNDS=20` in `make soak`: 12,000.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from cts.v1 import connection_pb2 as cpb
from cts.v1 import connection_service_pb2 as cspb
from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from tests.api.test_engine_service import paper_config
from tests.robustness.tally import DELIBERATE, Tally, log_problems
from tests.support.conn_tests import SECRET_PREFIX
from tests.support.daemon_process import DaemonProcess, configured_daemon
from tests.support.simulator import SimulatorThread, running_simulator

pytestmark = pytest.mark.long

SEED = 13
WORKERS = 4
IDS = 24
CLIENT_SIDE = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED})
SETTLED_STATES = frozenset({pb.ENGINE_STATE_RUNNING, pb.ENGINE_STATE_STOPPED,
                            pb.ENGINE_STATE_FAILED})
BURN = "import os\nos.nice(5)\nwhile True:\n    pass\n"


def calls_to_make() -> int:
    rounds = os.environ.get("CTS_SOAK_ROUNDS")
    return 600 * int(rounds) if rounds else 1200


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with running_simulator() as simulator:
        yield simulator


@pytest.fixture
def daemon(sim: SimulatorThread) -> Iterator[DaemonProcess]:
    tables = "".join(f'[exchanges.{x}]\nendpoint = "{sim.base_url}"\n' for x in ("binance",))
    with configured_daemon(f"[batch]\nitem_timeout_s = 5\n{tables}") as started:
        yield started


def key_of(cid: str) -> str:
    return f"key-{cid}-00000000"


class Storm:
    """The calls of one worker thread: random ops on the shared pool of ids."""

    def __init__(self, address: str, sim: SimulatorThread, seed: int) -> None:
        self.address = address
        self.sim = sim
        self.rng = random.Random(seed)
        self.codes: Counter[str] = Counter()
        self.bad: list[str] = []

    def deadline(self) -> float:
        return 2.0 if self.rng.random() < 0.1 else self.rng.uniform(0.0005, 0.020)

    def request(self, cid: str) -> tuple[str, Callable[[Any], Any], Any]:
        """(method, stub method getter, request) of one random op on `cid`."""
        name = f"connections/{cid}"
        op = self.rng.choice(["create", "create", "update", "enable", "disable", "delete",
                              "test", "start", "start", "stop"])
        if op == "create":
            made = cpb.Connection(
                display_name=f"fz {cid}", exchange="binance", api_type=cpb.API_TYPE_SPOT,
                enabled=True, credentials=cpb.Credentials(api_key=key_of(cid),
                                                          api_secret=SECRET_PREFIX + cid))
            return "CreateConnection", lambda s: s.CreateConnection, cspb.CreateConnectionRequest(
                connection_id=cid, connection=made)
        if op == "update":
            return "UpdateConnection", lambda s: s.UpdateConnection, cspb.UpdateConnectionRequest(
                connection=cpb.Connection(name=name,
                                          display_name=f"fz {cid} {self.rng.randrange(99)}"),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]))
        if op in ("enable", "disable"):
            return "SetConnectionEnabled", lambda s: s.SetConnectionEnabled, (
                cspb.SetConnectionEnabledRequest(name=name, enabled=op == "enable"))
        if op == "delete":
            return "DeleteConnection", lambda s: s.DeleteConnection, cspb.DeleteConnectionRequest(
                name=name)
        if op == "test":
            return "TestConnection", lambda s: s.TestConnection, cspb.TestConnectionRequest(
                name=name)
        if op == "start":
            return "StartEngine", lambda s: s.StartEngine, pb.StartEngineRequest(
                name=f"{name}/engine", config=paper_config())
        return "StopEngine", lambda s: s.StopEngine, pb.StopEngineRequest(name=f"{name}/engine")

    def one(self, channel: grpc.Channel) -> None:
        cid = f"fz{self.rng.randrange(IDS)}"
        method, pick, request = self.request(cid)
        service = sgrpc.EngineServiceStub if "Engine" in method else csgrpc.ConnectionServiceStub
        if self.rng.random() < 0.15:  # a client that goes away mid-call
            with grpc.insecure_channel(self.address) as own:
                call = pick(service(own))
                future = (call(request, timeout=5) if method == "TestConnection"
                          else call.future(request, timeout=5))
                time.sleep(self.rng.uniform(0, 0.02))  # when it goes away: the point
            self.note(method, grpc.StatusCode.CANCELLED, future)
            return
        try:
            answer = pick(service(channel))(request, timeout=self.deadline())
            if method == "TestConnection":
                for _ in answer:
                    pass
            self.codes[f"{method} OK"] += 1
        except grpc.RpcError as exc:
            self.note(method, exc.code(), exc)

    def note(self, method: str, code: grpc.StatusCode, detail: object) -> None:
        self.codes[f"{method} {code.name}"] += 1
        if code not in DELIBERATE | CLIENT_SIDE:
            self.bad.append(f"{method}: {code.name} {str(detail)[:200]}")

    def run(self, calls: int) -> None:
        with grpc.insecure_channel(self.address) as channel:
            for _ in range(calls):
                self.one(channel)


def rows(state_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{state_dir / 'ctsd.db'}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def connections_agree(stub: csgrpc.ConnectionServiceStub, state_dir: Path) -> list[str]:
    listed = {c.name.removeprefix("connections/"): c for c in stub.ListConnections(
        cspb.ListConnectionsRequest(page_size=1000), timeout=10).connections}
    stored = {r[0]: r for r in rows(state_dir, (
        "SELECT id, display_name, enabled, revision, api_key_hint, "
        "(SELECT group_concat(field) FROM (SELECT field FROM sealed_secrets s "
        " WHERE s.connection_id = c.id ORDER BY field)), "
        "(SELECT status || ' ' || started_us FROM connection_tests t WHERE t.connection_id = c.id "
        " ORDER BY seq DESC LIMIT 1) FROM connections c"))}
    problems = [f"{cid}: listed, no row" for cid in listed.keys() - stored.keys()]
    problems += [f"{cid}: row, not listed" for cid in stored.keys() - listed.keys()]
    for cid in listed.keys() & stored.keys():
        shown, row = listed[cid], stored[cid]
        info = shown.credentials_info
        fields = ",".join(f for f, on in (("api_key", info.api_key_set),
                                          ("api_secret", info.api_secret_set),
                                          ("passphrase", info.passphrase_set)) if on)
        test = shown.last_test
        last = (f"{cpb.TestStatus.Name(test.status).removeprefix('TEST_STATUS_').lower()} "
                f"{test.start_time.seconds * 1_000_000 + test.start_time.nanos // 1000}"
                if shown.HasField("last_test") else None)
        seen = (shown.display_name, int(shown.enabled), info.api_key_hint, fields, last)
        kept = (row[1], row[2], row[4], row[5] or "", row[6])
        if seen != kept:
            problems.append(f"{cid}: API {seen} != row {kept}")
    return problems


def settled_engines(stub: sgrpc.EngineServiceStub) -> list[pb.Engine]:
    deadline = time.monotonic() + 20
    while True:
        engines = list(stub.ListEngines(pb.ListEnginesRequest(), timeout=10).engines)
        if all(e.state in SETTLED_STATES for e in engines) or time.monotonic() > deadline:
            return engines
        time.sleep(0.1)


def engines_agree(stub: sgrpc.EngineServiceStub, state_dir: Path) -> list[str]:
    shown = {e.name.split("/")[1]: e for e in settled_engines(stub)}
    stored = {r[0]: r for r in rows(state_dir, "SELECT connection_id, engine_id, desired "
                                               "FROM engines")}
    problems = [f"engine {cid}: row, not shown" for cid in stored.keys() - shown.keys()]
    for cid, engine in shown.items():
        row = stored.get(cid)
        if row is None:
            problems.append(f"engine {cid}: shown, no row")
            continue
        running = engine.state == pb.ENGINE_STATE_RUNNING
        if (row[2] == "running") != running or row[1] != engine.engine_id:
            problems.append(f"engine {cid}: {pb.EngineState.Name(engine.state)} "
                            f"{engine.engine_id} vs row {row[2]} {row[1]}")
    return problems


def trades_agree(stub: sgrpc.EngineServiceStub, state_dir: Path) -> list[str]:
    """Once every engine is stopped: each order and fill the API shows is its row."""
    problems = []
    for engine in stub.ListEngines(pb.ListEnginesRequest(), timeout=10).engines:
        if engine.state != pb.ENGINE_STATE_STOPPED:
            try:
                stub.StopEngine(pb.StopEngineRequest(name=engine.name), timeout=30)
            except grpc.RpcError as exc:
                problems.append(f"StopEngine {engine.name} after the storm: "
                                f"{exc.code().name} {exc.details()}")
    for engine in stub.ListEngines(pb.ListEnginesRequest(), timeout=10).engines:
        cid = engine.name.split("/")[1]
        orders = {o.client_order_id: pb.OrderStatus.Name(o.status) for o in stub.ListOrders(
            pb.ListOrdersRequest(parent=engine.name, page_size=1000), timeout=10).orders}
        kept = {r[0]: f"ORDER_STATUS_{r[1].upper()}" for r in rows(
            state_dir, f"SELECT client_order_id, status FROM engine_orders "
                       f"WHERE connection_id = '{cid}'")}
        fills = {t.trade_id for t in stub.ListTrades(pb.ListTradesRequest(
            parent=engine.name, page_size=1000), timeout=10).trades}
        kept_fills = {r[0] for r in rows(state_dir, "SELECT trade_id FROM engine_fills "
                                                    f"WHERE connection_id = '{cid}'")}
        if orders != kept or fills != kept_fills:
            problems.append(f"engine {cid}: orders/fills differ from their rows")
    return problems


def writes_still_work(address: str, sim: SimulatorThread) -> list[str]:
    with grpc.insecure_channel(address) as channel:
        cs, es = csgrpc.ConnectionServiceStub(channel), sgrpc.EngineServiceStub(channel)
        try:
            cid = "after-storm"
            sim.provision(key_of(cid), SECRET_PREFIX + cid)
            cs.CreateConnection(cspb.CreateConnectionRequest(connection_id=cid, connection=(
                cpb.Connection(display_name="after", exchange="binance", enabled=True,
                               api_type=cpb.API_TYPE_SPOT, credentials=cpb.Credentials(
                                   api_key=key_of(cid), api_secret=SECRET_PREFIX + cid)))),
                timeout=10)
            cs.UpdateConnection(cspb.UpdateConnectionRequest(
                connection=cpb.Connection(name=f"connections/{cid}", display_name="after 2"),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"])), timeout=10)
            es.StartEngine(pb.StartEngineRequest(name=f"connections/{cid}/engine",
                                                 config=paper_config()), timeout=30)
            es.StopEngine(pb.StopEngineRequest(name=f"connections/{cid}/engine"), timeout=30)
            cs.SetConnectionEnabled(cspb.SetConnectionEnabledRequest(
                name=f"connections/{cid}", enabled=False), timeout=10)
            cs.DeleteConnection(cspb.DeleteConnectionRequest(name=f"connections/{cid}"),
                                timeout=10)
        except grpc.RpcError as exc:
            return [f"a write after the storm failed: {exc.code().name} {exc.details()}"]
    return []


def test_random_cancellations_leave_api_and_database_in_agreement(
        sim: SimulatorThread, daemon: DaemonProcess) -> None:
    for n in range(IDS):
        sim.provision(key_of(f"fz{n}"), SECRET_PREFIX + f"fz{n}")
    total = calls_to_make()
    storms = [Storm(daemon.address, sim, SEED + n) for n in range(WORKERS)]
    burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(2)]
    started = time.monotonic()
    try:
        threads = [threading.Thread(target=s.run, args=(total // WORKERS,)) for s in storms]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    elapsed = time.monotonic() - started
    tally = Tally("cancellation fuzz over gRPC")
    codes: Counter[str] = sum((s.codes for s in storms), Counter())
    problems = [p for s in storms for p in s.bad]
    with grpc.insecure_channel(daemon.address) as channel:
        problems += connections_agree(csgrpc.ConnectionServiceStub(channel), daemon.state_dir)
        problems += engines_agree(sgrpc.EngineServiceStub(channel), daemon.state_dir)
        problems += trades_agree(sgrpc.EngineServiceStub(channel), daemon.state_dir)
    problems += writes_still_work(daemon.address, sim)
    problems += log_problems(daemon.logs())
    tally.tried = sum(codes.values())
    tally.lost = len(problems)
    tally.survived = tally.tried - min(tally.lost, tally.tried)
    outcomes = Counter(k.split()[1] for k in codes.elements())
    tally.notes = [f"{tally.tried} calls in {elapsed:.0f}s, 4 workers, 2 busy cores: "
                   + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())), *problems[:8]]
    tally.report()
    if problems and os.environ.get("CTS_FUZZ_KEEP_LOG"):
        Path(os.environ["CTS_FUZZ_KEEP_LOG"]).write_text(daemon.logs())
    assert not problems, problems[:10]
