"""LIVE engines in the crash storm: starts, stops and orders while the daemon is SIGKILLed.

Four LIVE grid engines (two on Bybit, two on OKX) trade on the simulator while
a thread swings the price across the grid's levels, so engines fill and place
orders cycle after cycle; each engine's worker thread starts it, lists its
orders and stops it at seeded random moments, next to the connection storm of
`test_crash_durability.py`. The worker's model of what the daemon acknowledged
is exact (it alone calls that engine); a StartEngine or StopEngine cut short by
the kill is *uncertain*: afterwards the engine may be in the state before or
after it. After every kill, with the daemon down, the database must hold the
acknowledged desired state and every acknowledged order; after the restart:

- engines whose start was acknowledged resume RUNNING under the same engine id,
  stopped ones stay STOPPED;
- every order a ListOrders answer showed is still there, under the same
  exchange order id, never set back (OPEN may fill or cancel, a final status stays);
- a running engine has reconciled before trading on: its venue account holds as
  many orders, and as many open, as the daemon lists with an exchange order id,
  each under a client and an exchange order id of its own (the simulator refuses
  a client order id twice), so no intent reached the venue twice and no order is
  orphaned; no two open orders sit on one grid level.

Why no Binance engine: its weight budget is per IP per *minute* (1,200). A
grid cycling every second (ticker 2 + open orders 6 + account 20, plus its
orders) asks for more than that, so the daemon holds it to the budget and the
window stays nearly spent; a restarted daemon learns the spent weight from the
first answer's `X-MBX-USED-WEIGHT-1M` and rightly waits for the window to roll
over, so an engine resumed after a kill may not cycle for most of a minute.
Bybit's and OKX's windows are a second or two.

Quick form: 5 rounds; `CTS_SOAK_ROUNDS=20` for the long one.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from cts.v1 import connection_pb2 as cpb
from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from tests.robustness.state_check import StoredEngine, StoredOrder, check_engine_tables
from tests.robustness.tally import KILLED, Tally, soak_rounds, storm
from tests.robustness.test_crash_durability import (
    Storm,
    connection_storms,
    connection_workers,
    count_checks,
    merge_tallies,
    record_uncertain_creates,
    storm_tally,
    storm_until_killed,
    verify_connections,
)
from tests.support.conn_tests import SimConnection, run_test, sim_connection
from tests.support.daemon_process import DaemonProcess
from tests.support.sim_fixtures import sim, sim_daemon  # noqa: F401
from tests.support.simulator import SimulatorThread

pytestmark = pytest.mark.long

SEED = 11
VENUES = ("bybit", "okx", "bybit", "okx")
"""One engine each; per-second rate limits (see the module docstring for Binance)."""
CONNECTION_WORKERS = 2
SYMBOL = "BTC/USDT"
SPACING_PCT, LEVELS, AMOUNT = "1", "2", "0.001"
SWING = 0.025
"""The price moves up to 2.5 % either way from the grid's centre: past both levels."""
ORDER_ENTRY = {"bybit": "/v5/order/create", "okx": "/api/v5/trade/batch-orders"}
"""Where each venue takes new orders (POST; ccxt's OKX createOrder sends a batch of one):
slowed during the storm (`slow_order_entry`)."""
ORDER_LATENCY_S = 0.4
"""Long enough that a kill often lands while an order is on its way, shorter than a
restart, so an order cut short has reached the venue (or not) before reconciliation."""
STOP_CHANCE = 0.2
"""Per storm step of a running engine; otherwise it lists its orders."""
CALL_TIMEOUT_S = 20.0
"""StopEngine waits for the cycle in flight and cancels at the venue, rate limited."""
SETTLE_TIMEOUT_S = 30.0
SETTLED_CYCLES = 2
"""Cycles after a restart: reconciled, then at least one whole cycle on the market."""

