"""ListExchanges promises nothing the daemon does not do: every (exchange, api type) it
advertises passes a key test, and runs a PAPER and a LIVE engine whose order fills, against
the simulator through the real daemon; what it does not advertise, StartEngine refuses
with FAILED_PRECONDITION before anything is placed.

The cases come from the registry the daemon encodes for ListExchanges, and
`test_the_list_promises_exactly_what_is_tested` compares the daemon's answer with
them: a promise added to the list without a case here fails that test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import grpc
import pytest

from cts.v1 import connection_pb2 as cpb
from cts.v1 import connection_service_pb2 as cspb
from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from ctsd.exchanges.registry import ExchangeRegistry
from ctsd.exchanges.spec import ApiType, ApiTypeSupport
from ctsd.sim.ratelimit import RateLimitConfig
from tests.api.test_engine_service import paper_config, wait_for
from tests.api.test_engine_streams import websocket_connection
from tests.support.conn_tests import SimConnection, run_test, sim_connection
from tests.support.daemon_process import DaemonProcess
from tests.support.market_rig import LIMIT_SCALE, nearest_call, raised_limits_toml
from tests.support.rpc import rpc_error
from tests.support.sim_fixtures import sim_channel, simulated_daemon  # noqa: F401
from tests.support.simulator import DEFAULT_CONFIG, SimulatorThread, running_simulator

PROTO_API_TYPES = {
    ApiType.SPOT: cpb.API_TYPE_SPOT, ApiType.MARGIN: cpb.API_TYPE_MARGIN,
    ApiType.PERPETUAL_FUTURES: cpb.API_TYPE_PERPETUAL_FUTURES,
    ApiType.OPTIONS: cpb.API_TYPE_OPTIONS,
}
SHORT = {ApiType.SPOT: "spot", ApiType.MARGIN: "margin", ApiType.PERPETUAL_FUTURES: "perp",
         ApiType.OPTIONS: "options"}
SYMBOLS = {ApiType.SPOT: "BTC/USDT", ApiType.MARGIN: "BTC/USDT",
           ApiType.PERPETUAL_FUTURES: "BTC/USDT:USDT"}
OPTION_SPACING_PCT = "25"
"""How far under an option's price its grid buys: out of reach of the call's motion while
the test waits, within reach of a 3 % fall of its underlying (`run_until_filled`)."""
FUNDED: dict[str, Any] = {
    "balances": {"spot": {"USDT": "5000", "BTC": "0.5"}, "derivatives": {"USDT": "5000"},
                 "margin": {"USDT": "5000"}, "options": {"USDT": "5000"}},
    "permissions": ["read", "trade", "margin", "options"],
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    """The simulator with every venue limit multiplied by `LIMIT_SCALE`, as `sim_daemon`'s."""
    with running_simulator(replace(DEFAULT_CONFIG, limits=RateLimitConfig(scale=LIMIT_SCALE))
                           ) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def sim_daemon(sim: SimulatorThread) -> Iterator[DaemonProcess]:
    """Key tests and engines of every api type in one daemon, its limits and the venues'
    scaled up alike: these tests are about what is advertised, and Kraken's budgets (public
    calls 1 a second, the starter call counter draining 0.33 a second) would queue them
    past the usual 3 s deadline and keep a LIVE engine waiting in real time."""
    yield from simulated_daemon(sim, 20, raised_limits_toml())


@dataclass(frozen=True)
class Case:
    exchange: str
    support: ApiTypeSupport

    @property
    def api_type(self) -> ApiType:
        return self.support.api_type

    @property
    def id(self) -> str:
        return f"{self.exchange}-{self.api_type.value}"

    def connection(self, stub: csgrpc.ConnectionServiceStub, sim: SimulatorThread,
                   suffix: str) -> SimConnection:
        cid = f"{self.exchange}-{SHORT[self.api_type]}-{suffix}"
        return sim_connection(stub, sim, cid, self.exchange, api_type=SHORT[self.api_type],
                              **FUNDED)


CASES = [Case(spec.id, spec.support_of(t)) for spec in ExchangeRegistry.default().all()
         for t in spec.api_types]


def cases(promise: str, held: bool = True) -> list[Any]:
    return [pytest.param(c, id=c.id) for c in CASES if getattr(c.support, promise) is held]


