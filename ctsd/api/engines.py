"""EngineService: each RPC decodes, calls EngineManager, encodes. Domain errors are
translated by the interceptor."""

from __future__ import annotations

from collections.abc import AsyncIterator

from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from ctsd.api.engine_codec import (
    connection_id_from_engine_name,
    decode_config,
    encode_dry_run,
    encode_engine,
    encode_health,
    encode_order,
    encode_trade,
    proto_field_paths,
)
from ctsd.api.handlers import Context
from ctsd.api.watch_encoding import WatchEncoder
from ctsd.engine.manager import EngineManager
from ctsd.errors import InvalidArgument
from ctsd.strategies.registry import StrategyRegistry


class EngineServicer(sgrpc.EngineServiceServicer):
    def __init__(self, manager: EngineManager, strategies: StrategyRegistry) -> None:
        self._manager = manager
        self._strategies = strategies
        self._watch_encoder = WatchEncoder()

    async def StartEngine(self, request: pb.StartEngineRequest, context: Context) -> pb.Engine:
        connection_id = connection_id_from_engine_name(request.name)
        if not request.HasField("config"):
            raise InvalidArgument.field("config", "is required")
        config = decode_config(request.config, self._strategies)
        with proto_field_paths():
            status = await self._manager.start(connection_id, config)
        return encode_engine(status)

    async def StopEngine(self, request: pb.StopEngineRequest, context: Context) -> pb.Engine:
        status = await self._manager.stop(connection_id_from_engine_name(request.name))
        return encode_engine(status)

    async def GetEngine(self, request: pb.GetEngineRequest, context: Context) -> pb.Engine:
        return encode_engine(self._manager.get(connection_id_from_engine_name(request.name)))

    async def ListEngines(
        self, request: pb.ListEnginesRequest, context: Context
    ) -> pb.ListEnginesResponse:
        return pb.ListEnginesResponse(engines=[encode_engine(s) for s in self._manager.list()])

    async def WatchEngines(  # type: ignore[override]  # yields serialized responses
        self, request: pb.WatchEnginesRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """Each message is everything that changed since the last one (`Watcher.next_batch`),
        so a watcher written to slower than engines change gets larger messages, not a
        backlog. The hub paces the batches (its message budget) and hands every watcher
        that is up to date the same events, which the encoder serializes once."""
        watcher = self._manager.watch()
        try:  # the watcher is closed however the stream ends: client cancel or shutdown
            while True:
                yield self._watch_encoder.encode(await watcher.next_batch())
        finally:
            watcher.close()

    async def GetCoordinatorHealth(
        self, request: pb.GetCoordinatorHealthRequest, context: Context
    ) -> pb.CoordinatorHealth:
        return encode_health(self._manager.health())

    async def TestEngine(
        self, request: pb.TestEngineRequest, context: Context
    ) -> pb.TestEngineResponse:
        connection_id = connection_id_from_engine_name(request.name)
        config = None
        if request.HasField("config"):
            config = decode_config(request.config, self._strategies)
        with proto_field_paths():
            dry = await self._manager.test(connection_id, config)
        return encode_dry_run(dry)

    async def ListOrders(
        self, request: pb.ListOrdersRequest, context: Context
    ) -> pb.ListOrdersResponse:
        found = await self._manager.list_orders(
            connection_id_from_engine_name(request.parent, "parent"),
            open_only=request.open_only, page_size=request.page_size,
            page_token=request.page_token)
        return pb.ListOrdersResponse(orders=[encode_order(o) for o in found.items],
                                     next_page_token=found.next_page_token)

    async def ListTrades(
        self, request: pb.ListTradesRequest, context: Context
    ) -> pb.ListTradesResponse:
        found = await self._manager.list_trades(
            connection_id_from_engine_name(request.parent, "parent"),
            page_size=request.page_size, page_token=request.page_token)
        return pb.ListTradesResponse(trades=[encode_trade(f) for f in found.items],
                                     next_page_token=found.next_page_token)