STATUS_NAMES = {
    pb.ORDER_STATUS_PENDING: "pending", pb.ORDER_STATUS_OPEN: "open",
    pb.ORDER_STATUS_FILLED: "filled", pb.ORDER_STATUS_CANCELED: "canceled",
    pb.ORDER_STATUS_REJECTED: "rejected",
}
"""The API's order statuses as the store spells them."""
OPEN_STATUSES = frozenset({"pending", "open"})
FINAL_STATUSES = frozenset({"filled", "canceled", "rejected"})
RUNNING, STOPPED = pb.ENGINE_STATE_RUNNING, pb.ENGINE_STATE_STOPPED


@dataclass
class EngineWorker:
    """The only client of one connection's engine, and its model of what was acknowledged."""

    conn: SimConnection
    config: pb.EngineConfig
    rng: random.Random
    running: bool | None = None
    """The acknowledged desired state: started (True), stopped (False), never started."""
    engine_id: str = ""
    uncertain: tuple[bool | None, bool] | None = None
    """(before, attempted) desired state of a start or stop cut short by the kill."""
    acked: dict[str, pb.EngineOrder] = field(default_factory=dict)
    """Client order id -> the order as the last ListOrders answer showed it."""
    starts: int = 0
    stops: int = 0
    interrupted: int = 0
    tally: Tally = field(default_factory=lambda: Tally("engine crash: storm calls"))

    @property
    def name(self) -> str:
        return f"{self.conn.name}/engine"

    def possible(self) -> set[bool | None]:
        """The desired states the daemon may hold now."""
        return set(self.uncertain) if self.uncertain else {self.running}


def grid_config(reference: Decimal) -> pb.EngineConfig:
    """A LIVE grid of LEVELS buys and sells around `reference`, a cycle a second."""
    return pb.EngineConfig(
        strategy="grid", symbols=[SYMBOL], mode=pb.TRADING_MODE_LIVE,
        params={"reference_price": str(reference), "spacing_pct": SPACING_PCT,
                "levels": LEVELS, "amount": AMOUNT},
        interval=duration_pb2.Duration(seconds=1))


def list_orders(stub: sgrpc.EngineServiceStub, name: str) -> list[pb.EngineOrder]:
    orders: list[pb.EngineOrder] = []
    token = ""
    while True:
        page = stub.ListOrders(pb.ListOrdersRequest(parent=name, page_size=1000,
                                                    page_token=token), timeout=CALL_TIMEOUT_S)
        orders.extend(page.orders)
        token = page.next_page_token
        if not token:
            return orders


# --- the storm ---------------------------------------------------------------------------


def _engine_step(stub: sgrpc.EngineServiceStub, w: EngineWorker) -> None:
    op = "start" if w.running is not True else (
        "stop" if w.rng.random() < STOP_CHANCE else "list")
    try:
        if op == "start":
            started = stub.StartEngine(pb.StartEngineRequest(name=w.name, config=w.config),
                                       timeout=CALL_TIMEOUT_S)
            w.running, w.engine_id = True, started.engine_id
            w.starts += 1
        elif op == "stop":
            stub.StopEngine(pb.StopEngineRequest(name=w.name), timeout=CALL_TIMEOUT_S)
            w.running = False
            w.stops += 1
        else:
            w.acked.update((o.client_order_id, o) for o in list_orders(stub, w.name)
                           if o.exchange_order_id)
        w.tally.answer(grpc.StatusCode.OK)
    except grpc.RpcError as exc:
        if exc.code() in KILLED:
            if op != "list":
                w.uncertain = (w.running, op == "start")
            w.interrupted += 1
            raise
        w.tally.refused(f"{op} {w.name}", exc)


def storm_engine(address: str, w: EngineWorker, stop: threading.Event) -> None:
    storm(address, sgrpc.EngineServiceStub, lambda stub: _engine_step(stub, w), stop,
          pause=lambda: w.rng.uniform(0.1, 0.4))


