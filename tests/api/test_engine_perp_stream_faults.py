"""LIVE perpetuals engines on websocket connections in the real daemon process, their fills
and order states on the venues' private streams (Binance USDⓈ-M listenKey user data, Bybit
`order`, OKX `orders`, through unmodified ccxt.pro), through every WebSocket fault the
simulator injects, on Binance, Bybit and OKX at once.

Each round moves the price through every engine's resting buy while the fault lasts, then
back. At the end each engine's booked trades must be exactly the venue's own fills of
the account (amounts, prices, fees; no fill lost, none booked twice), its position the
venue's, and no position check may have tripped although the private stream ran behind
or ahead of the positions read all along. A real outside trade on the same account (a
market order another program sends with the key) must still stop the engine, naming it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import ccxt.async_support as ccxt_async
import grpc
import pytest

from cts.v1 import connection_pb2 as cpb
from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from ctsd.sim.ccxt_target import point_at_simulator
from tests.api.test_engine_service import paper_config, wait_for
from tests.api.test_engine_stream_faults import FAULTS, ROUND_S, booked, on_stream
from tests.api.test_engine_streams import streams, websocket_connection
from tests.sim.conftest import CLIENT_TIMEOUT_S
from tests.support.conn_tests import PASSPHRASE, SECRET_PREFIX, SimConnection, run_test
from tests.support.daemon_process import DaemonProcess
from tests.support.sim_fixtures import sim, sim_channel, sim_daemon  # noqa: F401
from tests.support.simulator import SimulatorThread

pytestmark = pytest.mark.long

PERP = "BTC/USDT:USDT"
AMOUNT = "0.001"
VENUES = ("binance", "bybit", "okx")
DEFAULT_TYPE = {"binance": "future", "bybit": "swap", "okx": "swap"}
T = TypeVar("T")


def venue_call(sim: SimulatorThread, conn: SimConnection, venue: str,  # noqa: F811
               call: Callable[[Any], Awaitable[T]]) -> T:
    """`call` with an unmodified ccxt client of the account's key, as another program on
    the same account would make it (the daemon knows nothing of it)."""
    async def run() -> T:
        exchange = getattr(ccxt_async, venue)({
            "apiKey": conn.api_key, "secret": conn.secret, "password": PASSPHRASE,
            "enableRateLimit": False, "timeout": int(CLIENT_TIMEOUT_S * 1000),
            "options": {"defaultType": DEFAULT_TYPE[venue]}})
        point_at_simulator(exchange, sim.base_url)
        try:
            await exchange.load_markets()
            return await call(exchange)
        finally:
            await exchange.close()

    return asyncio.run(run())


def venue_fills(sim: SimulatorThread, conn: SimConnection, venue: str,  # noqa: F811
                since_ms: int) -> list[dict[str, Any]]:
    async def fetch(exchange: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await exchange.fetch_my_trades(PERP, since_ms, 100)
        size = Decimal(str(exchange.market(PERP).get("contractSize") or 1))
        return [{"side": t["side"], "amount": Decimal(str(t["amount"])) * size,
                 "price": Decimal(str(t["price"])),
                 "fee": Decimal(str((t.get("fee") or {}).get("cost") or 0))} for t in found]

    return venue_call(sim, conn, venue, fetch)


def outside_market_buy(sim: SimulatorThread, conn: SimConnection, venue: str,  # noqa: F811
                       amount: Decimal) -> None:
    async def buy(exchange: Any) -> None:
        size = Decimal(str(exchange.market(PERP).get("contractSize") or 1))
        params = {"marginMode": "cross"} if venue == "okx" else {}
        await exchange.create_order(PERP, "market", "buy", float(amount / size), None, params)

    venue_call(sim, conn, venue, buy)


def sums(rows: list[tuple[str, Decimal, Decimal, Decimal]]) -> dict[str, tuple[Decimal, ...]]:
    """Per side: amount, notional and fee summed (fills of one order may split
    differently on the two paths; what they add up to may not)."""
    found: dict[str, tuple[Decimal, ...]] = {}
    for side, amount, price, fee in rows:
        total = found.get(side, (Decimal(0),) * 3)
        found[side] = (total[0] + amount, total[1] + amount * price, total[2] + abs(fee))
    return found


def engine_sums(trades: list[pb.EngineTrade]) -> dict[str, tuple[Decimal, ...]]:
    return sums([("buy" if t.side == pb.ORDER_SIDE_BUY else "sell", Decimal(t.amount),
                  Decimal(t.price), Decimal(t.fee)) for t in trades])


def venue_position(sim: SimulatorThread, conn: SimConnection) -> Decimal:  # noqa: F811
    found = sim.admin("GET", f"accounts/{conn.api_key}")["positions"]
    return sum((Decimal(p["qty"]) * (-1 if p["side"] == "short" else 1)
                for p in found if p["symbol"] == PERP), Decimal(0))


def ticker_stream(venue: str, channel: grpc.Channel) -> str:
    return next(name for name in streams(channel)
                if name.startswith(f"{venue}:") and name.endswith(f":ticker:{PERP}"))


def sockets(sim: SimulatorThread, venue: str) -> int:  # noqa: F811
    found: dict[str, Any] = sim.admin("GET", "ws")
    return sum(1 for c in found["connections"] if c["venue"] == venue)


def start_live_grid(connections: csgrpc.ConnectionServiceStub,
                    engines: sgrpc.EngineServiceStub, sim: SimulatorThread,  # noqa: F811
                    venue: str, cid: str) -> tuple[str, SimConnection, Decimal]:
    """A tested websocket perpetuals connection of `venue` and a LIVE grid on it, one buy a
    spacing under the price; its engine name, connection and reference price."""
    name = websocket_connection(connections, sim, cid, venue, "perp")
    conn = SimConnection(name, f"key-{cid}-00000000", SECRET_PREFIX + cid)
    assert run_test(connections, name).final().status == cpb.TEST_STATUS_SUCCESS
    engine = f"{name}/engine"
    reference = Decimal(sim.admin("GET", f"price?symbol={PERP}")["price"])
    grid = paper_config("grid", reference_price=str(reference), spacing_pct="1", levels="1",
                        amount=AMOUNT)
    grid.symbols[:] = [PERP]
    grid.mode = pb.TRADING_MODE_LIVE
    engines.StartEngine(pb.StartEngineRequest(name=engine, config=grid))
    return engine, conn, reference


def wait_all(engines: sgrpc.EngineServiceStub, names: list[str],
             done: Callable[[pb.Engine], bool]) -> list[pb.Engine]:
    return [wait_for(engines, name, done, timeout=ROUND_S) for name in names]


def one_round(engines: sgrpc.EngineServiceStub, sim: SimulatorThread,  # noqa: F811
              channel: grpc.Channel, names: list[str], reference: Decimal, fault: str,
              delay_s: float) -> list[pb.Engine]:
    """The fault on every socket of the three venues, a fill of each engine's buy while it
    lasts, the price back (each places again); each engine once back on the streams."""
    before = wait_all(engines, names, lambda e: on_stream(e) and e.open_orders >= 1)
    tickers = {v: ticker_stream(v, channel) for v in VENUES}
    reconnects = {v: streams(channel)[tickers[v]].reconnects for v in VENUES}
    for venue in VENUES:
        sim.fault(fault, venue=venue, count=sockets(sim, venue), delay_s=delay_s)
    if fault == "ws_stall":  # data stops, pings go on: only data age can tell
        for venue in VENUES:
            deadline = time.monotonic() + ROUND_S
            while streams(channel)[tickers[venue]].reconnects <= reconnects[venue]:
                assert time.monotonic() < deadline, f"{venue}: the hub never dialled again"
                time.sleep(0.1)
    sim.admin("POST", "price", {"symbol": PERP, "price": str(reference * Decimal("0.985"))})
    filled = [wait_for(engines, name, lambda e, b=b: e.orders_filled > b.orders_filled,
                       timeout=ROUND_S) for name, b in zip(names, before, strict=True)]
    sim.admin("POST", "price", {"symbol": PERP, "price": str(reference)})
    for name, f in zip(names, filled, strict=True):
        wait_for(engines, name, lambda e, f=f: e.orders_placed > f.orders_placed,
                 timeout=ROUND_S)
    sim.clear_faults()
    return [wait_for(engines, name, lambda e, f=f: on_stream(e) and e.cycles > f.cycles + 2,
                     timeout=ROUND_S) for name, f in zip(names, filled, strict=True)]


def test_perpetuals_engines_book_stream_fills_once_through_every_fault_without_a_trip(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread, sim_channel: grpc.Channel, sim_daemon: DaemonProcess,  # noqa: F811
) -> None:
    since_ms = int(time.time() * 1000) - 60_000
    started = [start_live_grid(connections, engines, sim, v, f"pfault-{v}") for v in VENUES]
    names = [name for name, _, _ in started]
    reference = started[0][2]
    try:
        wait_all(engines, names, on_stream)
        for fault, delay_s in FAULTS:
            for engine in one_round(engines, sim, sim_channel, names, reference, fault,
                                    delay_s):
                assert engine.state == pb.ENGINE_STATE_RUNNING and not engine.last_error, (
                    fault, engine.name, engine.last_error)
                assert engine.position_differences == 0, (fault, engine)
    finally:
        sim.clear_faults()
        for name in names:
            engines.StopEngine(pb.StopEngineRequest(name=name))

    for (name, conn, _), venue in zip(started, VENUES, strict=True):
        trades = booked(engines, name)
        assert len(trades) >= len(FAULTS), venue
        assert len({t.trade_id for t in trades}) == len(trades), venue
        fills = venue_fills(sim, conn, venue, since_ms)
        expected = sums([(f["side"], f["amount"], f["price"], f["fee"]) for f in fills])
        found = engine_sums(trades)
        assert found.keys() == expected.keys(), (venue, found, expected)
        for side, (amount, notional, fee) in expected.items():  # a merged fill's price is
            assert found[side][0] == amount, (venue, side)  # a quotient: 1e-8 of leeway
            assert abs(found[side][1] - notional) < Decimal("1e-8"), (venue, side)
            assert abs(found[side][2] - fee) < Decimal("1e-8"), (venue, side)
        net = sum((Decimal(t.amount) * (1 if t.side == pb.ORDER_SIDE_BUY else -1)
                   for t in trades), Decimal(0))
        assert venue_position(sim, conn) == net, venue
        final = engines.GetEngine(pb.GetEngineRequest(name=name))
        assert final.position_differences == 0, venue
    assert sim.stats().get("violations", {}) == {}
    interrupted = {r.get("exchange") for r in sim_daemon.records() if r.get("msg") in (
        "private order stream interrupted", "private order stream silent; resubscribing")}
    assert interrupted >= set(VENUES)  # each engine's fills came by its private stream


def test_an_outside_trade_still_stops_a_streaming_perpetuals_engine(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread, sim_channel: grpc.Channel,  # noqa: F811
) -> None:
    started = [start_live_grid(connections, engines, sim, v, f"poutside-{v}") for v in VENUES]
    try:
        for name, _, _ in started:
            wait_for(engines, name, lambda e: on_stream(e) and e.open_orders >= 1,
                     timeout=ROUND_S)
        for (name, conn, _), venue in zip(started, VENUES, strict=True):
            outside_market_buy(sim, conn, venue, Decimal("0.002"))
            failed = wait_for(engines, name, lambda e: e.state == pb.ENGINE_STATE_FAILED,
                              timeout=ROUND_S)
            assert "ledger 0, venue 0.002 (outside trade: venue order " in failed.last_error, (
                venue, failed.last_error)
            assert failed.position_differences == 1, venue
    finally:
        for name, _, _ in started:
            engines.StopEngine(pb.StopEngineRequest(name=name))
