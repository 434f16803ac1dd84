"""Engines on a websocket connection, through the daemon's API on the simulator: cycles on
stream data with no REST polling, the streams in GetSystemStatus and on the engine, a silent
stall seen as the REST fallback and recovered from, and a key test that checks the streams."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from cts.v1 import connection_pb2 as cpb
from cts.v1 import connection_service_pb2 as cspb
from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from cts.v1 import health_service_pb2 as hpb
from cts.v1.health_service_pb2_grpc import HealthServiceStub
from tests.api.test_engine_service import paper_config, wait_for
from tests.support.conn_tests import run_test, sim_connection
from tests.support.sim_fixtures import sim, sim_channel, sim_daemon  # noqa: F401
from tests.support.simulator import SimulatorThread

pytestmark = pytest.mark.long

TICKER = "binance:spot:ticker:BTC/USDT"
QUIET_GRID = paper_config("grid", reference_price="1", spacing_pct="1", levels="1",
                          amount="0.001")


def websocket_connection(connections: csgrpc.ConnectionServiceStub,
                         simulator: SimulatorThread, cid: str, exchange: str = "binance",
                         api_type: str = "spot", **account: Any) -> str:
    conn = sim_connection(connections, simulator, cid, exchange, api_type=api_type, **account)
    connections.UpdateConnection(cspb.UpdateConnectionRequest(
        connection=cpb.Connection(name=conn.name,
                                  market_data_method=cpb.MARKET_DATA_METHOD_WEBSOCKET),
        update_mask=field_mask_pb2.FieldMask(paths=["market_data_method"])))
    return conn.name


def streams(channel: grpc.Channel) -> dict[str, hpb.MarketStream]:
    status = HealthServiceStub(channel).GetSystemStatus(hpb.GetSystemStatusRequest())
    return {s.stream: s for s in status.streams}


def test_a_websocket_engine_runs_on_the_streams_and_falls_back_through_a_stall(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread, sim_channel: grpc.Channel,  # noqa: F811
) -> None:
    name = f"{websocket_connection(connections, sim, 'engine-ws')}/engine"
    engines.StartEngine(pb.StartEngineRequest(name=name, config=QUIET_GRID))
    try:
        streaming = wait_for(engines, name, lambda e: e.cycles >= 2 and (
            e.market_data_source == pb.MARKET_DATA_SOURCE_STREAM))
        assert not streaming.last_error
        ticker = streams(sim_channel)[TICKER]
        assert (ticker.state, ticker.consumers) == ("live", 1)
        assert ticker.HasField("data_age") and ticker.messages_per_second >= 0

        # Pings go on, data stops, on this socket and on the one the hub dials when it
        # notices: the engine stays on REST for a whole cadence, a state a poll cannot
        # miss (one stalled socket makes it a moment between the stale mark and the new
        # socket's first data, or nothing if no cycle lands in it).
        sim.fault("ws_stall", venue="binance", count=2, delay_s=120)
        fallback = wait_for(engines, name, lambda e: (
            e.market_data_source == pb.MARKET_DATA_SOURCE_REST_FALLBACK), timeout=30)
        assert "stale" in fallback.market_data_problem and TICKER in (
            fallback.market_data_problem)
        back = wait_for(engines, name, lambda e: (
            e.market_data_source == pb.MARKET_DATA_SOURCE_STREAM
            and e.cycles > fallback.cycles), timeout=30)
        assert back.market_data_fallbacks >= 1 and back.state == pb.ENGINE_STATE_RUNNING
        assert streams(sim_channel)[TICKER].reconnects >= 2
    finally:
        sim.clear_faults()
        engines.StopEngine(pb.StopEngineRequest(name=name))
    assert TICKER not in streams(sim_channel)  # the last reader left: unsubscribed
    assert sim.stats().get("violations", {}) == {}


@pytest.mark.parametrize(("exchange", "api_type"), [
    (x, t) for x in ("binance", "bybit", "okx") for t in ("spot", "perp")])
def test_a_key_test_on_a_websocket_connection_checks_its_streams(
    connections: csgrpc.ConnectionServiceStub, sim: SimulatorThread,  # noqa: F811
    sim_channel: grpc.Channel, exchange: str, api_type: str,  # noqa: F811
) -> None:
    """Each venue's public stream and its private login (Binance's WebSocket API signature
    or USDⓈ-M listenKey, Bybit `auth`, OKX `login`) as the key test
    on a websocket connection runs them. Kraken's login is checked with its probe
    (tests/marketdata/test_key_checks.py): its REST pacing does not fit the whole key test
    in this daemon's 3 s test deadline."""
    name = websocket_connection(connections, sim, f"test-ws-{exchange}-{api_type}", exchange,
                                api_type)
    stream = run_test(connections, name)
    lines = [line.message for line in stream.lines]
    assert stream.result is not None and stream.result.status != cpb.TEST_STATUS_FAILED, lines
    assert any(m.startswith("public stream: ") and " ticker received in " in m
               for m in lines), lines
    assert "private stream: logged in; order updates subscribed" in lines


def test_perpetuals_engines_run_on_the_streams(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread,  # noqa: F811
) -> None:
    """PAPER and LIVE perpetuals on websocket connections cycle on the hub's streams (LIVE
    orders and fills by the private stream: tests/api/test_engine_perp_stream_faults.py)."""
    perp = "BTC/USDT:USDT"
    paper = f"{websocket_connection(connections, sim, 'ws-perp-paper', api_type='perp')}/engine"
    config = paper_config()
    config.symbols[:] = [perp]
    config.leverage[perp] = 5
    engines.StartEngine(pb.StartEngineRequest(name=paper, config=config))
    live_name = websocket_connection(connections, sim, "ws-perp-live", api_type="perp")
    assert run_test(connections, live_name).final().status == cpb.TEST_STATUS_SUCCESS
    live = f"{live_name}/engine"
    probe = paper_config("grid", reference_price="1", spacing_pct="1", levels="1",
                         amount="0.001")
    probe.symbols[:] = [perp]
    price = engines.TestEngine(pb.TestEngineRequest(name=live, config=probe)).tickers[0].last
    grid = paper_config("grid", reference_price=price, spacing_pct="1", levels="1",
                        amount="0.001")
    grid.symbols[:] = [perp]
    grid.mode = pb.TRADING_MODE_LIVE
    engines.StartEngine(pb.StartEngineRequest(name=live, config=grid))
    try:
        for name in (paper, live):
            running = wait_for(engines, name, lambda e: e.cycles >= 2 and (
                e.market_data_source == pb.MARKET_DATA_SOURCE_STREAM), timeout=30)
            assert running.state == pb.ENGINE_STATE_RUNNING and not running.last_error
        assert wait_for(engines, live, lambda e: e.open_orders == 1).position_differences == 0
    finally:
        engines.StopEngine(pb.StopEngineRequest(name=paper))
        engines.StopEngine(pb.StopEngineRequest(name=live))
