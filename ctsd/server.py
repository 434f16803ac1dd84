"""The gRPC server: our services plus standard health and reflection, on one socket."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from cts.v1 import connection_service_pb2, connection_service_pb2_grpc
from ctsd.api.connections import ConnectionServicer
from ctsd.api.status import ErrorTranslationInterceptor
from ctsd.config import ListenAddress
from ctsd.errors import ConfigurationError

MAX_MESSAGE_BYTES = 1 << 20
CONNECTION_SERVICE = connection_service_pb2.DESCRIPTOR.services_by_name[
    "ConnectionService"
].full_name
SERVICE_NAMES = (CONNECTION_SERVICE,)


def build_server(
    connections: ConnectionServicer,
) -> tuple[grpc.aio.Server, health_aio.HealthServicer]:
    server = grpc.aio.server(
        interceptors=[ErrorTranslationInterceptor()],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", 16 * MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    connection_service_pb2_grpc.add_ConnectionServiceServicer_to_server(connections, server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            *SERVICE_NAMES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    return server, health


def prepare_unix_socket(path: Path) -> None:
    """Make the directory owner-only and clear a socket left by a crashed daemon."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists() and not path.is_symlink():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # nobody answers: a stale socket
        return
    finally:
        probe.close()
    raise ConfigurationError(f"{path} is in use by a running server")


def bind(server: grpc.aio.Server, listen: ListenAddress) -> str:
    """Adds the port; returns the address clients should use."""
    if listen.unix_path is not None:
        prepare_unix_socket(listen.unix_path)
        server.add_insecure_port(listen.grpc_target)
        return listen.grpc_target
    try:
        port = server.add_insecure_port(listen.grpc_target)
    except RuntimeError as exc:
        raise ConfigurationError(f"cannot listen on {listen}: {exc}") from exc
    return f"{listen.grpc_target.rsplit(':', 1)[0]}:{port}"


def restrict_socket(listen: ListenAddress) -> None:
    if listen.unix_path is not None:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(listen.unix_path, 0o600)
