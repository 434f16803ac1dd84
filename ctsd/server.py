"""The gRPC server: our services plus standard health and reflection, on one socket.

Interceptors run outermost first: the access log (sees every outcome,
including refusals), then authentication, then error translation next to
the servicers.
"""

from __future__ import annotations

import contextlib
import grp
import os
import socket
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from ctsd.api.pre_encoded import PreEncodedResponses
from ctsd.api.services import Service
from ctsd.api.status import ErrorTranslationInterceptor
from ctsd.config import DaemonConfig, ListenAddress
from ctsd.errors import ConfigurationError

MAX_MESSAGE_BYTES = 1 << 20


def build_server(
    services: Sequence[Service], interceptors: Sequence[grpc.aio.ServerInterceptor] = ()
) -> tuple[grpc.aio.Server, health_aio.HealthServicer]:
    server = grpc.aio.server(
        interceptors=[
            *interceptors,
            ErrorTranslationInterceptor(),
            PreEncodedResponses(frozenset().union(*(s.pre_encoded for s in services))),
        ],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", 16 * MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    for service in services:
        service.add_to(server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            *(s.name for s in services),
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


def bind(
    server: grpc.aio.Server, listen: ListenAddress, credentials: grpc.ServerCredentials | None
) -> str:
    """Adds the port; returns the address clients should use.

    TLS applies to TCP only: the Unix socket is guarded by its file mode and
    group, and a local peer that can open it could read our memory anyway.
    """
    if listen.unix_path is not None:
        prepare_unix_socket(listen.unix_path)
        server.add_insecure_port(listen.grpc_target)
        return listen.grpc_target
    try:
        if credentials is None:
            port = server.add_insecure_port(listen.grpc_target)
        else:
            port = server.add_secure_port(listen.grpc_target, credentials)
    except RuntimeError as exc:
        raise ConfigurationError(f"cannot listen on {listen}: {exc}") from exc
    return f"{listen.grpc_target.rsplit(':', 1)[0]}:{port}"


def restrict_socket(config: DaemonConfig) -> None:
    """Owner-only by default; `socket_mode = "0660"` plus `socket_group` shares it."""
    path = config.listen.unix_path
    if path is None:
        return
    with contextlib.suppress(FileNotFoundError):
        if config.socket_group is not None:
            try:
                gid = grp.getgrnam(config.socket_group).gr_gid
                os.chown(path, -1, gid)
            except (KeyError, PermissionError) as exc:
                raise ConfigurationError(
                    f"cannot give {path} to group {config.socket_group}: {exc}"
                ) from exc
        os.chmod(path, config.socket_mode)
