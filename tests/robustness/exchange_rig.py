"""The daemon, the simulator, PAPER engines on several venues and batch tests, for fault tests.

`ExchangeRig` owns one simulator and one daemon for a test module: a PAPER
engine per venue in `ENGINE_VENUES`, `BATCH_PER_VENUE` more connections per
venue for batch tests (never the engines' own: a failed test would keep an
engine's connection from starting again), and an `EngineWatch` recording every
state WatchEngines reports. Every call it makes has a deadline and every wait
is bounded, so a hang in the daemon shows as a DEADLINE_EXCEEDED or a failed
wait, never as a stuck test.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import grpc
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cts.v1 import connection_pb2 as cpb
from cts.v1 import connection_service_pb2 as cspb
from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from cts.v1 import health_service_pb2 as hpb
from cts.v1 import health_service_pb2_grpc as hgrpc
from ctsd.sim.state import SimulatorConfig
from tests.robustness.tally import Tally
from tests.support.conn_tests import sim_connection
from tests.support.daemon_process import DaemonProcess, remove_tree, short_tempdir
from tests.support.rpc import call_code
from tests.support.simulator import SimulatorThread

ENGINE_VENUES = ("binance", "bybit", "okx")
BATCH_PER_VENUE = 2
BATCH_API_TYPE = {"binance": "perp", "bybit": "spot", "okx": "spot"}
SHARED_KEY_VENUES = frozenset({"binance"})
"""Binance's IP weight (1,200 a minute, spot) is what the batch tests here run out of first:
a spot key's test reads the spot account twice (20 each) and prices; a perpetual-futures
key's test reads the futures account (5) and, for its permissions, the spot account once.
So Binance's batch connections are perpetual-futures ones sharing one key (the batch tests
the key once and gives both the result). Otherwise, with the tests' lane ahead of engine
polling, the engine and the tests would soon wait for budget, as the daemon must."""
ITEM_TIMEOUT_S = 5
"""The daemon's per-item batch timeout (`[batch] item_timeout_s`), also its test timeout."""
HANG_MAX_S = 15.0
"""The simulator's cap on a HANG: above ccxt's 10 s request timeout in the daemon."""
GUARD_S = os.environ.get("CTS_FAULTS_GUARD_S", "")
"""`[rate_limits] guard_s` if set; the daemon's default otherwise.

With a fixed guard after the grant, a busy host's event loop (stalls of 0.1-0.2 s) let a
request granted at the edge of a full window leave late and land in the exchange's next
window with later ones (a violation on OKX's `public/time` in about one full run of
three). Charges now count until a window after their answer, which covers that; the
default is what runs here.
"""
CALL_TIMEOUT_S = 10.0
BATCH_DEADLINE_S = 30.0
"""Six times the item timeout: a batch still streaming then has an item that hung."""
START_S = 30.0
POLL_S = 0.2
SYMBOL = "BTC/USDT"
PASSED = frozenset({cpb.TEST_STATUS_SUCCESS, cpb.TEST_STATUS_WARNING})


def state_name(state: int) -> str:
    return pb.EngineState.Name(state).removeprefix("ENGINE_STATE_")  # type: ignore[arg-type]


def paper_config() -> pb.EngineConfig:
    """sma_cross reads a ticker and candles every second: two requests per cycle."""
    return pb.EngineConfig(
        strategy="sma_cross", symbols=[SYMBOL],
        params={"fast": "2", "slow": "3", "quote_amount": "100"},
        interval=duration_pb2.Duration(seconds=1))


class EngineWatch:
    """Every engine state WatchEngines reports, stamped on arrival, read on a thread of its own.

    The stream has no deadline; `stop` cancels it, which ends the thread.
    """

    def __init__(self, stub: sgrpc.EngineServiceStub) -> None:
        self._call = stub.WatchEngines(pb.WatchEnginesRequest())
        self._seen: list[tuple[float, str, int]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, name="engine-watch", daemon=True)
        self.ended: grpc.StatusCode | None = None
        """How the stream ended, if it did before `stop`."""

    def start(self) -> EngineWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._call.cancel()
        if self._thread.is_alive():
            self._thread.join(CALL_TIMEOUT_S)

    def _read(self) -> None:
        try:
            for event in self._call:
                kind = event.WhichOneof("event")
                if kind == "snapshot":
                    engines = list(event.snapshot.engines)
                elif kind == "changes":
                    engines = list(event.changes.engines)
                elif kind == "changed":
                    engines = [event.changed]
                else:
                    continue
                now = time.monotonic()
                with self._lock:
                    self._seen.extend((now, e.name, e.state) for e in engines)
            self.ended = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            self.ended = exc.code()

    def states(self, name: str, since: float, until: float) -> list[int]:
        """The states `name` was reported in between the two instants, repeats collapsed."""
        with self._lock:
            seen = [s for t, n, s in self._seen if n == name and since <= t <= until]
        return [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]


