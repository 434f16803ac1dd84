"""EngineService on perpetuals, against the real daemon process and the simulator: what
a start refuses (naming the field), and a PAPER perpetuals engine that runs at a leverage."""

from __future__ import annotations

import grpc

from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from tests.api.test_engine_service import paper_config, wait_for
from tests.support.conn_tests import sim_connection
from tests.support.rpc import precondition_violations, rpc_error, violations
from tests.support.sim_fixtures import sim, sim_channel, sim_daemon  # noqa: F401
from tests.support.simulator import SimulatorThread

PERP = "BTC/USDT:USDT"


def test_what_a_market_cannot_do_is_refused_naming_the_field(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread,  # noqa: F811
) -> None:
    spot = f"{sim_connection(connections, sim, 'perp-refusals-spot').name}/engine"
    levered = paper_config()
    levered.leverage["BTC/USDT"] = 5
    err = rpc_error(lambda: engines.StartEngine(pb.StartEngineRequest(name=spot, config=levered)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "trades spot" in precondition_violations(err)["config.leverage"]
    shorts = paper_config(fast="2", slow="3", quote_amount="100", direction="long_short")
    err = rpc_error(lambda: engines.StartEngine(pb.StartEngineRequest(name=spot, config=shorts)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "cannot go short" in precondition_violations(err)["config.params"]

    perp = f"{sim_connection(connections, sim, 'perp-refusals', api_type='perp').name}/engine"
    config = paper_config()
    config.symbols[:] = [PERP]
    config.leverage[PERP] = 200
    err = rpc_error(lambda: engines.StartEngine(pb.StartEngineRequest(name=perp, config=config)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(err) == {f'config.leverage["{PERP}"]': "must be a whole number from 1 to 125"}
    config.leverage[PERP] = 110
    config.risk.max_position_notional = "100000"
    err = rpc_error(lambda: engines.StartEngine(pb.StartEngineRequest(name=perp, config=config)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "above the venue's maximum 100x" in violations(err)[f'config.leverage["{PERP}"]']
    listed = {e.name for e in engines.ListEngines(pb.ListEnginesRequest()).engines}
    assert not listed & {spot, perp}  # nothing was stored


def test_a_paper_perpetuals_engine_runs_at_its_leverage(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread,  # noqa: F811
) -> None:
    name = f"{sim_connection(connections, sim, 'perp-paper', api_type='perp').name}/engine"
    config = paper_config()
    config.symbols[:] = [PERP]
    config.leverage[PERP] = 5
    started = engines.StartEngine(pb.StartEngineRequest(name=name, config=config))
    assert started.mode == pb.TRADING_MODE_PAPER
    running = wait_for(engines, name, lambda e: e.state == pb.ENGINE_STATE_RUNNING
                       and e.cycles >= 2)
    assert not running.last_error and running.position_differences == 0
    dry = engines.TestEngine(pb.TestEngineRequest(name=name))
    assert [t.symbol for t in dry.tickers] == [PERP]
    engines.StopEngine(pb.StopEngineRequest(name=name))
