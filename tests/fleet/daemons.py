"""Real daemons in a fleet: several `ctsd` processes on one PostgreSQL database, trading
LIVE grids on the simulator's Bybit (per-second limits: an adopted engine cycles at once).

Every daemon has its own state dir with the same master key (the first one made it):
the connections' sealed secrets live in the shared database and each daemon must open
them. The connections are created and tested through the first daemon before the
others start.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path

import grpc
import psycopg

from cts.v1 import connection_pb2 as cpb
from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from cts.v1 import fleet_service_pb2 as fpb
from cts.v1 import fleet_service_pb2_grpc as fgrpc
from tests.robustness.test_engine_crash_durability import (
    EngineWorker,
    check_orders,
    grid_config,
    reconciled,
    swing_price,
)
from tests.support.conn_tests import run_test, sim_connection
from tests.support.daemon_process import DaemonProcess, short_tempdir
from tests.support.pg_databases import PgDatabases
from tests.support.sim_fixtures import warm_up
from tests.support.simulator import SimulatorThread

SYMBOL = "BTC/USDT"
VENUE = "bybit"
TTL_S = 10.0
KEY_NAME = "master-key"


def fleet_toml(url: str, sim: SimulatorThread, ttl_s: float) -> str:
    return (f'[store]\nurl = "{url}"\n[fleet]\nengine_lease_ttl_s = {ttl_s}\n'
            f'[batch]\nitem_timeout_s = 3\n[exchanges.{VENUE}]\nendpoint = "{sim.base_url}"\n')


@dataclass
class Fleet:
    sim: SimulatorThread
    url: str
    ttl_s: float
    daemons: list[DaemonProcess] = field(default_factory=list)
    workers: list[EngineWorker] = field(default_factory=list)
    gone: list[DaemonProcess] = field(default_factory=list)
    key: Path | None = None
    """The master key the first daemon made; every later one starts with a copy."""

    def add(self) -> DaemonProcess:
        root = short_tempdir()
        state = root / "state"
        if self.key is not None:  # the fleet's master key, before the daemon makes its own
            state.mkdir(mode=0o700)
            shutil.copy2(self.key, state / KEY_NAME)
            (state / KEY_NAME).chmod(0o600)
        config = root / "ctsd.toml"
        config.write_text(fleet_toml(self.url, self.sim, self.ttl_s))
        daemon = DaemonProcess(root, ["--config", str(config)])
        self.daemons.append(daemon)
        warm_up(daemon.start(timeout=60))
        if self.key is None:
            self.key = daemon.state_dir / KEY_NAME
        return daemon

    def connections(self, count: int, prefix: str) -> None:
        """`count` tested connections, each with a LIVE grid centred on the price now."""
        reference = Decimal(self.sim.admin("GET", f"price?symbol={SYMBOL}")["price"])
        with grpc.insecure_channel(self.daemons[0].address) as channel:
            stub = csgrpc.ConnectionServiceStub(channel)
            for i in range(count):
                conn = sim_connection(stub, self.sim, f"{prefix}-{i}", VENUE)
                result = run_test(stub, conn.name).final()
                assert result.status == cpb.TEST_STATUS_SUCCESS, result
                self.workers.append(EngineWorker(conn, grid_config(reference),
                                                 random.Random(i)))

    def start_engines(self, daemon: DaemonProcess) -> None:
        with grpc.insecure_channel(daemon.address) as channel:
            stub = sgrpc.EngineServiceStub(channel)
            for w in self.workers:
                stub.StartEngine(pb.StartEngineRequest(name=w.name, config=w.config), timeout=30)

    def fleet(self, daemon: DaemonProcess) -> fpb.GetFleetResponse:
        with grpc.insecure_channel(daemon.address) as channel:
            return fgrpc.FleetServiceStub(channel).GetFleet(fpb.GetFleetRequest(), timeout=10)

    def running_on(self, daemon: DaemonProcess, min_cycles: int = 1) -> set[str]:
        """Engines `daemon` runs (holds the live lease of, and says it runs) with at least
        `min_cycles` cycles there; every member lists every engine of the fleet."""
        try:
            with grpc.insecure_channel(daemon.address) as channel:
                me = fgrpc.FleetServiceStub(channel).GetFleet(
                    fpb.GetFleetRequest(), timeout=5).answered_by
                engines = sgrpc.EngineServiceStub(channel).ListEngines(
                    pb.ListEnginesRequest(), timeout=5).engines
        except grpc.RpcError:
            return set()
        return {e.name for e in engines if e.owner == me
                and e.state == pb.ENGINE_STATE_RUNNING and e.cycles >= min_cycles}

    def owner(self, engine: str) -> DaemonProcess:
        """The live daemon running `engine`."""
        for daemon in self.daemons:
            if daemon.proc is not None and engine in self.running_on(daemon):
                return daemon
        raise AssertionError(f"no daemon runs {engine}")

    def check_venue(self) -> list[str]:
        """Each engine's orders as its owner lists them equal the venue's account (nothing
        placed that the fleet does not know, nothing known that the venue lacks), with no
        client order id twice and no grid level held twice."""
        problems: list[str] = []
        for w in self.workers:
            with grpc.insecure_channel(self.owner(w.name).address) as channel:
                orders, found = reconciled(sgrpc.EngineServiceStub(channel), self.sim, w)
            problems += found + check_orders(w, orders)
        return problems

    def replace(self, dead: DaemonProcess) -> DaemonProcess:
        """A new member in place of `dead` (removed at `close`: it may hold the key)."""
        self.daemons.remove(dead)
        self.gone.append(dead)
        return self.add()

    def close(self) -> None:
        for daemon in [*self.daemons, *self.gone]:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.send(signal.SIGCONT)  # a stopped daemon cannot stop
            daemon.cleanup()


def wait_for(condition: Callable[[], bool], timeout: float, what: str,
             poll_s: float = 0.1) -> float:
    """Seconds until `condition` held (bounded)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(poll_s)
    return time.monotonic() - started


@contextmanager
def leases_locked(url: str) -> Iterator[None]:
    """The lease table locked by another session: every member's renewals (and fenced
    writes) wait, as on a database slow for them; reads of it wait too."""
    with psycopg.connect(url, autocommit=False) as conn:
        conn.execute("LOCK TABLE engine_leases IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


@contextmanager
def swinging(sim: SimulatorThread, workers: list[EngineWorker], seed: int) -> Iterator[None]:
    """The price moves across the grids' levels, so orders fill and are replaced."""
    reference = Decimal(workers[0].config.params["reference_price"])
    stop = threading.Event()
    thread = threading.Thread(target=partial(swing_price, sim, reference,
                                             random.Random(seed), stop), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
        sim.admin("POST", "price", {"symbol": SYMBOL, "price": str(reference)})


@contextmanager
def fleet_on_postgres(postgres_url: str, sim: SimulatorThread,
                      ttl_s: float = TTL_S) -> Iterator[Fleet]:
    databases = PgDatabases(postgres_url)
    url = asyncio.run(databases.empty())
    fleet = Fleet(sim, url, ttl_s)
    try:
        yield fleet
    finally:
        fleet.close()
        asyncio.run(databases.drop(url))