def test_the_list_promises_exactly_what_is_tested(
    connections: csgrpc.ConnectionServiceStub,
) -> None:
    listed = connections.ListExchanges(cspb.ListExchangesRequest()).exchanges
    promised = {(e.exchange_id, s.api_type, s.key_test, s.paper_engines, s.live_engines,
                 s.streams) for e in listed for s in e.api_type_support}
    tested = {(c.exchange, PROTO_API_TYPES[c.api_type], c.support.key_test, c.support.paper,
               c.support.live, c.support.streams) for c in CASES}
    assert promised == tested
    assert all(list(e.api_types) == [s.api_type for s in e.api_type_support] for e in listed)
    assert all(c.support.paper for c in CASES if c.support.streams)
    assert all(c.support.note for c in CASES if not (c.support.paper and c.support.live))


@pytest.mark.parametrize("case", cases("key_test"))
def test_every_advertised_key_test_passes(
    connections: csgrpc.ConnectionServiceStub, sim: SimulatorThread,
    case: Case,
) -> None:
    conn = case.connection(connections, sim, "key")
    stream = run_test(connections, conn.name)
    result = stream.final()
    assert result.status != cpb.TEST_STATUS_FAILED, result.message
    if case.api_type in (ApiType.MARGIN, ApiType.OPTIONS):
        assert stream.steps[-1] == case.api_type.value


def symbol_of(case: Case, sim: SimulatorThread) -> str:
    """The case's market: a pair, or (options) the soonest BTC call expiring a day on or
    later, struck nearest the price, the underlying moved to its strike.

    A day or more from expiry keeps the call's value at 0.9 % of the underlying or more,
    so the underlying's own motion between the test reading the price and the engine's
    cycles (up to about 0.2 % in 30 s: a 0.08 % per-second noise and the 5-minute wave)
    moves the call by about 11 % at most: inside `OPTION_SPACING_PCT`."""
    if case.api_type is not ApiType.OPTIONS:
        return SYMBOLS[case.api_type]
    assert sim.server is not None
    symbol, contract = nearest_call(sim.server, sim.server.sim.market.path_ms() + 86_400_000)
    # at the money: earlier cases took the underlying down, which leaves a far
    # out-of-the-money call worth a tick or two, a move of 1 % no longer moves its book
    sim.admin("POST", "price", {"symbol": "BTC/USDT", "price": str(contract.strike)})
    return symbol


def grid_on(engines: sgrpc.EngineServiceStub, name: str, symbol: str) -> tuple[pb.EngineConfig,
                                                                                 Decimal]:
    """A grid with one buy 0.5 % under the current price, and that price (options: 0.1
    of a contract, their smallest lots being 0.01, and the buy `OPTION_SPACING_PCT` under:
    an at-the-money call moves 40 to 60 times its underlying's percentage, so 0.5 % is
    inside the noise of one 5-second trade slot and the buy either never rests, the
    mid already under it, or is cancelled as on the wrong side)."""
    option = symbol.count("-") == 3
    amount = "0.1" if option else "0.001"
    spacing = OPTION_SPACING_PCT if option else "0.5"
    probe = paper_config("grid", reference_price="1", spacing_pct="1", levels="1",
                         amount=amount)
    probe.symbols[:] = [symbol]
    price = Decimal(engines.TestEngine(pb.TestEngineRequest(name=name, config=probe))
                    .tickers[0].last)
    config = paper_config("grid", reference_price=str(price), spacing_pct=spacing, levels="1",
                          amount=amount)
    config.symbols[:] = [symbol]
    return config, price


def run_until_filled(engines: sgrpc.EngineServiceStub, sim: SimulatorThread,
                     name: str, config: pb.EngineConfig, price: Decimal, symbol: str) -> None:
    engines.StartEngine(pb.StartEngineRequest(name=name, config=config))
    try:
        wait_for(engines, name, lambda e: e.orders_placed >= 1 and e.open_orders >= 1)
        pair, drop = symbol.split(":")[0], Decimal("0.99")
        if symbol.count("-") == 3:  # an option: its underlying 3 % lower takes a call down
            assert sim.server is not None  # by half or more, through the buy 25 % under
            price, drop = sim.server.sim.market.price(pair), Decimal("0.97")
        sim.admin("POST", "price", {"symbol": pair, "price": str(price * drop)})
        engine = wait_for(engines, name, lambda e: e.orders_filled >= 1 or e.last_error)
        assert engine.orders_filled >= 1 and not engine.last_error, engine
    finally:
        engines.StopEngine(pb.StopEngineRequest(name=name))