def swing_price(sim: SimulatorThread, reference: Decimal, rng: random.Random,  # noqa: F811
                stop: threading.Event) -> None:
    """Move the price across the grid's levels, so resting orders fill and are replaced."""
    while not stop.wait(rng.uniform(0.3, 0.8)):
        price = reference * Decimal(repr(1 + rng.uniform(-SWING, SWING)))
        sim.admin("POST", "price", {"symbol": SYMBOL, "price": str(price)})


def slow_order_entry(sim: SimulatorThread) -> None:  # noqa: F811
    """Every new order waits ORDER_LATENCY_S at the venue before it is placed."""
    for venue, path in ORDER_ENTRY.items():
        sim.fault("latency", venue=venue, path_prefix=path, method="POST",
                  delay_s=ORDER_LATENCY_S, count=100_000)


# --- checks ------------------------------------------------------------------------------


def set_back(acked: pb.EngineOrder, exchange_id: str, status: str) -> str | None:
    """Why a stored order is not a later state of the acknowledged one; None if it is."""
    was = STATUS_NAMES[acked.status]
    if exchange_id != acked.exchange_order_id:
        return f"exchange order id {acked.exchange_order_id!r} became {exchange_id!r}"
    if was in FINAL_STATUSES and status != was:
        return f"final status {was} became {status}"
    if status in ("pending", "rejected"):
        return f"status {was} became {status}"
    return None


def check_stored(stored: dict[str, StoredEngine], w: EngineWorker) -> tuple[int, list[str]]:
    """With the daemon down: the desired state and every acknowledged order are on disk."""
    row = stored.get(w.conn.id)
    problems: list[str] = []
    desired = {True: "running", False: "stopped", None: None}
    allowed = {desired[p] for p in w.possible()}
    found = row.desired if row and row.engine_id else None
    if found not in allowed:
        problems.append(f"{w.name}: desired state {found} on disk, acknowledged {allowed}")
    elif w.uncertain is None and w.running and row and row.engine_id != w.engine_id:
        problems.append(f"{w.name}: engine {row.engine_id} on disk, started {w.engine_id}")
    orders = row.orders if row else {}
    for cid, acked in w.acked.items():
        kept: StoredOrder | None = orders.get(cid)
        why = "lost" if kept is None else set_back(acked, kept.exchange_order_id, kept.status)
        if why:
            problems.append(f"{w.name}: acknowledged order {cid} on disk: {why}")
    return 1 + len(w.acked), problems


