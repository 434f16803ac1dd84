"""LIVE spot-margin engines on websocket connections in the real daemon process, one per
venue (Binance cross margin, Bybit unified spot margin, OKX and Kraken margin), with
unmodified ccxt.pro against the simulator: market data and cycles come from the hub's
spot subscriptions (no margin stream of their own), order states from the margin
account's private stream (Binance's
listenToken user data, Bybit `order`, OKX `orders`, Kraken `executions`).

While a buy rests and cycles run, the engines send the venues no REST request at all:
they trust the stream's word on their orders, which they do only once its echo of the
new order came (else they would reconcile over REST). The buy then fills, and each fill
is booked once, as the venue made it.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import grpc
import pytest

from cts.v1 import connection_pb2 as cpb
from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from tests.api.test_engine_service import paper_config, wait_for
from tests.api.test_engine_stream_faults import ROUND_S, booked, on_stream
from tests.api.test_engine_streams import streams, websocket_connection
from tests.api.test_exchange_list import FUNDED
from tests.support.conn_tests import run_test
from tests.support.daemon_process import DaemonProcess
from tests.support.sim_fixtures import simulated_daemon
from tests.support.simulator import SimulatorThread

SYMBOL = "BTC/USDT"
AMOUNT = "0.001"
VENUES = ("binance", "bybit", "okx", "kraken")


@pytest.fixture(scope="module")
def sim_daemon(sim: SimulatorThread) -> Iterator[DaemonProcess]:
    """Kraken's public budget (1 a second) would queue four key tests past their deadline;
    the simulator does not count it (as `test_exchange_list`)."""
    yield from simulated_daemon(sim, 20, "[rate_limits.kraken.public_requests]\nlimit = 50\n")


def start_live_grid(connections: csgrpc.ConnectionServiceStub,
                    engines: sgrpc.EngineServiceStub, sim: SimulatorThread, venue: str,
                    reference: Decimal) -> str:
    """A tested websocket margin connection of `venue` and a LIVE grid on it, one buy a
    spacing under `reference`; the engine's name."""
    name = websocket_connection(connections, sim, f"mstream-{venue}", venue, "margin",
                                **FUNDED)
    result = run_test(connections, name).final()
    assert result.status != cpb.TEST_STATUS_FAILED, (venue, result.message)
    engine = f"{name}/engine"
    grid = paper_config("grid", reference_price=str(reference), spacing_pct="1", levels="1",
                        amount=AMOUNT)
    grid.symbols[:] = [SYMBOL]
    grid.mode = pb.TRADING_MODE_LIVE
    engines.StartEngine(pb.StartEngineRequest(name=engine, config=grid))
    return engine


def test_live_margin_engines_trade_on_the_streams_and_book_each_fill_once(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread, sim_channel: grpc.Channel,
) -> None:
    reference = Decimal(sim.admin("GET", f"price?symbol={SYMBOL}")["price"])
    with ThreadPoolExecutor(len(VENUES)) as pool:  # the key tests and starts side by side
        names = list(pool.map(lambda v: start_live_grid(connections, engines, sim, v,
                                                        reference), VENUES))
    try:
        resting = [wait_for(engines, name, lambda e: (on_stream(e) and e.open_orders >= 1)
                            or bool(e.last_error), timeout=ROUND_S) for name in names]
        assert all(not e.last_error for e in resting), [e.last_error for e in resting]
        hub = streams(sim_channel)  # the spot book's subscriptions, none of margin's own
        assert {f"{v}:spot:ticker:{SYMBOL}" for v in VENUES} <= hub.keys(), list(hub)
        assert not [name for name in hub if ":margin:" in name], list(hub)
        # the stream is trusted once it echoed the buy (up to 5 s): cycles on from there
        settled = [wait_for(engines, e.name, lambda x, e=e: x.cycles >= e.cycles + 1,
                            timeout=ROUND_S) for e in resting]
        before = sim.stats()["requests"]
        for engine in settled:
            wait_for(engines, engine.name, lambda x, e=engine: x.cycles >= e.cycles + 2,
                     timeout=ROUND_S)
        after = sim.stats()["requests"]
        assert {v: after.get(v, 0) - before.get(v, 0) for v in VENUES} == dict.fromkeys(
            VENUES, 0)
        sim.admin("POST", "price", {"symbol": SYMBOL, "price": str(reference * Decimal("0.985"))})
        filled = [wait_for(engines, name, lambda e: e.orders_filled >= 1 or bool(e.last_error),
                           timeout=ROUND_S) for name in names]
        assert all(e.orders_filled >= 1 and not e.last_error for e in filled), filled
        assert all(e.state == pb.ENGINE_STATE_RUNNING for e in filled)
    finally:
        sim.admin("POST", "price", {"symbol": SYMBOL, "price": str(reference)})
        for name in names:
            engines.StopEngine(pb.StopEngineRequest(name=name))
    for name, venue in zip(names, VENUES, strict=True):
        trades = booked(engines, name)
        final = engines.GetEngine(pb.GetEngineRequest(name=name))
        orders = engines.ListOrders(pb.ListOrdersRequest(parent=name, page_size=1000))
        assert not orders.next_page_token and final.orders_filled >= 1
        assert len({t.trade_id for t in trades}) == len(trades), venue
        # each fill once: the trades add up to what the orders filled (a sell level sells
        # what a buy left after a fee in the base, not AMOUNT: `ctsd.strategies.grid`)
        assert sum(Decimal(t.amount) for t in trades) == sum(
            Decimal(o.filled) for o in orders.orders), venue
    assert sim.stats().get("violations", {}) == {}
