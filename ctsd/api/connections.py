"""ConnectionService: each RPC decodes, calls ConnectionManager (or, for tests,
ConnectionTests), encodes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from google.protobuf import empty_pb2

from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from ctsd.api.check_codec import encode_test_event
from ctsd.api.connection_codec import decode_draft, encode_exchange
from ctsd.api.encoding_cache import EncodedConnections
from ctsd.api.handlers import Context
from ctsd.api.names import connection_id_from_name
from ctsd.api.update_mask import decode_patch
from ctsd.connections.manager import ConnectionManager
from ctsd.connections.model import Connection
from ctsd.engine.activity import EngineActivity
from ctsd.errors import InvalidArgument

if TYPE_CHECKING:
    from ctsd.connections.checks.service import ConnectionTests


class ConnectionServicer(sgrpc.ConnectionServiceServicer):
    def __init__(
        self, manager: ConnectionManager, tests: Callable[[], ConnectionTests],
        engines: EngineActivity,
    ) -> None:
        self._manager = manager
        self._tests = tests
        """Asked at each test: the daemon builds its testers with the first (`ctsd.wiring.root`)."""
        self._engines = engines
        self._encoded = EncodedConnections()

    def _encode(self, conn: Connection, active: set[str] | None = None) -> pb.Connection:
        """`active` (engine-running connection ids) is read once per answer."""
        running = self._engines.active_connections() if active is None else active
        return self._encoded.encode(conn, conn.id in running)

    async def CreateConnection(
        self, request: spb.CreateConnectionRequest, context: Context
    ) -> pb.Connection:
        if not request.HasField("connection"):
            raise InvalidArgument.field("connection", "is required")
        conn = await self._manager.create(
            decode_draft(request.connection), request.connection_id, request.validate_only
        )
        return self._encode(conn)

    async def GetConnection(
        self, request: spb.GetConnectionRequest, context: Context
    ) -> pb.Connection:
        conn = await self._manager.get(connection_id_from_name(request.name))
        return self._encode(conn)

    async def ListConnections(
        self, request: spb.ListConnectionsRequest, context: Context
    ) -> spb.ListConnectionsResponse:
        active = self._engines.active_connections()
        listing = await self._manager.list_connections(
            request.filter, request.page_size, request.page_token
        )
        return spb.ListConnectionsResponse(
            connections=[self._encode(c, active) for c in listing.connections],
            next_page_token=listing.next_page_token,
            total_size=listing.total_size,
        )

    async def UpdateConnection(
        self, request: spb.UpdateConnectionRequest, context: Context
    ) -> pb.Connection:
        if not request.HasField("connection"):
            raise InvalidArgument.field("connection", "is required")
        connection_id = connection_id_from_name(request.connection.name, "connection.name")
        patch = decode_patch(request.connection, request.update_mask)
        conn = await self._manager.update(connection_id, patch, request.connection.etag)
        return self._encode(conn)

    async def DeleteConnection(
        self, request: spb.DeleteConnectionRequest, context: Context
    ) -> empty_pb2.Empty:
        connection_id = connection_id_from_name(request.name)
        await self._manager.delete(connection_id, request.etag, request.force)
        return empty_pb2.Empty()

    async def SetConnectionEnabled(
        self, request: spb.SetConnectionEnabledRequest, context: Context
    ) -> pb.Connection:
        connection_id = connection_id_from_name(request.name)
        conn = await self._manager.set_enabled(connection_id, request.enabled, request.etag)
        return self._encode(conn)

    async def ListExchanges(
        self, request: spb.ListExchangesRequest, context: Context
    ) -> spb.ListExchangesResponse:
        return spb.ListExchangesResponse(
            exchanges=[encode_exchange(s) for s in self._manager.exchanges()]
        )

    async def TestConnection(
        self, request: spb.TestConnectionRequest, context: Context
    ) -> AsyncIterator[spb.TestConnectionResponse]:
        async for event in self._tests().test(connection_id_from_name(request.name)):
            yield encode_test_event(event)

    async def BatchTestConnections(
        self, request: spb.BatchTestConnectionsRequest, context: Context
    ) -> AsyncIterator[spb.BatchTestConnectionsResponse]:
        from ctsd.api.batch_codec import decode_batch_request, encode_batch_event

        async for event in self._tests().batch(decode_batch_request(request)):
            yield encode_batch_event(event)
