"""A LIVE engine against the real daemon process and the exchange simulator, over real ccxt:
real orders placed once under client order ids, reconciled (not re-placed) after a restart,
and LIVE refused on a key that is untested or may not trade."""

from __future__ import annotations

from typing import Any

import grpc

from cts.v1 import connection_pb2 as cpb
from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from tests.api.test_engine_service import paper_config, wait_for
from tests.support.conn_tests import SimConnection, run_test, sim_connection
from tests.support.daemon_process import DaemonProcess
from tests.support.rpc import rpc_error
from tests.support.sim_fixtures import sim, sim_channel, sim_daemon  # noqa: F401
from tests.support.simulator import SimulatorThread


def live_grid(stub: sgrpc.EngineServiceStub, name: str) -> pb.EngineConfig:
    """Two resting buys under the current price (no sells: the engine holds no position
    of its own yet, and grid sells only what it holds)."""
    probe = paper_config("grid", reference_price="1", spacing_pct="1", levels="1",
                         amount="0.001")
    price = stub.TestEngine(pb.TestEngineRequest(name=name, config=probe)).tickers[0].last
    config = paper_config("grid", reference_price=price, spacing_pct="1", levels="2",
                          amount="0.001")
    config.mode = pb.TRADING_MODE_LIVE
    return config


def venue_account(sim: SimulatorThread, conn: SimConnection) -> dict[str, Any]:  # noqa: F811
    found: dict[str, Any] = sim.admin("GET", f"accounts/{conn.api_key}")
    return found


def test_a_live_engine_places_orders_once_and_reconciles_them_after_a_restart(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread, sim_daemon: DaemonProcess,  # noqa: F811
) -> None:
    conn = sim_connection(connections, sim, "engine-live")
    name = f"{conn.name}/engine"
    assert run_test(connections, conn.name).final().status == cpb.TEST_STATUS_SUCCESS
    config = live_grid(engines, name)
    started = engines.StartEngine(pb.StartEngineRequest(name=name, config=config))
    assert started.mode == pb.TRADING_MODE_LIVE
    engine = wait_for(engines, name, lambda e: e.orders_placed >= 2 and e.open_orders == 2)
    orders = engines.ListOrders(pb.ListOrdersRequest(parent=name)).orders
    assert len(orders) == 2
    assert all(o.status == pb.ORDER_STATUS_OPEN and o.exchange_order_id
               and o.client_order_id.startswith("cts" + started.engine_id) for o in orders)
    assert (venue_account(sim, conn)["orders"], venue_account(sim, conn)["open_orders"]) == (2, 2)
    # Steady state: later cycles find every level taken and place nothing more.
    wait_for(engines, name, lambda e: e.cycles >= engine.cycles + 2)
    assert venue_account(sim, conn)["orders"] == 2

    sim_daemon.stop()
    sim_daemon.start()
    with grpc.insecure_channel(sim_daemon.address) as channel:
        stub = sgrpc.EngineServiceStub(channel)
        resumed = wait_for(stub, name, lambda e: e.state == pb.ENGINE_STATE_RUNNING
                           and e.cycles >= 2 and e.open_orders == 2)
        assert resumed.engine_id == started.engine_id and resumed.mode == pb.TRADING_MODE_LIVE
        after = stub.ListOrders(pb.ListOrdersRequest(parent=name)).orders
        assert sorted((o.client_order_id, o.exchange_order_id, o.status) for o in after) == (
            sorted((o.client_order_id, o.exchange_order_id, o.status) for o in orders))
        assert venue_account(sim, conn)["orders"] == 2  # reconciled, not placed again
        stub.StopEngine(pb.StopEngineRequest(name=name))


def test_live_needs_a_tested_key_that_may_trade(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread,  # noqa: F811
) -> None:
    untested = sim_connection(connections, sim, "engine-live-untested")
    name = f"{untested.name}/engine"
    err = rpc_error(lambda: engines.StartEngine(pb.StartEngineRequest(
        name=name, config=live_grid(engines, name))))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "never been tested" in str(err.details())

    read_only = sim_connection(connections, sim, "engine-live-readonly", permissions=["read"])
    name = f"{read_only.name}/engine"
    assert run_test(connections, read_only.name).final().status != cpb.TEST_STATUS_FAILED
    err = rpc_error(lambda: engines.StartEngine(pb.StartEngineRequest(
        name=name, config=live_grid(engines, name))))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "may not trade" in str(err.details())
    assert venue_account(sim, read_only)["orders"] == 0
