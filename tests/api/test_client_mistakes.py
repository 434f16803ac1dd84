"""A client's numbers and page tokens outside what the arithmetic and the store can take:
INVALID_ARGUMENT naming the field, never INTERNAL, never an engine that starts and crashes.

In-process EngineService on the SQL store (orders and trades page in SQL), with the
engine test world for everything else.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from ctsd.engine.manager import EngineManager
from ctsd.store.database import Database
from ctsd.store.engines import SqlEngineStore
from tests.api.test_engine_servicer import served, sma_config
from tests.engine.world import REGISTRY, SMA_CLOSES, World
from tests.support.rpc import violations

A = "connections/a/engine"
OUT_OF_BOUNDS = ("1e999999999", "-1e999999999", "9" * 40, "1e-999999999", "1e15",
                 "0.0000000000000000001", "1" * 70)


@pytest_asyncio.fixture
async def stub(db: Database) -> AsyncIterator[sgrpc.EngineServiceAsyncStub]:
    world = World({"a": SMA_CLOSES})
    manager = EngineManager(SqlEngineStore(db), world.backend, REGISTRY, clock=world.clock)
    async with served(manager) as served_stub:
        yield served_stub


def configs(value: str) -> list[tuple[str, pb.EngineConfig]]:
    """One config per decimal field a client sends, that field set to `value`."""
    quote = sma_config()
    quote.params["quote_amount"] = value
    balance = sma_config()
    balance.paper.balances["USDT"] = value
    slippage = sma_config()
    slippage.paper.slippage_bps = value
    found = [("config.params.quote_amount", quote), ("config.paper.balances[USDT]", balance),
             ("config.paper.slippage_bps", slippage)]
    for limit in ("max_order_notional", "max_position_notional", "daily_loss_limit"):
        risky = sma_config()
        setattr(risky.risk, limit, value)
        found.append((f"config.risk.{limit}", risky))
    return found


async def refusal(call: object) -> tuple[grpc.StatusCode, dict[str, str]]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code(), violations(exc)
    return grpc.StatusCode.OK, {}


@pytest.mark.asyncio
@pytest.mark.parametrize("value", OUT_OF_BOUNDS)
async def test_decimals_out_of_bounds_are_refused_naming_the_field(
        stub: sgrpc.EngineServiceAsyncStub, value: str) -> None:
    for field, config in configs(value):
        for rpc in ("StartEngine", "TestEngine"):
            request = getattr(pb, f"{rpc}Request")(name=A, config=config)
            code, named = await refusal(getattr(stub, rpc)(request))
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (rpc, field, code)
            assert field in named, (rpc, field, named)


def token(position: int) -> str:
    return base64.urlsafe_b64encode(f"p{position}".encode()).decode()


@pytest.mark.asyncio
async def test_page_tokens_past_the_stores_range_are_invalid_arguments(
        stub: sgrpc.EngineServiceAsyncStub) -> None:
    await stub.StartEngine(pb.StartEngineRequest(name=A, config=sma_config()))
    for position in (2**63, 2**64, 10**30, 10**100):
        for call in (stub.ListOrders(pb.ListOrdersRequest(parent=A, page_token=token(position))),
                     stub.ListTrades(pb.ListTradesRequest(parent=A, page_token=token(position)))):
            code, named = await refusal(call)
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in named, position
    last = await stub.ListOrders(pb.ListOrdersRequest(parent=A, page_token=token(2**63 - 1)))
    assert list(last.orders) == []
