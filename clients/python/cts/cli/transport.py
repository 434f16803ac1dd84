"""How the CLI secures its channel: TLS (server-verified or mutual) and a bearer token.

The options mirror the daemon's `[tls]`/`[auth]` settings from the client's
side. Each has an environment variable, read when the option is absent:

    --tls              TLS with the system's trust store (implied by the others)
    --tls-ca FILE      CTS_TLS_CA       CA certificate that signed the daemon's
    --tls-cert FILE    CTS_TLS_CERT     client certificate, for mutual TLS
    --tls-key FILE     CTS_TLS_KEY      its private key
    --server-name NAME CTS_SERVER_NAME  name to verify the daemon's certificate against
    --token-file FILE  CTS_TOKEN_FILE   bearer token, sent as `authorization: Bearer ...`

A token is only ever read from a file: a value on the command line would be
in the shell history and in every user's `ps`. The file is refused when any
user may read it and warned about when the group may (the daemon refuses the
first and accepts the second for its own copy). The token is sent over TLS, a
Unix socket, or plaintext TCP to a loopback address only; gRPC's local
credentials check that last condition on the connection itself. Nothing here
prints the token: errors name the file, never its content.
"""

from __future__ import annotations

import argparse
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from cts.cli.errors import UsageError

ENV_TLS_CA = "CTS_TLS_CA"
ENV_TLS_CERT = "CTS_TLS_CERT"
ENV_TLS_KEY = "CTS_TLS_KEY"
ENV_SERVER_NAME = "CTS_SERVER_NAME"
ENV_TOKEN_FILE = "CTS_TOKEN_FILE"


@dataclass(frozen=True)
class ChannelSecurity:
    """What the channel needs, already read from disk. Secrets stay out of `repr`."""

    tls: bool = False
    root_certificates: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    certificate_chain: bytes | None = field(default=None, repr=False)
    server_name: str | None = None
    token: str | None = field(default=None, repr=False)


PLAINTEXT = ChannelSecurity()


def add_security_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """Declare the TLS and token options; below the top level they default to SUPPRESS."""
    unset: object = None if top_level else argparse.SUPPRESS
    group = parser.add_argument_group("transport security: TLS for tcp://, a token for either")
    group.add_argument(
        "--tls",
        action="store_true",
        default=False if top_level else argparse.SUPPRESS,
        help="use TLS, verifying the daemon against the system's trust store "
        "(implied by --tls-ca, --tls-cert, --tls-key)",
    )
    group.add_argument(
        "--tls-ca",
        default=unset,
        metavar="FILE",
        help=f"PEM CA certificate that signed the daemon's certificate (default: ${ENV_TLS_CA})",
    )
    group.add_argument(
        "--tls-cert",
        default=unset,
        metavar="FILE",
        help=f"PEM client certificate for mutual TLS (default: ${ENV_TLS_CERT})",
    )
    group.add_argument(
        "--tls-key",
        default=unset,
        metavar="FILE",
        help=f"PEM private key of --tls-cert; others must not read it (default: ${ENV_TLS_KEY})",
    )
    group.add_argument(
        "--server-name",
        default=unset,
        metavar="NAME",
        help="name to verify the daemon's certificate against, when the address's host "
        f"differs (default: ${ENV_SERVER_NAME})",
    )
    group.add_argument(
        "--token-file",
        default=unset,
        metavar="FILE",
        help="file holding the bearer token the daemon expects; only you may read it "
        f"(default: ${ENV_TOKEN_FILE})",
    )


def _option(args: argparse.Namespace, name: str, env: Mapping[str, str], var: str) -> str | None:
    value = getattr(args, name, None)
    if value:
        return str(value)
    return env.get(var) or None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _mode(path: Path, what: str) -> int:
    try:
        return path.stat().st_mode
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _read_private(path: Path, what: str, warn: Callable[[str], object]) -> bytes:
    """A secret's bytes; refused when others may read the file, warned about for the group."""
    mode = _mode(path, what)
    if mode & stat.S_IRWXO:
        raise UsageError(
            f"{what} {path} has mode {stat.S_IMODE(mode):04o}; others must not read it "
            f"(chmod 600 {path})"
        )
    if mode & stat.S_IRWXG:
        warn(
            f"cts: warning: {what} {path} has mode {stat.S_IMODE(mode):04o}; "
            f"its group can read it (chmod 600 {path})"
        )
    return _read(path, what)


