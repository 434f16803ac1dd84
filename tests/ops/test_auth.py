"""The authenticator's decisions, without a server: tokens, certificate names, files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import grpc
import pytest

from ctsd.api.auth import (
    MISSING_TOKEN,
    NAME_NOT_ALLOWED,
    NO_CERTIFICATE,
    WRONG_TOKEN,
    Authenticator,
    load_token,
)
from ctsd.config import AuthConfig, load_config
from ctsd.errors import ConfigurationError

TOKEN = b"0123456789abcdef0123"


class FakeContext:
    def __init__(
        self, metadata: tuple[tuple[str, str], ...] = (), names: tuple[bytes, ...] = ()
    ) -> None:
        self._metadata = metadata
        self._auth = {"x509_common_name": list(names)} if names else {}

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def auth_context(self) -> Mapping[str, list[bytes]]:
        return self._auth


def check(auth: Authenticator, context: FakeContext) -> object:
    return auth.check(context)  # type: ignore[arg-type]


def test_token_checks() -> None:
    auth = Authenticator(AuthConfig(), TOKEN, mtls=False)
    assert check(auth, FakeContext()) is MISSING_TOKEN
    assert check(auth, FakeContext((("authorization", "Basic abc"),))) is MISSING_TOKEN
    assert check(auth, FakeContext((("authorization", "Bearer nope"),))) is WRONG_TOKEN
    assert check(auth, FakeContext((("authorization", "bearer " + TOKEN.decode()),))) is None
    assert MISSING_TOKEN.code == WRONG_TOKEN.code == grpc.StatusCode.UNAUTHENTICATED


def test_certificate_name_allow_list() -> None:
    auth = Authenticator(AuthConfig(client_names=("desk-1",)), None, mtls=True)
    assert check(auth, FakeContext()) is NO_CERTIFICATE
    assert check(auth, FakeContext(names=(b"desk-2",))) is NAME_NOT_ALLOWED
    assert check(auth, FakeContext(names=(b"desk-1",))) is None
    assert NAME_NOT_ALLOWED.code == grpc.StatusCode.PERMISSION_DENIED


def test_open_services_skip_only_what_they_name() -> None:
    auth = Authenticator(AuthConfig(open_services=frozenset({"health"})), TOKEN, mtls=False)
    assert auth.is_open("/grpc.health.v1.Health/Check")
    assert not auth.is_open("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    assert not auth.is_open("/cts.v1.ConnectionService/ListConnections")


def test_token_files(tmp_path: Path) -> None:
    good = tmp_path / "token"
    good.write_bytes(TOKEN + b"\n")
    good.chmod(0o600)
    assert load_token(good) == TOKEN
    short = tmp_path / "short"
    short.write_bytes(b"abc")
    short.chmod(0o600)
    with pytest.raises(ConfigurationError, match="at least 16"):
        load_token(short)
    good.chmod(0o604)
    with pytest.raises(ConfigurationError, match="others must not read it"):
        load_token(good)


def test_nothing_configured_means_no_authenticator(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    assert Authenticator.from_config(load_config(None, {}, env)) is None
    # A client CA means nothing on the Unix socket, where there is no TLS.
    unix_with_ca = load_config(
        None, {"tls_cert_file": "/c", "tls_key_file": "/k", "tls_client_ca_file": "/ca"}, env
    )
    assert Authenticator.from_config(unix_with_ca) is None
