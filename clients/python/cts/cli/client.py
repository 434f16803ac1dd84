"""The channel to ctsd and what every command handler shares.

Addresses are written the way the daemon's `--listen` takes them
(`unix:PATH`, `tcp://HOST:PORT`); gRPC wants `unix:PATH` and `HOST:PORT`, so
the translation lives here, once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO

import grpc

from cts.cli.errors import UsageError
from cts.cli.secrets_input import Console
from cts.cli.transport import PLAINTEXT, ChannelSecurity, secure_channel
from cts.v1 import connection_service_pb2_grpc, health_service_pb2_grpc

DEFAULT_TIMEOUT = 10.0


def grpc_target(address: str) -> str:
    """`unix:PATH` stays as is; `tcp://HOST:PORT` becomes `HOST:PORT`."""
    if address.startswith("unix:"):
        if address == "unix:":
            raise UsageError("address 'unix:' names no socket path")
        return address
    if address.startswith("tcp://"):
        hostport = address.removeprefix("tcp://").rstrip("/")
        host, sep, port = hostport.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise UsageError(f"address {address!r} needs a host and a port: tcp://HOST:PORT")
        return hostport
    raise UsageError(f"address {address!r} must be unix:PATH or tcp://HOST:PORT")


@contextmanager
def open_channel(address: str, security: ChannelSecurity = PLAINTEXT) -> Iterator[grpc.Channel]:
    """A channel to `address`, with TLS and a bearer token when `security` asks (see transport)."""
    channel = secure_channel(grpc_target(address), security)
    try:
        yield channel
    finally:
        channel.close()


@dataclass
class Context:
    """What a handler needs: the stub, how long to wait, how to print, the user's terminal."""

    address: str
    connections: connection_service_pb2_grpc.ConnectionServiceStub
    health: health_service_pb2_grpc.HealthServiceStub
    timeout: float
    output: str
    stdout: TextIO
    console: Console
    # How the stubs' channel is secured; a command opening its own channel passes it on:
    # `open_channel(ctx.address, ctx.security)`.
    security: ChannelSecurity = field(default=PLAINTEXT, repr=False)

    def emit(self, text: str) -> None:
        """Write one rendered answer to stdout."""
        self.stdout.write(text if text.endswith("\n") else text + "\n")