def _pem(path: Path, marker: bytes, what: str, data: bytes | None = None) -> bytes:
    data = _read(path, what) if data is None else data
    if marker not in data:
        raise UsageError(f"{what} {path} is not PEM (no {marker.decode()} block)")
    return data


def load_token(path: Path, warn: Callable[[str], object]) -> str:
    """The token in `path`, surrounding whitespace dropped; its value is never in an error."""
    raw = _read_private(path, "token file", warn).strip()
    if not raw or any(c <= 0x20 or c > 0x7E for c in raw):
        raise UsageError(
            f"token file {path} must hold one token of printable ASCII characters without spaces"
        )
    return raw.decode("ascii")


def load_security(
    args: argparse.Namespace, env: Mapping[str, str], warn: Callable[[str], object]
) -> ChannelSecurity:
    """The options (else their environment variables) read into a `ChannelSecurity`."""
    ca = _option(args, "tls_ca", env, ENV_TLS_CA)
    cert = _option(args, "tls_cert", env, ENV_TLS_CERT)
    key = _option(args, "tls_key", env, ENV_TLS_KEY)
    server_name = _option(args, "server_name", env, ENV_SERVER_NAME)
    token_file = _option(args, "token_file", env, ENV_TOKEN_FILE)
    if bool(cert) != bool(key):
        raise UsageError("mutual TLS needs both --tls-cert and --tls-key")
    tls = bool(getattr(args, "tls", False) or ca or cert or key)
    if server_name and not tls:
        raise UsageError("--server-name applies to TLS; add --tls-ca (or --tls)")
    private_key = None
    if key:
        secret = _read_private(Path(key), "TLS key", warn)
        private_key = _pem(Path(key), b"PRIVATE KEY-----", "TLS key", secret)
    return ChannelSecurity(
        tls=tls,
        root_certificates=_pem(Path(ca), b"-----BEGIN CERTIFICATE-----", "TLS CA") if ca else None,
        private_key=private_key,
        certificate_chain=(
            _pem(Path(cert), b"-----BEGIN CERTIFICATE-----", "TLS certificate") if cert else None
        ),
        server_name=server_name,
        token=load_token(Path(token_file), warn) if token_file else None,
    )


def check_socket_dir(socket: Path) -> None:
    """Refuse a socket whose directory other users may write: one of them could have put
    their own socket there, and would receive what this CLI sends (secrets included)."""
    try:
        mode = socket.parent.stat().st_mode
    except OSError:
        return  # no such directory: the connection fails on its own, sending nothing
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UsageError(
            f"refusing {socket}: its directory {socket.parent} has mode "
            f"{stat.S_IMODE(mode):04o}, so another user could stand in for the daemon; "
            "use the daemon's own runtime directory")


def _is_loopback(host: str) -> bool:
    return host.strip("[]") in {"localhost", "::1"} or host.startswith("127.")


def secure_channel(target: str, security: ChannelSecurity) -> grpc.Channel:
    """The channel to `target` (a gRPC target: `unix:PATH` or `HOST:PORT`)."""
    unix = target.startswith("unix:")
    if unix and security.tls:
        raise UsageError("TLS options apply to tcp:// addresses; a Unix socket has no TLS")
    if unix:
        check_socket_dir(Path(target.removeprefix("unix:")))
    options: list[tuple[str, str]] = []
    if security.tls:
        transport = grpc.ssl_channel_credentials(
            security.root_certificates, security.private_key, security.certificate_chain
        )
        if security.server_name:
            options.append(("grpc.ssl_target_name_override", security.server_name))
    elif security.token is None:
        return grpc.insecure_channel(target)
    elif unix:
        transport = grpc.local_channel_credentials(grpc.LocalConnectionType.UDS)
    elif _is_loopback(target.rpartition(":")[0]):
        # gRPC refuses the handshake unless the peer really is on this host.
        transport = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    else:
        raise UsageError(
            "a bearer token needs TLS on a non-loopback address; add --tls-ca (or --tls)"
        )
    if security.token is not None:
        transport = grpc.composite_channel_credentials(
            transport, grpc.access_token_call_credentials(security.token)
        )
    return grpc.secure_channel(target, transport, options=options)
