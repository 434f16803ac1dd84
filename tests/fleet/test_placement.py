"""Real daemons on one PostgreSQL database: StartEngine places engines by load, and a
call through a member that does not run the engine keeps the contract of one daemon.

- Three members; every StartEngine goes through the first. Each start runs on the
  live member with the fewest engines (ties: the member called), and answers once that
  member started it: the answer names the owner, whose lease is live at that moment.
- A start placed on another member that refuses it (an untested key; a leverage on
  spot) answers that member's FAILED_PRECONDITION with its details, and no member
  lists an engine for it.
- StopEngine through a member that does not own the engine answers once the owner
  stopped it: its orders are already cancelled at the venue and its lease is released.
"""

from __future__ import annotations

import time

import grpc
import psycopg
import pytest

from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from tests.api.test_engine_service import paper_config
from tests.fleet.daemons import Fleet, fleet_on_postgres, wait_for
from tests.robustness.test_engine_crash_durability import venue_counts
from tests.support.conn_tests import sim_connection
from tests.support.daemon_process import DaemonProcess
from tests.support.rpc import precondition_violations, rpc_error
from tests.support.sim_fixtures import sim  # noqa: F401
from tests.support.simulator import SimulatorThread

pytestmark = pytest.mark.long


def member_id(fleet: Fleet, daemon: DaemonProcess) -> str:
    return fleet.fleet(daemon).answered_by


def lease_owner(fleet: Fleet, daemon: DaemonProcess, engine: str) -> str:
    """The owner of `engine`'s live lease as `daemon` reads the fleet ('' if none)."""
    return next((lease.owner for lease in fleet.fleet(daemon).leases
                 if lease.engine == engine and lease.live), "")


def three_members(fleet: Fleet, prefix: str) -> tuple[list[DaemonProcess],
                                                     dict[str, DaemonProcess]]:
    """Three members (the first made three tested connections) and each by its id."""
    first = fleet.add()
    fleet.connections(3, prefix)
    members = [first, fleet.add(), fleet.add()]
    return members, {member_id(fleet, d): d for d in members}


