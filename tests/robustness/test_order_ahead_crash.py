"""SIGKILL inside the send-ahead window: the order at the venue, its record not.

A LIVE engine outside a fleet sends an order before writing its record (the venue's
answer, `ctsd.engine.rounds`), so a crash can leave the venue with an order the
database never recorded. The random kills of `test_engine_crash_durability.py` land
in that window only by chance (a round trip and a commit long), so this test forces
it on the real daemon, database and simulator: it holds SQLite's write lock from
outside (the daemon's writer waits, as behind a slow disk), moves the price back
above a grid level whose buy filled, so the engine buys there again, waits until the
venue has that order, SIGKILLs the daemon, and releases the lock. The database must then lack that
order (the window was hit), and the restarted daemon must find it by its client
order id: listed, no longer resting (the intent it carried died with the process),
no grid level held twice, and the venue's orders and the daemon's in agreement.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import grpc
import pytest

from cts.v1 import connection_pb2 as cpb
from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from tests.robustness.state_check import check_engine_tables
from tests.robustness.test_engine_crash_durability import (
    ORDER_ENTRY,
    SYMBOL,
    EngineWorker,
    check_orders,
    grid_config,
    list_orders,
    reconciled,
    settle,
    venue_counts,
)
from tests.support.conn_tests import SimConnection, run_test, sim_connection
from tests.support.daemon_process import DaemonProcess
from tests.support.sim_fixtures import sim, simulated_daemon  # noqa: F401
from tests.support.simulator import SimulatorThread

WAIT_S = 20.0
LOCK_HELD_MAX_S = 4.0
"""Under the daemon's SQLite busy timeout (5 s): its writer waits, it does not fail."""
SEND_S = 2.0
"""How long the venue holds the order a stop waits for: the stop commits meanwhile."""


@pytest.fixture
def daemon(sim: SimulatorThread) -> Iterator[DaemonProcess]:  # noqa: F811
    yield from simulated_daemon(sim)


