"""An in-process ConnectionService that records requests and replays canned answers.

It runs on a real gRPC server over a temporary Unix socket, so the CLI's
transport, metadata and error details are exercised exactly as with ctsd; only
the business logic is canned. Unit tests of the CLI use it where the real
daemon would make the assertion indirect (e.g. "the field mask is exactly
these paths").
"""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2, empty_pb2, message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from cts.v1 import (
    connection_pb2,
    connection_service_pb2,
    connection_service_pb2_grpc,
    exchange_pb2,
)


def bad_request(message_text: str, *violations: tuple[str, str]) -> status_pb2.Status:
    """An INVALID_ARGUMENT status carrying a google.rpc.BadRequest, as ctsd sends it."""
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                for f, d in violations
            ]
        )
    )
    return status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message_text, details=[detail])


def sample_connection(name: str = "connections/main") -> connection_pb2.Connection:
    connection = connection_pb2.Connection(
        name=name,
        display_name="Main account",
        exchange="binance",
        api_type=connection_pb2.API_TYPE_SPOT,
        enabled=True,
        credentials_info=connection_pb2.CredentialsInfo(
            api_key_set=True, api_key_hint="****abcd", api_secret_set=True
        ),
        etag="etag-1",
    )
    connection.create_time.FromSeconds(1_700_000_000)
    connection.update_time.FromSeconds(1_700_000_060)
    return connection


def sample_exchanges() -> connection_service_pb2.ListExchangesResponse:
    limit = exchange_pb2.RateLimit(
        name="request_weight", scope=exchange_pb2.RATE_LIMIT_SCOPE_IP, limit=1200, weighted=True
    )
    limit.interval.FromSeconds(60)
    return connection_service_pb2.ListExchangesResponse(
        exchanges=[
            exchange_pb2.Exchange(
                name="exchanges/binance",
                exchange_id="binance",
                display_name="Binance",
                api_types=[connection_pb2.API_TYPE_SPOT, connection_pb2.API_TYPE_MARGIN],
                testnet_supported=True,
                rate_limits=[limit],
            ),
            exchange_pb2.Exchange(
                name="exchanges/okx",
                exchange_id="okx",
                display_name="OKX",
                api_types=[connection_pb2.API_TYPE_SPOT],
                passphrase_required=True,
            ),
        ]
    )


@dataclass
class FakeConnectionService(connection_service_pb2_grpc.ConnectionServiceServicer):
    """Records every request by method name and answers with sample data (or `pages`).

    An entry in `failures` makes that method abort with the given status.
    """

    requests: dict[str, list[message.Message]] = field(default_factory=dict)
    failures: dict[str, status_pb2.Status] = field(default_factory=dict)
    pages: list[connection_service_pb2.ListConnectionsResponse] = field(default_factory=list)

    def _record(self, method: str, request: message.Message, context: grpc.ServicerContext) -> None:
        self.requests.setdefault(method, []).append(request)
        if method in self.failures:
            context.abort_with_status(rpc_status.to_status(self.failures[method]))

    def CreateConnection(self, request, context):  # type: ignore[no-untyped-def]
        self._record("CreateConnection", request, context)
        created = connection_pb2.Connection()
        created.CopyFrom(request.connection)
        created.ClearField("credentials")
        created.name = "connections/" + (request.connection_id or "generated")
        created.credentials_info.api_key_set = True
        created.credentials_info.api_key_hint = "****" + request.connection.credentials.api_key[-4:]
        created.credentials_info.api_secret_set = True
        return created

    def GetConnection(self, request, context):  # type: ignore[no-untyped-def]
        self._record("GetConnection", request, context)
        return sample_connection(request.name)

    def ListConnections(self, request, context):  # type: ignore[no-untyped-def]
        self._record("ListConnections", request, context)
        if not self.pages:
            return connection_service_pb2.ListConnectionsResponse(
                connections=[sample_connection()], total_size=1
            )
        index = int(request.page_token or "0")
        return self.pages[index]

    def UpdateConnection(self, request, context):  # type: ignore[no-untyped-def]
        self._record("UpdateConnection", request, context)
        return sample_connection(request.connection.name)

    def DeleteConnection(self, request, context):  # type: ignore[no-untyped-def]
        self._record("DeleteConnection", request, context)
        return empty_pb2.Empty()

    def SetConnectionEnabled(self, request, context):  # type: ignore[no-untyped-def]
        self._record("SetConnectionEnabled", request, context)
        connection = sample_connection(request.name)
        connection.enabled = request.enabled
        return connection

    def ListExchanges(self, request, context):  # type: ignore[no-untyped-def]
        self._record("ListExchanges", request, context)
        return sample_exchanges()

    def TestConnection(self, request, context):  # type: ignore[no-untyped-def]
        """Not faked: the CLI's test commands run against the real daemon and simulator."""
        self._record("TestConnection", request, context)
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "TestConnection is not faked")

    def BatchTestConnections(self, request, context):  # type: ignore[no-untyped-def]
        self._record("BatchTestConnections", request, context)
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "BatchTestConnections is not faked")


@dataclass
class FakeServer:
    """A running fake: its `unix:` address and the servicer to inspect."""

    address: str
    service: FakeConnectionService
    server: grpc.Server

    def stop(self) -> None:
        self.server.stop(grace=None)


def start_fake_server(socket_path: str) -> FakeServer:
    service = FakeConnectionService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    connection_service_pb2_grpc.add_ConnectionServiceServicer_to_server(service, server)
    address = f"unix:{socket_path}"
    server.add_insecure_port(address)
    server.start()
    return FakeServer(address=address, service=service, server=server)