def test_starts_are_placed_by_load_and_answer_the_owners_outcome(
        postgres_url: str, sim: SimulatorThread) -> None:  # noqa: F811
    with fleet_on_postgres(postgres_url, sim) as fleet:
        (a, b, c), ids = three_members(fleet, "placed")
        with grpc.insecure_channel(a.address) as channel:
            engines = sgrpc.EngineServiceStub(channel)

            took: list[float] = []

            def start(name: str, config: pb.EngineConfig) -> pb.Engine:
                began = time.monotonic()
                try:
                    return engines.StartEngine(pb.StartEngineRequest(name=name, config=config),
                                               timeout=60)
                finally:
                    took.append(time.monotonic() - began)

            first = fleet.workers[0]
            started = start(first.name, first.config)
            assert started.owner == member_id(fleet, a)  # a tie: the member called
            assert lease_owner(fleet, a, first.name) == started.owner

            # Placed on a member with no engine, which refuses it: its refusal, and no
            # record anywhere.
            untested = sim_connection(csgrpc.ConnectionServiceStub(channel), sim, "placed-untested",
                                      "bybit")
            name = f"{untested.name}/engine"
            try:
                start(name, first.config)
                raise AssertionError("a start on an untested key was accepted")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, exc
                assert "never been tested" in str(exc.details())
            for daemon in (a, b, c):
                with grpc.insecure_channel(daemon.address) as other:
                    try:
                        sgrpc.EngineServiceStub(other).GetEngine(
                            pb.GetEngineRequest(name=name), timeout=5)
                        raise AssertionError(f"{daemon.address} lists the refused engine")
                    except grpc.RpcError as exc:
                        assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
            assert lease_owner(fleet, a, name) == ""
            # A refusal with details (a leverage on spot, PAPER): the same details here.
            levered = paper_config()
            levered.leverage["BTC/USDT"] = 5
            err = rpc_error(lambda: start(name, levered))
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "trades spot" in precondition_violations(err)["config.leverage"]

            def served(daemon: DaemonProcess) -> int:
                return sum(1 for r in daemon.records() if r.get("msg") == "engine request "
                           "served" and f"connections/{r.get('connection_id')}" == untested.name)

            wait_for(lambda: sum(served(d) for d in (a, b, c)) >= 2, 5, "the refusals logged")
            assert served(a) == 0 and sorted(served(d) for d in (b, c)) == [0, 2]

            owners = [started.owner]
            for worker in fleet.workers[1:]:
                placed = start(worker.name, worker.config)
                assert placed.state in (pb.ENGINE_STATE_STARTING, pb.ENGINE_STATE_RUNNING)
                assert lease_owner(fleet, a, worker.name) == placed.owner  # live at once
                owners.append(placed.owner)
            assert sorted(owners) == sorted(ids), owners  # one engine per member
            here, *refused = (f"{t:.3f}" for t in took[:3])
            print(f"StartEngine s: here {here}; refused there {' '.join(refused)}; placed "
                  + " ".join(f"{t:.3f}" for t in took[3:]))
            wait_for(lambda: all(w.name in fleet.running_on(ids[o], 1) for w, o in zip(
                fleet.workers, owners, strict=True)), 60, "each engine cycling on its owner")

            # Stopped through a, which does not run it: answered after the owner stopped.
            remote = fleet.workers[1]
            wait_for(lambda: venue_counts(sim, remote.conn)[1] > 0, 30, "orders at the venue")
            stopped = engines.StopEngine(pb.StopEngineRequest(name=remote.name), timeout=60)
            assert stopped.state == pb.ENGINE_STATE_STOPPED
            assert venue_counts(sim, remote.conn)[1] == 0, "answered before the cancels"
            assert lease_owner(fleet, a, remote.name) == ""
            assert remote.name not in fleet.running_on(ids[owners[1]], 0)

            # Callers that leave mid-call (starts placed elsewhere, stops sent to the
            # owner): each call runs to its end wherever it began, its request row goes,
            # and what the fleet shows agrees with the leases.
            def agreed() -> bool:
                engine = engines.GetEngine(pb.GetEngineRequest(name=remote.name), timeout=5)
                owner = lease_owner(fleet, a, remote.name)
                if engine.state == pb.ENGINE_STATE_STOPPED:
                    return owner == ""
                return owner != "" and remote.name in fleet.running_on(ids[owner], 1)

            def start_within(deadline_s: float) -> pb.Engine:
                return engines.StartEngine(pb.StartEngineRequest(
                    name=remote.name, config=remote.config), timeout=deadline_s)

            def stop_within(deadline_s: float) -> pb.Engine:
                return engines.StopEngine(pb.StopEngineRequest(name=remote.name),
                                          timeout=deadline_s)

            def running() -> bool:
                engine = engines.GetEngine(pb.GetEngineRequest(name=remote.name), timeout=5)
                return engine.state != pb.ENGINE_STATE_STOPPED

            for deadline_s in (0.005, 0.03, 0.1):
                for call in (start_within, stop_within):
                    answers = {grpc.StatusCode.DEADLINE_EXCEEDED}
                    if call is start_within and running():
                        # The stop before it left too early to reach the daemon (a busy
                        # machine): the engine runs on, and a start is rightly refused.
                        answers.add(grpc.StatusCode.FAILED_PRECONDITION)
                    try:
                        call(deadline_s)
                    except grpc.RpcError as exc:
                        assert exc.code() in answers, exc
                    wait_for(lambda: requests_left(fleet.url) == 0, 30, "request rows gone")
                    wait_for(agreed, 30, "the engine's state as its lease says")
            engines.StopEngine(pb.StopEngineRequest(name=remote.name), timeout=60)
            assert venue_counts(sim, remote.conn)[1] == 0


def requests_left(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM engine_requests").fetchone()
    return int(row[0]) if row else 0


def test_starts_made_at_once_spread_too(
        postgres_url: str, sim: SimulatorThread) -> None:  # noqa: F811
    """Three StartEngine calls in flight together through one member: each placement
    counts the ones on their way, so the three land on three members."""
    with fleet_on_postgres(postgres_url, sim) as fleet:
        (a, *_), ids = three_members(fleet, "together")
        with grpc.insecure_channel(a.address) as channel:
            engines = sgrpc.EngineServiceStub(channel)
            calls = [engines.StartEngine.future(
                pb.StartEngineRequest(name=w.name, config=w.config), timeout=60)
                for w in fleet.workers]
            owners = [call.result().owner for call in calls]
        assert sorted(owners) == sorted(ids), owners
        wait_for(lambda: all(w.name in fleet.running_on(ids[o], 1) for w, o in zip(
            fleet.workers, owners, strict=True)), 60, "each engine cycling on its owner")
