"""SIGTERM with `[engines] cancel_orders_on_shutdown = true`: a LIVE engine's resting orders
are cancelled on the venue (the simulator) before the daemon exits.

Without the option the orders rest and the engine reconciles them after the restart:
tests/api/test_engine_live.py's `..._reconciles_them_after_a_restart`.
"""

from __future__ import annotations

import grpc

from cts.v1 import connection_pb2 as cpb
from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from tests.api.test_engine_live import live_grid, venue_account
from tests.api.test_engine_service import wait_for
from tests.ops.conftest import MakeDaemon
from tests.ops.test_signals import start_with_config
from tests.support.conn_tests import run_test, sim_connection
from tests.support.sim_fixtures import sim  # noqa: F401
from tests.support.simulator import SimulatorThread


def test_sigterm_cancels_live_orders_when_configured(
    make_daemon: MakeDaemon, sim: SimulatorThread,  # noqa: F811
) -> None:
    daemon, _, address = start_with_config(make_daemon, (
        "[engines]\ncancel_orders_on_shutdown = true\n"
        f'[exchanges.binance]\nendpoint = "{sim.base_url}"\n'))
    with grpc.insecure_channel(address) as channel:
        connections = csgrpc.ConnectionServiceStub(channel)
        engines = sgrpc.EngineServiceStub(channel)
        conn = sim_connection(connections, sim, "shutdown-cancels")
        assert run_test(connections, conn.name).final().status == cpb.TEST_STATUS_SUCCESS
        name = f"{conn.name}/engine"
        engines.StartEngine(pb.StartEngineRequest(name=name, config=live_grid(engines, name)))
        wait_for(engines, name, lambda e: e.open_orders == 2)
        assert venue_account(sim, conn)["open_orders"] == 2

    assert daemon.stop() == 0
    assert venue_account(sim, conn)["open_orders"] == 0
    line = daemon.wait_line(lambda r: r.get("msg") == "open orders cancelled")
    assert line["connection_id"] == conn.id
    assert (len(line["cancelled"].split(",")), line["left_open"]) == (2, "")
