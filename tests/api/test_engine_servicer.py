"""EngineService in-process over a real grpc.aio server, on the engine test fakes (virtual
clock, scripted market, in-memory store): the wire mapping of every RPC and its errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio
from google.protobuf import duration_pb2

from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from ctsd.api.engines import EngineServicer
from ctsd.api.pre_encoded import PreEncodedResponses
from ctsd.api.services import engine_service
from ctsd.api.status import ErrorTranslationInterceptor
from ctsd.engine.manager import EngineManager
from tests.engine.world import REGISTRY, SMA_CLOSES, World
from tests.support.rpc import violations

A = "connections/a/engine"


@dataclass
class Harness:
    world: World
    stub: sgrpc.EngineServiceAsyncStub


@asynccontextmanager
async def served(manager: EngineManager) -> AsyncIterator[sgrpc.EngineServiceAsyncStub]:
    """The servicer on `manager` (opened and closed here), on a real loopback server."""
    service = engine_service(EngineServicer(manager, REGISTRY))
    server = grpc.aio.server(interceptors=[ErrorTranslationInterceptor(),
                                           PreEncodedResponses(service.pre_encoded)])
    service.add_to(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with manager, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield sgrpc.EngineServiceStub(channel)
    finally:
        await server.stop(None)


@pytest_asyncio.fixture
async def harness() -> AsyncIterator[Harness]:
    world = World({"a": SMA_CLOSES, "b": SMA_CLOSES})
    async with served(world.manager) as stub:
        yield Harness(world, stub)


def sma_config(**over: object) -> pb.EngineConfig:
    fields: dict[str, object] = dict(
        strategy="sma_cross", symbols=["BTC/USDT"],
        params={"fast": "2", "slow": "3", "quote_amount": "100"},
        interval=duration_pb2.Duration(seconds=60),
        paper=pb.PaperSettings(balances={"USDT": "1000"}, slippage_bps="0"))
    fields.update(over)
    return pb.EngineConfig(**fields)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_start_run_list_orders_and_stop_a_paper_engine(harness: Harness) -> None:
    stub, clock = harness.stub, harness.world.clock
    started = await stub.StartEngine(pb.StartEngineRequest(name=A, config=sma_config()))
    assert (started.name, started.state, started.mode) == (
        A, pb.ENGINE_STATE_STARTING, pb.TRADING_MODE_PAPER)
    await clock.advance(12 * 60 + 1)
    engine = await stub.GetEngine(pb.GetEngineRequest(name=A))
    assert (engine.state, engine.cycles, engine.orders_placed) == (pb.ENGINE_STATE_RUNNING, 13, 3)
    assert engine.heartbeat_time.seconds > 0 and engine.realized_pnl
    listed = await stub.ListEngines(pb.ListEnginesRequest())
    assert [e.name for e in listed.engines] == [A]
    first = await stub.ListOrders(pb.ListOrdersRequest(parent=A, page_size=2))
    rest = await stub.ListOrders(pb.ListOrdersRequest(parent=A, page_token=first.next_page_token))
    assert len(first.orders) == 2 and len(rest.orders) == 1 and not rest.next_page_token
    assert all(o.client_order_id.startswith("cts") for o in [*first.orders, *rest.orders])
    trades = await stub.ListTrades(pb.ListTradesRequest(parent=A))
    assert len(trades.trades) == 3 and trades.trades[0].price
    stopped = await stub.StopEngine(pb.StopEngineRequest(name=A))
    assert stopped.state == pb.ENGINE_STATE_STOPPED
    health = await stub.GetCoordinatorHealth(pb.GetCoordinatorHealthRequest())
    assert (health.engines, health.running) == (1, 0)


@pytest.mark.asyncio
async def test_live_is_never_the_default(harness: Harness) -> None:
    started = await harness.stub.StartEngine(
        pb.StartEngineRequest(name=A, config=sma_config(mode=pb.TRADING_MODE_UNSPECIFIED)))
    assert started.mode == pb.TRADING_MODE_PAPER


@pytest.mark.asyncio
async def test_a_bad_config_names_every_bad_field(harness: Harness) -> None:
    config = sma_config(params={"fast": "x", "slow": "3", "quote_amount": "100"},
                        symbols=["btcusdt"], interval=duration_pb2.Duration(seconds=0),
                        risk=pb.RiskLimits(max_order_notional="lots"))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await harness.stub.StartEngine(pb.StartEngineRequest(name=A, config=config))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    everything = {"config.params.fast", "config.symbols[0]", "config.interval"}
    assert set(violations(raised.value)) == everything | {"config.risk.max_order_notional"}
    config.risk.max_order_notional = "10"  # a parseable config goes the domain's own way
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await harness.stub.StartEngine(pb.StartEngineRequest(name=A, config=config))
    assert set(violations(raised.value)) == everything


@pytest.mark.asyncio
async def test_errors_keep_their_codes(harness: Harness) -> None:
    stub = harness.stub
    calls: list[tuple[Awaitable[object], grpc.StatusCode]] = [
        (stub.GetEngine(pb.GetEngineRequest(name=A)), grpc.StatusCode.NOT_FOUND),
        (stub.GetEngine(pb.GetEngineRequest(name="connections/a")),
         grpc.StatusCode.INVALID_ARGUMENT),
        (stub.StartEngine(pb.StartEngineRequest(name=A)), grpc.StatusCode.INVALID_ARGUMENT),
        (stub.ListOrders(pb.ListOrdersRequest(parent=A)), grpc.StatusCode.NOT_FOUND),
    ]
    for call, code in calls:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == code
    await stub.StartEngine(pb.StartEngineRequest(name=A, config=sma_config()))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.StartEngine(pb.StartEngineRequest(name=A, config=sma_config()))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListOrders(pb.ListOrdersRequest(parent=A, page_token="garbage"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.asyncio
async def test_test_engine_shows_intents_and_places_nothing(harness: Harness) -> None:
    await harness.world.clock.advance(4 * 60)  # enough closes for slow=3 with a cross
    dry = await harness.stub.TestEngine(pb.TestEngineRequest(name=A, config=sma_config()))
    assert [t.symbol for t in dry.tickers] == ["BTC/USDT"]
    assert all(o.symbol == "BTC/USDT" for o in dry.orders)
    assert harness.world.store.orders.get("a", {}) == {}
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await harness.stub.TestEngine(pb.TestEngineRequest(name=A))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.asyncio
async def test_watch_sends_a_snapshot_then_changes(harness: Harness) -> None:
    stub = harness.stub
    await stub.StartEngine(pb.StartEngineRequest(name="connections/b/engine",
                                                 config=sma_config()))
    call = stub.WatchEngines(pb.WatchEnginesRequest())
    first = await call.read()
    assert isinstance(first, pb.WatchEnginesResponse)
    assert [e.name for e in first.snapshot.engines] == ["connections/b/engine"]
    hourly = sma_config(interval=duration_pb2.Duration(seconds=3600))
    await stub.StartEngine(pb.StartEngineRequest(name=A, config=hourly))
    seen: list[str] = []
    # A heartbeat queued with changes is dropped (a change is a sign of life too). Past
    # engine A's start (its first cycle, then none for an hour) every step queues a lone
    # heartbeat: once the messages of the start are read, the next one is a heartbeat.
    for _ in range(12):
        await harness.world.clock.advance(30)
        event = await call.read()
        assert isinstance(event, pb.WatchEnginesResponse)
        seen.append(str(event.WhichOneof("event")))
        if seen[-1] == "heartbeat":
            break
    assert "heartbeat" in seen and {"changed", "changes"} & set(seen), seen
    assert harness.world.manager.health().watchers == 1
    call.cancel()
    for _ in range(200):  # the server learns of the cancel over the network
        if harness.world.manager.health().watchers == 0:
            break
        await asyncio.sleep(0.01)
    assert harness.world.manager.health().watchers == 0
