"""Our gRPC services as the server registers them: full name, registration, pre-encoded methods.

The composition root (`ctsd.wiring.root`) wraps each servicer with its
factory here; `ctsd.server` registers them, with standard health and
reflection, on one socket.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc

from cts.v1 import (
    connection_service_pb2,
    connection_service_pb2_grpc,
    engine_service_pb2,
    engine_service_pb2_grpc,
    fleet_service_pb2,
    fleet_service_pb2_grpc,
    health_service_pb2,
    health_service_pb2_grpc,
)
from ctsd.api.connections import ConnectionServicer
from ctsd.api.engines import EngineServicer
from ctsd.api.fleet import FleetServicer
from ctsd.api.health import SystemHealthServicer

CONNECTION_SERVICE = connection_service_pb2.DESCRIPTOR.services_by_name[
    "ConnectionService"
].full_name
HEALTH_SERVICE = health_service_pb2.DESCRIPTOR.services_by_name["HealthService"].full_name
ENGINE_SERVICE = engine_service_pb2.DESCRIPTOR.services_by_name["EngineService"].full_name
FLEET_SERVICE = fleet_service_pb2.DESCRIPTOR.services_by_name["FleetService"].full_name
SERVICE_NAMES = (CONNECTION_SERVICE, HEALTH_SERVICE, ENGINE_SERVICE, FLEET_SERVICE)


@dataclass(frozen=True)
class Service:
    """One of our gRPC services: its full name (for health and reflection) and registration."""

    name: str
    add_to: Callable[[grpc.aio.Server], None]
    pre_encoded: frozenset[str] = frozenset()
    """Full method names whose behaviour yields serialized bytes (`PreEncodedResponses`)."""


def connection_service(servicer: ConnectionServicer) -> Service:
    return Service(
        CONNECTION_SERVICE,
        lambda server: connection_service_pb2_grpc.add_ConnectionServiceServicer_to_server(
            servicer, server
        ),
    )


def health_service(servicer: SystemHealthServicer) -> Service:
    return Service(
        HEALTH_SERVICE,
        lambda server: health_service_pb2_grpc.add_HealthServiceServicer_to_server(
            servicer, server
        ),
    )


def engine_service(servicer: EngineServicer) -> Service:
    return Service(
        ENGINE_SERVICE,
        lambda server: engine_service_pb2_grpc.add_EngineServiceServicer_to_server(
            servicer, server
        ),
        pre_encoded=frozenset({f"/{ENGINE_SERVICE}/WatchEngines"}),
    )


def fleet_service(servicer: FleetServicer) -> Service:
    return Service(
        FLEET_SERVICE,
        lambda server: fleet_service_pb2_grpc.add_FleetServiceServicer_to_server(
            servicer, server
        ),
    )