def wait_until(what: str, done: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def settled_grid(stub: sgrpc.EngineServiceStub, sim: SimulatorThread,  # noqa: F811
                 worker: EngineWorker) -> bool:
    """Two cycles run, and the venue rests what the engine lists."""
    engine = stub.GetEngine(pb.GetEngineRequest(name=worker.name))
    return engine.cycles >= 2 and engine.open_orders > 0 and venue_counts(
        sim, worker.conn)[1] == engine.open_orders


def filled_grid(stub: sgrpc.EngineServiceStub, sim: SimulatorThread,  # noqa: F811
                worker: EngineWorker, reference: Decimal) -> int:
    """`worker`'s grid started, its nearest buy filled and the grid resting again; the
    orders the venue has (as many as the daemon lists)."""
    stub.StartEngine(pb.StartEngineRequest(name=worker.name, config=worker.config))
    wait_until("the grid resting", lambda: settled_grid(stub, sim, worker))
    nearest = min(list_orders(stub, worker.name),
                  key=lambda o: abs(Decimal(o.price) - reference))
    assert nearest.side == pb.ORDER_SIDE_BUY  # no inventory to sell yet
    sim.admin("POST", "price", {"symbol": SYMBOL, "price": str(
        Decimal(nearest.price) * Decimal("0.999"))})  # the nearest buy fills
    wait_until("the fill booked", lambda: stub.GetEngine(pb.GetEngineRequest(
        name=worker.name)).orders_filled == 1 and settled_grid(stub, sim, worker))
    placed = venue_counts(sim, worker.conn)[0]
    assert placed == len(list_orders(stub, worker.name))
    return placed


def grid_worker(ch: grpc.Channel, sim: SimulatorThread,  # noqa: F811
                  name: str, venue: str, reference: Decimal) -> EngineWorker:
    conn = sim_connection(csgrpc.ConnectionServiceStub(ch), sim, name, venue)
    assert run_test(csgrpc.ConnectionServiceStub(ch), conn.name).final().status == (
        cpb.TEST_STATUS_SUCCESS)
    return EngineWorker(conn, grid_config(reference), random.Random(0))


@pytest.mark.timeout(120)
def test_an_order_sent_before_its_record_committed_is_recovered_after_sigkill(
    sim: SimulatorThread, daemon: DaemonProcess,  # noqa: F811
) -> None:
    reference = Decimal(sim.admin("GET", f"price?symbol={SYMBOL}")["price"])
    with grpc.insecure_channel(daemon.address) as ch:
        worker = grid_worker(ch, sim, "ahead-crash", "bybit", reference)
        conn = worker.conn
        placed = filled_grid(sgrpc.EngineServiceStub(ch), sim, worker, reference)
    lock = sqlite3.connect(daemon.state_dir / "ctsd.db", isolation_level=None, timeout=5)
    try:
        lock.execute("BEGIN IMMEDIATE")  # every write of the daemon waits from here
        held = time.monotonic()
        sim.admin("POST", "price", {"symbol": SYMBOL, "price": str(
            reference)})  # back above the filled level: the grid buys there again
        deadline = held + LOCK_HELD_MAX_S
        while venue_counts(sim, conn)[0] == placed and time.monotonic() < deadline:
            time.sleep(0.01)
        sent = venue_counts(sim, conn)[0]
        daemon.kill()
    finally:
        lock.rollback()
        lock.close()
    assert sent > placed, "no order left while the database was locked: the window was not hit"
    assert sent == placed + 1, "more than one order left unrecorded"
    stored, problems = check_engine_tables(daemon.state_dir)
    assert not problems
    known = set(stored[conn.id].orders)
    assert len(known) == placed, "the new order's record committed: the window was not hit"

    daemon.start()
    with grpc.insecure_channel(daemon.address) as ch:
        stub = sgrpc.EngineServiceStub(ch)
        [engine] = settle(stub, [worker]).values()
        assert engine is not None and engine.state == pb.ENGINE_STATE_RUNNING, engine
        orders, not_matched = reconciled(stub, sim, worker)
        assert not not_matched
        assert not check_orders(worker, orders)
        # oldest first: the orders reconciliation found come before any the session sent
        lost = [o for o in orders if o.client_order_id not in known][:sent - placed]
        assert [o.tag for o in lost] in (["adopted"], ["recovered"]), orders
        assert lost[0].exchange_order_id
        assert lost[0].status in (pb.ORDER_STATUS_CANCELED, pb.ORDER_STATUS_FILLED), orders
        stub.StopEngine(pb.StopEngineRequest(name=worker.name))
    assert venue_counts(sim, conn)[1] == 0


def stored_desired(daemon: DaemonProcess, conn: SimConnection) -> str:
    stored, _ = check_engine_tables(daemon.state_dir)
    return stored[conn.id].desired if conn.id in stored else ""


def stop_engine(address: str, name: str) -> None:
    """StopEngine, which the kill cuts short (it waits for the cycle in flight)."""
    with grpc.insecure_channel(address) as ch, contextlib.suppress(grpc.RpcError):
        sgrpc.EngineServiceStub(ch).StopEngine(pb.StopEngineRequest(name=name))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("venue", ["bybit", "okx"])
def test_an_order_sent_while_a_stop_waits_is_recovered_by_the_next_start(
    sim: SimulatorThread, daemon: DaemonProcess, venue: str,  # noqa: F811
) -> None:
    """The kill lands after StopEngine committed the stopped state and before the order
    of the cycle it waits for was recorded; the order fills while no daemon runs. The
    restarted daemon leaves the engine stopped (no session, no recovery), so the next
    StartEngine, under a new engine id, must still find the old engine's order."""
    reference = Decimal(sim.admin("GET", f"price?symbol={SYMBOL}")["price"])
    with grpc.insecure_channel(daemon.address) as ch:
        worker = grid_worker(ch, sim, f"stop-crash-{venue}", venue, reference)
        conn, stub = worker.conn, sgrpc.EngineServiceStub(ch)
        placed = filled_grid(stub, sim, worker, reference)
        level = min((o for o in list_orders(stub, worker.name)
                     if o.status == pb.ORDER_STATUS_FILLED), key=lambda o: o.price).price
        sim.fault("latency", venue=venue, path_prefix=ORDER_ENTRY[venue], method="POST",
                  delay_s=SEND_S)
        sim.admin("POST", "price", {"symbol": SYMBOL, "price": str(reference)})
        wait_until("the buy on its way", lambda: not sim.admin("GET", "faults"))
        stopping = threading.Thread(target=stop_engine, args=(daemon.address, worker.name))
        stopping.start()
        wait_until("the stop committed", lambda: stored_desired(daemon, conn) == "stopped")
    lock = sqlite3.connect(daemon.state_dir / "ctsd.db", isolation_level=None, timeout=5)
    try:
        lock.execute("BEGIN IMMEDIATE")  # the order's record waits from here
        wait_until("the venue placing it", lambda: venue_counts(sim, conn)[0] > placed,
                   LOCK_HELD_MAX_S)
        daemon.kill()
    finally:
        lock.rollback()
        lock.close()
        stopping.join()
    stored, problems = check_engine_tables(daemon.state_dir)
    assert not problems
    assert stored[conn.id].desired == "stopped"
    assert len(stored[conn.id].orders) == placed, "the order's record committed"
    open_before = venue_counts(sim, conn)[1]
    sim.admin("POST", "price", {"symbol": SYMBOL, "price": str(
        Decimal(level) * Decimal("0.999"))})  # the unrecorded buy fills, no daemon running
    wait_until("the buy filled", lambda: venue_counts(sim, conn)[1] < open_before)

    daemon.start()
    with grpc.insecure_channel(daemon.address) as ch:
        stub = sgrpc.EngineServiceStub(ch)
        assert stub.GetEngine(pb.GetEngineRequest(name=worker.name)).state == (
            pb.ENGINE_STATE_STOPPED)
        stub.StartEngine(pb.StartEngineRequest(name=worker.name, config=worker.config))
        [engine] = settle(stub, [worker]).values()
        assert engine is not None and engine.state == pb.ENGINE_STATE_RUNNING, engine
        orders, not_matched = reconciled(stub, sim, worker)
        assert not not_matched, not_matched
        assert not check_orders(worker, orders)
        lost = [o for o in orders if o.client_order_id not in stored[conn.id].orders]
        assert [(o.tag, o.status) for o in lost][:1] == [
            ("recovered", pb.ORDER_STATUS_FILLED)], orders
        venue_orders = sim.admin("GET", f"accounts/{conn.api_key}/orders")
        [at_venue] = [v for v in venue_orders if v["client_id"] == lost[0].client_order_id]
        assert (at_venue["id"], at_venue["status"]) == (lost[0].exchange_order_id, "filled")
        stub.StopEngine(pb.StopEngineRequest(name=worker.name))
    assert venue_counts(sim, conn)[1] == 0
