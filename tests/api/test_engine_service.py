"""EngineService against the real daemon process and the exchange simulator, over real ccxt:
a PAPER engine started, watched, tested, listed and stopped; refusals with their codes."""

from __future__ import annotations

import time

import grpc
from google.protobuf import duration_pb2

from cts.engine_events import changed_engines
from cts.v1 import connection_pb2 as cpb
from cts.v1 import connection_service_pb2 as cspb
from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from cts.v1 import health_service_pb2 as hpb
from cts.v1.health_service_pb2_grpc import HealthServiceStub
from tests.support.conn_tests import run_test, sim_connection
from tests.support.daemon_process import DaemonProcess
from tests.support.rpc import rpc_error, violations
from tests.support.sim_fixtures import sim, sim_channel, sim_daemon  # noqa: F401
from tests.support.simulator import SimulatorThread

SYMBOL = "BTC/USDT"


def paper_config(strategy: str = "sma_cross", **params: str) -> pb.EngineConfig:
    return pb.EngineConfig(
        strategy=strategy, symbols=[SYMBOL],
        params=params or {"fast": "2", "slow": "3", "quote_amount": "100"},
        interval=duration_pb2.Duration(seconds=1))


def wait_for(stub: sgrpc.EngineServiceStub, name: str, done: object, timeout: float = 15.0,
             ) -> pb.Engine:
    deadline = time.monotonic() + timeout
    while True:
        engine = stub.GetEngine(pb.GetEngineRequest(name=name))
        if callable(done) and done(engine):
            return engine
        assert time.monotonic() < deadline, f"engine never got there: {engine}"
        time.sleep(0.1)


def test_a_paper_engine_runs_on_the_simulator_and_stops(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread, sim_channel: grpc.Channel,  # noqa: F811
) -> None:
    conn = sim_connection(connections, sim, "engine-paper")
    name = f"{conn.name}/engine"
    watch = engines.WatchEngines(pb.WatchEnginesRequest())
    first = next(watch)
    assert first.WhichOneof("event") == "snapshot"
    started = engines.StartEngine(pb.StartEngineRequest(name=name, config=paper_config()))
    assert started.mode == pb.TRADING_MODE_PAPER and started.engine_id
    running = wait_for(engines, name, lambda e: e.state == pb.ENGINE_STATE_RUNNING
                       and e.cycles >= 2)
    assert running.heartbeat_time.seconds > 0 and not running.last_error
    assert next(e.name for event in watch for e in changed_engines(event)) == name
    assert name in [e.name for e in engines.ListEngines(pb.ListEnginesRequest()).engines]
    dry = engines.TestEngine(pb.TestEngineRequest(name=name))
    assert [t.symbol for t in dry.tickers] == [SYMBOL] and dry.tickers[0].last
    health = engines.GetCoordinatorHealth(pb.GetCoordinatorHealthRequest())
    assert health.running >= 1 and health.watchers >= 1
    engines.ListOrders(pb.ListOrdersRequest(parent=name))  # none expected yet, but served
    engines.ListTrades(pb.ListTradesRequest(parent=name))
    assert connections.GetConnection(cspb.GetConnectionRequest(name=conn.name)).active
    status = HealthServiceStub(sim_channel).GetSystemStatus(hpb.GetSystemStatusRequest())
    assert {e.state: e.count for e in status.engines}.get("running") == 1
    assert {c.state: c.count for c in status.connections}.get("active") == 1
    stopped = engines.StopEngine(pb.StopEngineRequest(name=name))
    assert stopped.state == pb.ENGINE_STATE_STOPPED
    assert not connections.GetConnection(cspb.GetConnectionRequest(name=conn.name)).active
    watch.cancel()


def test_a_grid_engine_places_paper_orders_around_the_live_price(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread,  # noqa: F811
) -> None:
    conn = sim_connection(connections, sim, "engine-grid")
    name = f"{conn.name}/engine"
    dry = engines.TestEngine(pb.TestEngineRequest(name=name, config=paper_config(
        "grid", reference_price="1", spacing_pct="1", levels="1", amount="0.001")))
    price = dry.tickers[0].last
    config = paper_config("grid", reference_price=price, spacing_pct="1", levels="2",
                          amount="0.001")
    config.paper.balances["USDT"] = "100000"
    config.paper.balances["BTC"] = "1"
    dry = engines.TestEngine(pb.TestEngineRequest(name=name, config=config))
    assert dry.orders and all(o.allowed for o in dry.orders), dry
    engines.StartEngine(pb.StartEngineRequest(name=name, config=config))
    engine = wait_for(engines, name, lambda e: e.orders_placed >= len(dry.orders))
    orders = engines.ListOrders(pb.ListOrdersRequest(parent=name)).orders
    assert len(orders) >= len(dry.orders) and engine.open_orders >= 1
    assert all(o.client_order_id.startswith("cts" + engine.engine_id) for o in orders)
    engines.StopEngine(pb.StopEngineRequest(name=name))


def test_refusals_carry_their_codes_and_fields(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread,  # noqa: F811
) -> None:
    conn = sim_connection(connections, sim, "engine-off", enabled=False)
    name = f"{conn.name}/engine"
    err = rpc_error(lambda: engines.StartEngine(
        pb.StartEngineRequest(name=name, config=paper_config())))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "disabled" in str(err.details())
    connections.SetConnectionEnabled(cspb.SetConnectionEnabledRequest(name=conn.name,
                                                                      enabled=True))
    bad = paper_config(fast="0", slow="3", quote_amount="100")
    bad.symbols.append("nope")
    err = rpc_error(lambda: engines.StartEngine(pb.StartEngineRequest(name=name, config=bad)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {"config.params.fast", "config.symbols[1]"} <= set(violations(err))
    live = paper_config()
    live.mode = pb.TRADING_MODE_LIVE
    err = rpc_error(lambda: engines.StartEngine(pb.StartEngineRequest(name=name, config=live)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    err = rpc_error(lambda: engines.GetEngine(pb.GetEngineRequest(name="connections/nope/engine")))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_a_connection_whose_last_test_failed_may_not_run_an_engine(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread,  # noqa: F811
) -> None:
    conn = sim_connection(connections, sim, "engine-badkey", stored_secret="wrong-secret")
    result = run_test(connections, conn.name).final()
    assert result.status == cpb.TEST_STATUS_FAILED
    err = rpc_error(lambda: engines.StartEngine(
        pb.StartEngineRequest(name=f"{conn.name}/engine", config=paper_config())))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "last test" in str(err.details())


def test_a_running_engine_resumes_after_a_daemon_restart(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread, sim_daemon: DaemonProcess,  # noqa: F811
) -> None:
    conn = sim_connection(connections, sim, "engine-resume")
    name = f"{conn.name}/engine"
    engine_id = engines.StartEngine(
        pb.StartEngineRequest(name=name, config=paper_config())).engine_id
    wait_for(engines, name, lambda e: e.state == pb.ENGINE_STATE_RUNNING)
    sim_daemon.stop()
    sim_daemon.start()
    with grpc.insecure_channel(sim_daemon.address) as channel:
        stub = sgrpc.EngineServiceStub(channel)
        resumed = wait_for(stub, name, lambda e: e.state == pb.ENGINE_STATE_RUNNING
                           and e.cycles >= 1)
        assert resumed.engine_id == engine_id
        stub.StopEngine(pb.StopEngineRequest(name=name))
