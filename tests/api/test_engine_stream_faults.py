"""Engines on websocket connections in the real daemon process, through every WebSocket
fault the simulator injects (drop, silent stall, delayed messages, a sequence gap, forced
periodic disconnects), each on every Binance connection at once, public and private.

A LIVE grid engine trades through each fault: the test moves the price through its
resting buy, then back, so every round fills orders while the streams misbehave. At the
end the engine's booked trades must account exactly for what the venue's balances did
(no fill lost, none booked twice), the engine must have fallen back to REST and come
back to the streams, a PAPER engine reading candles must have kept cycling, and the
simulator must have counted no REST or WebSocket limit breached."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import grpc
import pytest

from cts.v1 import connection_pb2 as cpb
from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from tests.api.test_engine_live import venue_account
from tests.api.test_engine_service import paper_config, wait_for
from tests.api.test_engine_streams import TICKER, streams, websocket_connection
from tests.support.conn_tests import SimConnection, run_test
from tests.support.sim_fixtures import sim, sim_channel, sim_daemon  # noqa: F401
from tests.support.simulator import SimulatorThread

pytestmark = pytest.mark.long

SYMBOL = "BTC/USDT"
AMOUNT = Decimal("0.001")
FAULTS = (("ws_drop", 0.0), ("ws_stall", 60.0), ("ws_delay", 1.0), ("ws_gap", 0.0),
          ("ws_disconnect_every", 2.0))
"""Every WebSocket fault kind, with its `delay_s`: a stall outlasts the round (the daemon
must notice it, the venue does not end it), a periodic disconnect recurs within it."""
ROUND_S = 60.0
"""Upper bound on each wait of a round (a stall is noticed after the ticker's 10 s
cadence, a lost fill after the order's 5 s echo): a failing test fails, never hangs."""


def on_stream(engine: pb.Engine) -> bool:
    return engine.market_data_source == pb.MARKET_DATA_SOURCE_STREAM


def binance_sockets(sim: SimulatorThread) -> int:  # noqa: F811
    found: dict[str, Any] = sim.admin("GET", "ws")
    return sum(1 for c in found["connections"] if c["venue"] == "binance")


def holdings(sim: SimulatorThread, conn: SimConnection) -> dict[str, Decimal]:  # noqa: F811
    spot = venue_account(sim, conn)["spot"]
    return {asset: Decimal(spot[asset]["free"]) + Decimal(spot[asset]["locked"])
            for asset in ("BTC", "USDT") if asset in spot}


def booked(engines: sgrpc.EngineServiceStub, name: str) -> list[pb.EngineTrade]:
    trades: list[pb.EngineTrade] = []
    token = ""
    while True:
        page = engines.ListTrades(pb.ListTradesRequest(parent=name, page_size=1000,
                                                       page_token=token))
        trades += page.trades
        token = page.next_page_token
        if not token:
            return trades


def moved(trades: list[pb.EngineTrade]) -> dict[str, Decimal]:
    """What the engine's trades did to the account: base and quote, fees where paid."""
    change = {"BTC": Decimal(0), "USDT": Decimal(0)}
    for trade in trades:
        amount, price = Decimal(trade.amount), Decimal(trade.price)
        sign = 1 if trade.side == pb.ORDER_SIDE_BUY else -1
        change["BTC"] += sign * amount
        change["USDT"] -= sign * amount * price
        change[trade.fee_asset] -= Decimal(trade.fee)
    return change


def redialled(sim_channel: grpc.Channel, since: int) -> int:  # noqa: F811
    """Wait until the hub dialled the ticker's socket again since `since` reconnects; the
    count then. The counter, not the engine's source: an engine shows REST_FALLBACK only
    if a cycle lands between its stream going stale and the new socket's first data (or
    never, when another subscription on the socket ages out first and the redial comes
    before its own data is 10 s old), so polling for that state misses it at random."""
    deadline = time.monotonic() + ROUND_S
    while (now := streams(sim_channel)[TICKER].reconnects) <= since:
        assert time.monotonic() < deadline, f"the hub never dialled again ({now})"
        time.sleep(0.1)
    return now


def one_round(engines: sgrpc.EngineServiceStub, sim: SimulatorThread,  # noqa: F811
              sim_channel: grpc.Channel, name: str, reference: Decimal,  # noqa: F811
              fault: str, delay_s: float) -> pb.Engine:
    """The fault on every Binance socket open now, then a fill while it lasts; the engine
    once it is back on the streams after the fault is cleared."""
    before = wait_for(engines, name, lambda e: on_stream(e) and e.open_orders >= 1,
                      timeout=ROUND_S)
    reconnects = streams(sim_channel)[TICKER].reconnects
    sim.fault(fault, venue="binance", count=binance_sockets(sim), delay_s=delay_s)
    if fault == "ws_stall":  # data stops, pings go on: only data age can tell
        redialled(sim_channel, reconnects)
    sim.admin("POST", "price", {"symbol": SYMBOL, "price": str(reference * Decimal("0.985"))})
    filled = wait_for(engines, name, lambda e: e.orders_filled > before.orders_filled,
                      timeout=ROUND_S)
    sim.admin("POST", "price", {"symbol": SYMBOL, "price": str(reference)})
    wait_for(engines, name, lambda e: e.orders_placed > filled.orders_placed, timeout=ROUND_S)
    sim.clear_faults()
    return wait_for(engines, name, lambda e: on_stream(e) and e.cycles > filled.cycles + 2,
                    timeout=ROUND_S)


@pytest.mark.timeout(300)  # five fault rounds: about 120 s with both cores busy elsewhere
def test_engines_trade_through_every_websocket_fault_and_book_each_fill_once(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread, sim_channel: grpc.Channel,  # noqa: F811
) -> None:
    live_name = websocket_connection(connections, sim, "faults-live")
    conn = SimConnection(live_name, "key-faults-live-00000000", "")
    assert run_test(connections, live_name).final().status == cpb.TEST_STATUS_SUCCESS
    live = f"{live_name}/engine"
    paper = f"{websocket_connection(connections, sim, 'faults-paper')}/engine"
    candles = paper_config()  # sma_cross: woken by closed candles
    candles.symbols[:] = ["ETH/USDT"]
    engines.StartEngine(pb.StartEngineRequest(name=paper, config=candles))

    probe = paper_config("grid", reference_price="1", spacing_pct="1", levels="1",
                         amount=str(AMOUNT))
    reference = Decimal(engines.TestEngine(pb.TestEngineRequest(
        name=live, config=probe)).tickers[0].last)
    grid = paper_config("grid", reference_price=str(reference), spacing_pct="1", levels="1",
                        amount=str(AMOUNT))
    grid.mode = pb.TRADING_MODE_LIVE
    start = holdings(sim, conn)
    engines.StartEngine(pb.StartEngineRequest(name=live, config=grid))
    try:
        wait_for(engines, live, on_stream, timeout=ROUND_S)
        reconnects = streams(sim_channel)[TICKER].reconnects
        for fault, delay_s in FAULTS:
            engine = one_round(engines, sim, sim_channel, live, reference, fault, delay_s)
            assert engine.state == pb.ENGINE_STATE_RUNNING and not engine.last_error, fault
            if fault in ("ws_drop", "ws_stall", "ws_disconnect_every"):
                now = streams(sim_channel)[TICKER].reconnects
                assert now > reconnects, fault  # the hub dialled again
                reconnects = now
        assert engine.market_data_fallbacks >= 1  # reads went to REST while a stream was down
        reading = engines.GetEngine(pb.GetEngineRequest(name=paper))
        assert reading.state == pb.ENGINE_STATE_RUNNING and not reading.last_error
    finally:
        sim.clear_faults()
        engines.StopEngine(pb.StopEngineRequest(name=live))
        engines.StopEngine(pb.StopEngineRequest(name=paper))

    trades = booked(engines, live)
    assert len(trades) >= len(FAULTS)
    assert len({t.trade_id for t in trades}) == len(trades)
    end = holdings(sim, conn)
    change = moved(trades)
    assert end["BTC"] - start["BTC"] == change["BTC"], (start, end, change)
    assert abs(end["USDT"] - start["USDT"] - change["USDT"]) < Decimal("1e-8"), (
        start, end, change)
    assert sim.stats().get("violations", {}) == {}
