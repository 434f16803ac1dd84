"""Engines follow their connection: a connection an engine runs on is neither disabled nor
deleted (FAILED_PRECONDITION, the engine untouched); stopped first, it is, and a restart
brings nothing back FAILED. A dry run and a delete racing each answer a deliberate code.
Against the real daemon process and the simulator."""

from __future__ import annotations

import threading

import grpc
import pytest
from google.protobuf import field_mask_pb2

from cts.v1 import connection_pb2 as cpb
from cts.v1 import connection_service_pb2 as cspb
from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from tests.api.test_engine_service import paper_config, wait_for
from tests.support.conn_tests import sim_connection
from tests.support.daemon_process import DaemonProcess
from tests.support.rpc import call_code, rpc_error
from tests.support.simulator import SimulatorThread

RUNNING = pb.ENGINE_STATE_RUNNING
DRY_RUN_CODES = frozenset({grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND,
                           grpc.StatusCode.FAILED_PRECONDITION})


def disable_by_update(stub: csgrpc.ConnectionServiceStub, name: str) -> None:
    stub.UpdateConnection(cspb.UpdateConnectionRequest(
        connection=cpb.Connection(name=name, enabled=False),
        update_mask=field_mask_pb2.FieldMask(paths=["enabled"])), timeout=10)


def test_a_connection_under_an_engine_is_not_disabled_and_a_restart_fails_nothing(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread, sim_daemon: DaemonProcess,
) -> None:
    conn = sim_connection(connections, sim, "follow-1")
    engine = f"{conn.name}/engine"
    engines.StartEngine(pb.StartEngineRequest(name=engine, config=paper_config()))
    wait_for(engines, engine, lambda e: e.state == RUNNING)
    for disable in (
        lambda: connections.SetConnectionEnabled(
            cspb.SetConnectionEnabledRequest(name=conn.name, enabled=False), timeout=10),
        lambda: disable_by_update(connections, conn.name),
        lambda: connections.DeleteConnection(
            cspb.DeleteConnectionRequest(name=conn.name, force=True), timeout=10),
    ):
        err = rpc_error(disable)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err
        assert "engine stop" in str(err.details())
    assert connections.GetConnection(cspb.GetConnectionRequest(name=conn.name)).enabled
    assert engines.GetEngine(pb.GetEngineRequest(name=engine)).state == RUNNING
    engines.StopEngine(pb.StopEngineRequest(name=engine))
    disable_by_update(connections, conn.name)
    sim_daemon.restart()
    with grpc.insecure_channel(sim_daemon.address) as channel:
        after = sgrpc.EngineServiceStub(channel).GetEngine(pb.GetEngineRequest(name=engine))
    assert after.state == pb.ENGINE_STATE_STOPPED and not after.last_error


@pytest.mark.parametrize("with_config", [True, False])
def test_a_dry_run_racing_a_delete_answers_a_deliberate_code(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread, with_config: bool,
) -> None:
    answers: list[grpc.StatusCode] = []
    for n in range(12):
        conn = sim_connection(connections, sim, f"race-{int(with_config)}-{n}")
        request = pb.TestEngineRequest(name=f"{conn.name}/engine",
                                       config=paper_config() if with_config else None)
        started = threading.Event()

        def dry_run(request: pb.TestEngineRequest = request,
                    started: threading.Event = started) -> None:
            started.set()
            answers.append(call_code(lambda: engines.TestEngine(request, timeout=15)))

        racer = threading.Thread(target=dry_run)
        racer.start()
        started.wait(5)
        deleted = call_code(lambda name=conn.name: connections.DeleteConnection(  # type: ignore[misc]
            cspb.DeleteConnectionRequest(name=name), timeout=10))
        racer.join(20)
        assert deleted == grpc.StatusCode.OK
    assert set(answers) <= DRY_RUN_CODES, answers
    assert len(answers) == 12
