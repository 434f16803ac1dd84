"""TLS server credentials from PEM files or systemd credentials.

Paths come resolved from `ctsd.config` (an explicit path, else
`$CREDENTIALS_DIRECTORY/tls-cert` and friends). A private key or token that
any user may read is refused, as a master key is: a secret on a
world-readable file is not a secret. Group-readable files are accepted so
that an operator can share a certificate group with other services.
"""

from __future__ import annotations

import stat
from pathlib import Path

import grpc

from ctsd.config import TlsConfig
from ctsd.errors import ConfigurationError


def read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def read_private_file(path: Path, what: str) -> bytes:
    """Read a secret, refusing a file that others (not owner or group) can read."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if mode & stat.S_IRWXO:
        raise ConfigurationError(
            f"{what} {path} has mode {stat.S_IMODE(mode):04o}; others must not read it "
            f"(chmod 600 {path})"
        )
    return read_file(path, what)


def _pem(data: bytes, path: Path, marker: bytes, what: str) -> bytes:
    if marker not in data:
        raise ConfigurationError(f"{what} {path} is not PEM (no {marker.decode()} block)")
    return data


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """Credentials for the TCP port; with a client CA, a client certificate is required."""
    cert = _pem(read_file(tls.cert_file, "TLS certificate"), tls.cert_file,
                b"-----BEGIN CERTIFICATE-----", "TLS certificate")  # fmt: skip
    key = _pem(read_private_file(tls.key_file, "TLS private key"), tls.key_file,
               b"PRIVATE KEY-----", "TLS private key")  # fmt: skip
    client_ca = None
    if tls.client_ca_file is not None:
        client_ca = _pem(read_file(tls.client_ca_file, "TLS client CA"), tls.client_ca_file,
                         b"-----BEGIN CERTIFICATE-----", "TLS client CA")  # fmt: skip
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