@dataclass
class BatchOutcome:
    code: grpc.StatusCode
    results: dict[str, cspb.BatchTestItemResult] = field(default_factory=dict)
    total: int = -1
    elapsed_s: float = 0.0

    def classes(self, names: list[str]) -> str:
        """`SUCCESS`, `FAILED/TIMEOUT`, ... per name, for the report."""
        found = []
        for name in names:
            item = self.results.get(name)
            if item is None:
                found.append("none")
                continue
            status = cpb.TestStatus.Name(item.result.status).removeprefix("TEST_STATUS_")
            if item.result.failure_class:
                status += "/" + cpb.FailureClass.Name(item.result.failure_class).removeprefix(
                    "FAILURE_CLASS_")
            found.append(status)
        return ",".join(found)


class ExchangeRig:
    def __init__(self, sim: SimulatorThread, daemon: DaemonProcess, channel: grpc.Channel) -> None:
        self.sim = sim
        self.daemon = daemon
        self.connections = csgrpc.ConnectionServiceStub(channel)
        self.engines = sgrpc.EngineServiceStub(channel)
        self.system = hgrpc.HealthServiceStub(channel)
        self.grpc_health = health_pb2_grpc.HealthStub(channel)
        self.engine_of: dict[str, str] = {}
        """venue → engine name"""
        self.batch_names: dict[str, list[str]] = {}
        """venue → connections for batch tests"""
        self.watch = EngineWatch(self.engines)

    # --- setup --------------------------------------------------------------------------

    def populate(self) -> None:
        for venue in ENGINE_VENUES:
            conn = sim_connection(self.connections, self.sim, f"engine-{venue}", venue)
            self.engine_of[venue] = f"{conn.name}/engine"
            self.batch_names[venue] = self._batch_connections(venue)
        self.watch.start()
        # Engines first: they load every venue's markets (and import ccxt) with no deadline,
        # so the batch tests below do not pay that inside their short item timeout.
        for name in self.engine_of.values():
            self.engines.StartEngine(pb.StartEngineRequest(name=name, config=paper_config()),
                                     timeout=CALL_TIMEOUT_S)
        started_ms = time.time() * 1000
        for name in self.engine_of.values():
            assert self.wait_cycling(name, started_ms, START_S, Tally("setup")), name
        for _ in range(3):  # a cold first test on a busy machine may still time out
            first = self.batch(self.all_batch_names())
            failed = {n: r.result.message for n, r in first.results.items()
                      if r.result.status not in PASSED}
            if first.code == grpc.StatusCode.OK and not failed:
                break
        assert first.code == grpc.StatusCode.OK and not failed, (first.code, failed)

    def _batch_connections(self, venue: str) -> list[str]:
        first = sim_connection(self.connections, self.sim, f"batch-{venue}-0", venue,
                               api_type=BATCH_API_TYPE[venue])
        shared: dict[str, Any] = {}
        if venue in SHARED_KEY_VENUES:
            shared = {"provision": False, "api_key": first.api_key,
                      "stored_secret": first.secret}
        return [first.name, *(
            sim_connection(self.connections, self.sim, f"batch-{venue}-{n}", venue,
                           api_type=BATCH_API_TYPE[venue], **shared).name
            for n in range(1, BATCH_PER_VENUE))]

    def close(self) -> None:
        self.watch.stop()
        for name in self.engine_of.values():
            call_code(partial(self.engines.StopEngine, pb.StopEngineRequest(name=name),
                              timeout=CALL_TIMEOUT_S))

    # --- calls ----------------------------------------------------------------------------

    def all_batch_names(self) -> list[str]:
        return [name for names in self.batch_names.values() for name in names]

    def batch(self, names: list[str]) -> BatchOutcome:
        """One BatchTestConnections of `names`, all at once, read to its end or its deadline."""
        request = cspb.BatchTestConnectionsRequest(names=names, concurrency=len(names))
        outcome = BatchOutcome(grpc.StatusCode.OK)
        started = time.monotonic()
        try:
            for event in self.connections.BatchTestConnections(request,
                                                               timeout=BATCH_DEADLINE_S):
                if event.HasField("result"):
                    outcome.results[event.result.name] = event.result
                elif event.HasField("summary"):
                    outcome.total = event.summary.total
        except grpc.RpcError as exc:
            outcome.code = exc.code()
        outcome.elapsed_s = time.monotonic() - started
        return outcome

    def engine(self, name: str) -> pb.Engine:
        return self.engines.GetEngine(pb.GetEngineRequest(name=name), timeout=CALL_TIMEOUT_S)

    def serving(self) -> bool:
        answer = self.grpc_health.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S)
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    def probe(self, tally: Tally) -> None:
        """One round of reads a client or a probe makes while a fault is on: each must answer."""
        calls: list[Callable[[], Any]] = [
            lambda: self.engines.ListEngines(pb.ListEnginesRequest(), timeout=CALL_TIMEOUT_S),
            lambda: self.engines.GetCoordinatorHealth(pb.GetCoordinatorHealthRequest(),
                                                      timeout=CALL_TIMEOUT_S),
            lambda: self.system.GetConnectionsHealth(hpb.GetConnectionsHealthRequest(),
                                                     timeout=CALL_TIMEOUT_S),
            lambda: self.system.GetSystemStatus(hpb.GetSystemStatusRequest(),
                                                timeout=CALL_TIMEOUT_S),
        ]
        calls += [partial(self.engine, name) for name in self.engine_of.values()]
        for call in calls:
            code = call_code(call)
            if not tally.answer(code):
                tally.notes.append(f"a read answered {code.name}")
        code = call_code(self.serving)
        if not tally.answer(code) or not self.serving():
            tally.lost += 1
            tally.notes.append("grpc health is not SERVING")

    def wait_cycling(self, name: str, since_ms: float, timeout_s: float,
                     tally: Tally) -> pb.Engine | None:
        """Until `name` is RUNNING and has finished a cycle that began after `since_ms`.

        (Epoch milliseconds: the daemon runs on this host's clock.) Probes while it waits.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            engine = self.engine(name)
            began_ms = (engine.last_cycle_time.ToMilliseconds()
                        - engine.last_cycle_duration.ToMilliseconds())
            if engine.state == pb.ENGINE_STATE_RUNNING and began_ms > since_ms:
                return engine
            if time.monotonic() > deadline:
                return None
            self.probe(tally)
            time.sleep(POLL_S)

    def violations(self) -> dict[str, int]:
        stats = self.sim.stats()
        found: dict[str, int] = stats.get("violations_by_kind", {})
        return found

    def pending_faults(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.sim.admin("GET", "faults")
        return found


def daemon_config(sim: SimulatorThread) -> str:
    tables = "".join(f'[exchanges.{x}]\nendpoint = "{sim.base_url}"\n'
                     for x in (*ENGINE_VENUES, "kraken"))
    return (f"[batch]\nitem_timeout_s = {ITEM_TIMEOUT_S}\nconcurrency = 6\nmax_attempts = 3\n"
            + (f"[rate_limits]\nguard_s = {GUARD_S}\n" if GUARD_S else "") + tables)


@contextmanager
def exchange_rig() -> Iterator[ExchangeRig]:
    """The whole rig, populated, engines cycling; torn down in reverse whatever happens."""
    sim = SimulatorThread(SimulatorConfig(seed=3, markets=20, hang_max_s=HANG_MAX_S)).start()
    root = short_tempdir()
    config = root / "ctsd.toml"
    config.write_text(daemon_config(sim))
    daemon = DaemonProcess(root, ["--config", str(config)])
    try:
        daemon.start()
        with grpc.insecure_channel(daemon.address) as channel:
            rig = ExchangeRig(sim, daemon, channel)
            try:
                rig.populate()
                yield rig
            finally:
                rig.close()
    finally:
        if daemon.proc is not None and daemon.proc.poll() is not None:
            print(f"ctsd exited early with {daemon.proc.returncode}:\n{daemon.logs()}")
        sim.clear_faults()
        daemon.stop()
        sim.stop()
        remove_tree(root)