def placed(sim: SimulatorThread, conn: SimConnection) -> int:
    """Orders the connection's account placed at the venue, options' included."""
    answer = sim.admin("GET", f"accounts/{conn.api_key}")
    return int(answer["orders"]) + int(answer["option_orders"])


@pytest.mark.parametrize("case", cases("paper"))
def test_every_advertised_paper_engine_fills_an_order(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread, case: Case,
) -> None:
    conn = case.connection(connections, sim, "paper")
    name = f"{conn.name}/engine"
    symbol = symbol_of(case, sim)
    config, price = grid_on(engines, name, symbol)
    run_until_filled(engines, sim, name, config, price, symbol)


@pytest.mark.parametrize("case", cases("live"))
def test_every_advertised_live_engine_fills_an_order(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread, case: Case,
) -> None:
    conn = case.connection(connections, sim, "live")
    assert run_test(connections, conn.name).final().status != cpb.TEST_STATUS_FAILED
    name = f"{conn.name}/engine"
    symbol = symbol_of(case, sim)
    config, price = grid_on(engines, name, symbol)
    config.mode = pb.TRADING_MODE_LIVE
    run_until_filled(engines, sim, name, config, price, symbol)
    assert placed(sim, conn) >= 1


@pytest.mark.parametrize("case", cases("streams"))
def test_every_advertised_stream_carries_a_key_test_and_an_engine(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread, case: Case,
) -> None:
    """A WebSocket connection: its key test checks the public stream and the private login,
    and a PAPER engine cycles on the hub's streams (not REST)."""
    name = websocket_connection(connections, sim, f"{case.exchange}-{SHORT[case.api_type]}-ws",
                                case.exchange, SHORT[case.api_type], **FUNDED)
    stream = run_test(connections, name)
    lines = [line.message for line in stream.lines]
    assert stream.final().status != cpb.TEST_STATUS_FAILED, lines
    assert any(m.startswith("public stream: ") for m in lines), lines
    assert "private stream: logged in; order updates subscribed" in lines
    symbol = symbol_of(case, sim)
    config, _ = grid_on(engines, f"{name}/engine", symbol)
    engines.StartEngine(pb.StartEngineRequest(name=f"{name}/engine", config=config))
    try:
        streaming = wait_for(engines, f"{name}/engine", lambda e: (e.cycles >= 2 and (
            e.market_data_source == pb.MARKET_DATA_SOURCE_STREAM)) or bool(e.last_error))
        assert not streaming.last_error, streaming
    finally:
        engines.StopEngine(pb.StopEngineRequest(name=f"{name}/engine"))


@pytest.mark.parametrize("mode", [pb.TRADING_MODE_PAPER, pb.TRADING_MODE_LIVE],
                         ids=["paper", "live"])
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES
                                  if not (c.support.paper and c.support.live)])
def test_what_is_not_advertised_is_refused_before_anything_is_placed(
    connections: csgrpc.ConnectionServiceStub, engines: sgrpc.EngineServiceStub,
    sim: SimulatorThread, case: Case, mode: int,
) -> None:
    allowed = case.support.paper if mode == pb.TRADING_MODE_PAPER else case.support.live
    if allowed:
        pytest.skip("advertised: proved above")
    suffix = "rp" if mode == pb.TRADING_MODE_PAPER else "rl"
    conn = case.connection(connections, sim, suffix)
    run_test(connections, conn.name)
    name = f"{conn.name}/engine"
    config = paper_config("grid", reference_price="100", spacing_pct="1", levels="1",
                          amount="0.001")
    config.mode = mode  # type: ignore[assignment]
    err = rpc_error(lambda: engines.StartEngine(pb.StartEngineRequest(name=name,
                                                                      config=config)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    word = "paper" if mode == pb.TRADING_MODE_PAPER else "live"
    assert f"{word} engines do not run on " in str(err.details())
    assert case.support.note in str(err.details())
    assert placed(sim, conn) == 0