def settle(stub: sgrpc.EngineServiceStub,
           workers: list[EngineWorker]) -> dict[str, pb.Engine | None]:
    """Each engine once it is STOPPED, or RUNNING for SETTLED_CYCLES (None: no engine)."""
    settled: dict[str, pb.Engine | None] = {}
    last: dict[str, pb.Engine] = {}
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while len(settled) < len(workers) and time.monotonic() < deadline:
        for w in workers:
            if w.name in settled:
                continue
            try:
                engine = stub.GetEngine(pb.GetEngineRequest(name=w.name), timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                settled[w.name] = None
                continue
            last[w.name] = engine
            if engine.state == STOPPED or (
                    engine.state == RUNNING and engine.cycles >= SETTLED_CYCLES):
                settled[w.name] = engine
        time.sleep(0.2)
    return {w.name: settled[w.name] if w.name in settled else last.get(w.name)
            for w in workers}


def describe(engine: pb.Engine | None) -> str:
    if engine is None:
        return "no engine"
    return (f"{pb.EngineState.Name(engine.state)} after {engine.cycles} cycles "
            f"(engine {engine.engine_id}, failure {engine.failure.message!r})")


def venue_counts(sim: SimulatorThread, conn: SimConnection) -> tuple[int, int]:  # noqa: F811
    """(orders ever placed, orders open) on the venue account behind `conn`."""
    account: dict[str, Any] = sim.admin("GET", f"accounts/{conn.api_key}")
    return int(account["orders"]), int(account["open_orders"])


def daemon_counts(orders: list[pb.EngineOrder]) -> tuple[int, int]:
    """(orders the venue acknowledged, orders open or pending) as the daemon knows them."""
    return (sum(1 for o in orders if o.exchange_order_id),
            sum(1 for o in orders if STATUS_NAMES[o.status] in OPEN_STATUSES))


def differences(sim: SimulatorThread, w: EngineWorker,  # noqa: F811
                orders: list[pb.EngineOrder]) -> str:
    """Which orders the venue and the daemon disagree on, as each has them: what a count
    that does not match is made of (an order the store lost, one placed twice, a status
    left behind)."""
    venue: list[dict[str, Any]] = sim.admin("GET", f"accounts/{w.conn.api_key}/orders")
    listed = {o.client_order_id: o for o in orders}
    found = []
    for v in venue:
        mine = listed.pop(v["client_id"], None)
        was = (f"{v['client_id']} (venue {v['id']}): venue {v['side']} {v['qty']} @ "
               f"{v['price']} {v['status']} filled {v['filled']}, created {v['created_ms']} "
               f"updated {v['updated_ms']}, last fill {v['fill_ms']}")
        if mine is None:
            found.append(f"{was}; the daemon lacks it")
        elif (v["status"] == "new") != (STATUS_NAMES[mine.status] in OPEN_STATUSES) or (
                mine.exchange_order_id != v["id"]):
            found.append(f"{was}; the daemon has {STATUS_NAMES[mine.status]} under "
                         f"{mine.exchange_order_id!r} (tag {mine.tag})")
    found += [f"{cid}: the daemon has {STATUS_NAMES[o.status]} under {o.exchange_order_id!r} "
              f"(tag {o.tag}), the venue never had it" for cid, o in listed.items()
              if o.exchange_order_id]
    return "; ".join(found) or "no order differs (a count moved between the reads)"


def reconciled(stub: sgrpc.EngineServiceStub, sim: SimulatorThread,  # noqa: F811
               w: EngineWorker) -> tuple[list[pb.EngineOrder], list[str]]:
    """The daemon's orders once they match the venue's, read between two equal venue reads
    (the engine keeps trading; fills show up a cycle late). Problems if they never do."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        before = venue_counts(sim, w.conn)
        orders = list_orders(stub, w.name)
        after = venue_counts(sim, w.conn)
        if before == after == daemon_counts(orders):
            return orders, []
        if time.monotonic() > deadline:
            return orders, [f"{w.name}: venue (orders, open) {before} then {after}, daemon "
                            f"{daemon_counts(orders)} after {SETTLE_TIMEOUT_S:.0f} s: "
                            f"{differences(sim, w, orders)}"]
        time.sleep(0.3)


def check_orders(w: EngineWorker, orders: list[pb.EngineOrder]) -> list[str]:
    """Acknowledged orders kept, no order twice, no grid level held twice."""
    problems: list[str] = []
    by_client = {o.client_order_id: o for o in orders}
    if len(by_client) != len(orders):
        problems.append(f"{w.name}: a client order id listed twice")
    exchange_ids = [o.exchange_order_id for o in orders if o.exchange_order_id]
    if len(set(exchange_ids)) != len(exchange_ids):
        problems.append(f"{w.name}: an exchange order under two client order ids")
    levels = [(o.symbol, o.side, o.price) for o in orders
              if STATUS_NAMES[o.status] in OPEN_STATUSES]
    if len(set(levels)) != len(levels):
        problems.append(f"{w.name}: two open orders on one grid level: {sorted(levels)}")
    for cid, acked in w.acked.items():
        now = by_client.get(cid)
        why = "lost" if now is None else set_back(
            acked, now.exchange_order_id, STATUS_NAMES[now.status])
        if why:
            problems.append(f"{w.name}: acknowledged order {cid} after restart: {why}")
    return problems


def check_resumed(address: str, sim: SimulatorThread,  # noqa: F811
                  workers: list[EngineWorker]) -> tuple[int, list[str]]:
    """After the restart: each engine in an acknowledged state, its orders reconciled."""
    problems: list[str] = []
    checked = 0
    with grpc.insecure_channel(address) as ch:
        stub = sgrpc.EngineServiceStub(ch)
        settled = settle(stub, workers)
        for w in workers:
            engine = settled[w.name]
            state = None if engine is None else engine.state
            running = state == RUNNING
            allowed = {RUNNING if p else STOPPED if p is False else None for p in w.possible()}
            checked += 1
            if state not in allowed or (running and engine is not None
                                        and engine.cycles < SETTLED_CYCLES):
                problems.append(f"{w.name}: resumed as {describe(engine)}, "
                                f"acknowledged {sorted(map(str, allowed))}")
            elif running and w.uncertain is None and engine is not None and (
                    engine.engine_id != w.engine_id):
                problems.append(f"{w.name}: engine {engine.engine_id} resumed, "
                                f"started {w.engine_id}")
            if engine is None:
                continue
            w.running, w.engine_id, w.uncertain = running, engine.engine_id, None
            if running:
                orders, not_matched = reconciled(stub, sim, w)
                problems += not_matched
            else:  # not reconciled while stopped: the venue has at least what it acknowledged
                orders = list_orders(stub, w.name)
                if venue_counts(sim, w.conn)[0] < daemon_counts(orders)[0]:
                    problems.append(f"{w.name}: the daemon knows orders the venue never had: "
                                    f"{differences(sim, w, orders)}")
            checked += len(w.acked)
            problems += check_orders(w, orders)
            w.acked = {o.client_order_id: o for o in orders if o.exchange_order_id}
    return checked, problems


def stop_all_and_check(address: str, sim: SimulatorThread,  # noqa: F811
                       workers: list[EngineWorker]) -> tuple[int, list[str]]:
    """The end: every engine started once more (reconciling), then stopped: nothing left open."""
    with grpc.insecure_channel(address) as ch:
        stub = sgrpc.EngineServiceStub(ch)
        for w in workers:
            if not w.running:
                w.engine_id = stub.StartEngine(pb.StartEngineRequest(
                    name=w.name, config=w.config), timeout=CALL_TIMEOUT_S).engine_id
                w.running = True
    checked, problems = check_resumed(address, sim, workers)
    with grpc.insecure_channel(address) as ch:
        stub = sgrpc.EngineServiceStub(ch)
        for w in workers:
            stub.StopEngine(pb.StopEngineRequest(name=w.name), timeout=CALL_TIMEOUT_S)
            w.running = False
            orders = list_orders(stub, w.name)
            venue, daemon = venue_counts(sim, w.conn), daemon_counts(orders)
            checked += 1
            if venue != (daemon[0], 0) or daemon[1]:
                problems.append(f"{w.name}: after StopEngine, venue (orders, open) {venue}, "
                                f"daemon {daemon}: {differences(sim, w, orders)}")
    return checked, problems


# --- the test ----------------------------------------------------------------------------


@pytest.fixture
def engine_workers(sim: SimulatorThread, sim_daemon: DaemonProcess,  # noqa: F811
                   ) -> Iterator[list[EngineWorker]]:
    """A tested connection per venue, with a LIVE grid centred on the price now."""
    reference = Decimal(sim.admin("GET", f"price?symbol={SYMBOL}")["price"])
    workers: list[EngineWorker] = []
    with grpc.insecure_channel(sim_daemon.address) as ch:
        connections = csgrpc.ConnectionServiceStub(ch)
        for i, venue in enumerate(VENUES):
            conn = sim_connection(connections, sim, f"engine-crash-{venue}-{i}", venue)
            assert run_test(connections, conn.name).final().status == cpb.TEST_STATUS_SUCCESS
            workers.append(EngineWorker(conn, grid_config(reference),
                                        random.Random(SEED * 1000 + i)))
    yield workers
    sim.clear_faults()
    sim.admin("POST", "price", {"symbol": SYMBOL, "price": str(reference)})


def round_storms(daemon: DaemonProcess, sim: SimulatorThread,  # noqa: F811
                 workers: list[EngineWorker], conn_storms: list[Storm],
                 rng: random.Random) -> list[Storm]:
    reference = Decimal(workers[0].config.params["reference_price"])
    swing: Storm = partial(swing_price, sim, reference, random.Random(rng.random()))
    return [*conn_storms, swing, *(partial(storm_engine, daemon.address, w) for w in workers)]


def engine_tally(workers: list[EngineWorker], sim: SimulatorThread) -> Tally:  # noqa: F811
    storm = merge_tallies("engine crash: storm calls", (w.tally for w in workers))
    placed = sum(venue_counts(sim, w.conn)[0] for w in workers)
    storm.notes.append(
        f"{sum(w.starts for w in workers)} starts, {sum(w.stops for w in workers)} stops, "
        f"{placed} orders placed on {len(workers)} venue accounts; "
        f"{sum(w.interrupted for w in workers)} engine calls cut short by a kill")
    return storm


@pytest.mark.timeout(600)
def test_live_engines_resume_and_place_no_order_twice_across_sigkills(
    sim: SimulatorThread, sim_daemon: DaemonProcess,  # noqa: F811
    engine_workers: list[EngineWorker],
) -> None:
    rounds = soak_rounds(5)
    daemon, workers = sim_daemon, engine_workers
    rng = random.Random(SEED)
    conn_workers = connection_workers(SEED, CONNECTION_WORKERS)
    conn_verified = Tally("crash durability: records checked")
    verified = Tally("engine crash: records checked")
    in_flight = 0
    for n in range(rounds):
        storms = round_storms(daemon, sim, workers, connection_storms(daemon.address,
                                                                      conn_workers), rng)
        slow_order_entry(sim)
        storm_until_killed(daemon, storms, rng.uniform(1.5, 4.0))
        sim.clear_faults()  # orders on their way keep their delay; reconciliation has none
        stored, problems = check_engine_tables(daemon.state_dir)
        in_flight += sum(o.status == "pending" for e in stored.values() for o in e.orders.values())
        checked = 0
        for w in workers:
            seen, found = check_stored(stored, w)
            checked, problems = checked + seen, problems + found
        record_uncertain_creates(conn_workers)
        count_checks(conn_verified, *verify_connections(daemon, conn_workers), n)  # restarts it
        resumed, resume_problems = check_resumed(daemon.address, sim, workers)
        count_checks(verified, checked + resumed, problems + resume_problems, n)
    final, final_problems = stop_all_and_check(daemon.address, sim, workers)
    daemon.stop()
    stored, disk_problems = check_engine_tables(daemon.state_dir)
    disk_problems += [f"{w.name}: desired {stored[w.conn.id].desired} after StopEngine"
                      for w in workers if stored[w.conn.id].desired != "stopped"]
    count_checks(verified, final + len(workers), final_problems + disk_problems, rounds)
    connection_storm = storm_tally(conn_workers, rounds, SEED)
    storm = engine_tally(workers, sim)
    verified.notes.append(f"{in_flight} orders in flight at a kill (PENDING on disk)")
    for row in (connection_storm, conn_verified, storm, verified):
        row.report()
    assert connection_storm.lost == 0 and conn_verified.lost == 0
    assert storm.lost == 0 and verified.lost == 0
    assert sum(w.starts for w in workers) > rounds, "the engines hardly ran"
    assert sum(venue_counts(sim, w.conn)[0] for w in workers) > rounds, "hardly any orders"
