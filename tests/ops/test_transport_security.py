"""TLS, bearer tokens and client certificates over TCP on 127.0.0.1, right and wrong."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from tests.ops.conftest import TOKEN, MakeDaemon
from tests.ops.pki import CertificateAuthority, Pki

BEARER = (("authorization", f"Bearer {TOKEN}"),)


def tls_args(pki: Pki, *more: str) -> list[str]:
    return [
        "--listen", "tcp://127.0.0.1:0",
        "--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key), *more,
    ]  # fmt: skip


@contextmanager
def tls_channel(
    address: str, pki: Pki, client: tuple[bytes, bytes] | None = None, ca: bytes | None = None
) -> Iterator[grpc.Channel]:
    key, cert = client if client else (None, None)
    creds = grpc.ssl_channel_credentials(ca or pki.ca.cert_pem, key, cert)
    with grpc.secure_channel(address, creds) as channel:
        yield channel


def list_exchanges(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> int:
    stub = sgrpc.ConnectionServiceStub(channel)
    return len(
        stub.ListExchanges(spb.ListExchangesRequest(), timeout=5, metadata=metadata).exchanges
    )


def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value.code()


def test_token_over_tls_right_and_wrong(make_daemon: MakeDaemon, pki: Pki) -> None:
    daemon = make_daemon(tls_args(pki, "--auth-token-file", str(pki.token_file)))
    with tls_channel(daemon.address, pki) as channel:
        assert list_exchanges(channel, BEARER) == 4
        assert code_of(lambda: list_exchanges(channel)) == grpc.StatusCode.UNAUTHENTICATED
        wrong = (("authorization", "Bearer " + "x" * len(TOKEN)),)
        assert code_of(lambda: list_exchanges(channel, wrong)) == grpc.StatusCode.UNAUTHENTICATED
        basic = (("authorization", f"Basic {TOKEN}"),)
        assert code_of(lambda: list_exchanges(channel, basic)) == grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(channel)
        refused = code_of(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=5))
        assert refused == grpc.StatusCode.UNAUTHENTICATED  # health is closed unless opened
    # Refusals are logged at a bounded rate: one line per client and reason (then one
    # every 10 s with the count), their access lines at debug; a flood stays a few lines.
    refusals = daemon.wait_records(lambda r: r.get("msg") == "calls refused", 2)
    assert [(r["reason"], r["refused"]) for r in refusals] == [
        ("missing_token", 1), ("invalid_token", 1)]
    codes = [r["code"] for r in daemon.wait_records(lambda r: r.get("msg") == "rpc", 1)]
    assert codes == ["OK"]
    assert TOKEN not in daemon.logs()


def test_plaintext_client_cannot_talk_to_a_tls_port(make_daemon: MakeDaemon, pki: Pki) -> None:
    daemon = make_daemon(tls_args(pki, "--auth-token-file", str(pki.token_file)))
    with grpc.insecure_channel(daemon.address) as channel:
        assert code_of(lambda: list_exchanges(channel, BEARER)) == grpc.StatusCode.UNAVAILABLE
    with tls_channel(daemon.address, pki, ca=CertificateAuthority("other").cert_pem) as channel:
        assert code_of(lambda: list_exchanges(channel, BEARER)) == grpc.StatusCode.UNAVAILABLE


def test_streaming_calls_are_guarded_too(make_daemon: MakeDaemon, pki: Pki) -> None:
    daemon = make_daemon(tls_args(pki, "--auth-token-file", str(pki.token_file)))
    ask = reflection_pb2.ServerReflectionRequest(list_services="")
    with tls_channel(daemon.address, pki) as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        refused = code_of(lambda: list(reflection.ServerReflectionInfo(iter([ask]), timeout=5)))
        assert refused == grpc.StatusCode.UNAUTHENTICATED  # stream-stream
        answers = list(reflection.ServerReflectionInfo(iter([ask]), timeout=5, metadata=BEARER))
        names = {s.name for a in answers for s in a.list_services_response.service}
        assert "cts.v1.ConnectionService" in names
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert code_of(lambda: next(watch)) == grpc.StatusCode.UNAUTHENTICATED  # unary-stream


def test_health_left_open_by_configuration(make_daemon: MakeDaemon, pki: Pki) -> None:
    daemon = make_daemon(tls_args(pki, "--auth-token-file", str(pki.token_file)), start=False)
    toml = daemon.root / "ctsd.toml"
    toml.write_text('[auth]\nopen_services = ["health"]\n')
    daemon.extra_args += ["--config", str(toml)]
    daemon.start()
    with tls_channel(daemon.address, pki) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        assert code_of(lambda: list_exchanges(channel)) == grpc.StatusCode.UNAUTHENTICATED


def test_mtls_requires_a_certificate_from_the_client_ca(make_daemon: MakeDaemon, pki: Pki) -> None:
    daemon = make_daemon(tls_args(pki, "--tls-client-ca-file", str(pki.ca_file)))
    with tls_channel(daemon.address, pki, client=pki.client("trader-1")) as channel:
        assert list_exchanges(channel) == 4
    with tls_channel(daemon.address, pki) as channel:  # no client certificate
        assert code_of(lambda: list_exchanges(channel)) == grpc.StatusCode.UNAVAILABLE
    stranger = CertificateAuthority("stranger CA").client("trader-1")
    with tls_channel(daemon.address, pki, client=(stranger.key_pem, stranger.cert_pem)) as channel:
        assert code_of(lambda: list_exchanges(channel)) == grpc.StatusCode.UNAVAILABLE


def test_mtls_name_allow_list_and_token_together(make_daemon: MakeDaemon, pki: Pki) -> None:
    daemon = make_daemon(
        tls_args(pki, "--tls-client-ca-file", str(pki.ca_file),
                 "--auth-token-file", str(pki.token_file)),
        start=False,
    )  # fmt: skip
    toml = daemon.root / "ctsd.toml"
    toml.write_text('[auth]\nclient_names = ["trader-1"]\n')
    daemon.extra_args += ["--config", str(toml)]
    daemon.start()
    with tls_channel(daemon.address, pki, client=pki.client("trader-1")) as channel:
        assert list_exchanges(channel, BEARER) == 4
        assert code_of(lambda: list_exchanges(channel)) == grpc.StatusCode.UNAUTHENTICATED
    with tls_channel(daemon.address, pki, client=pki.client("intruder")) as channel:
        refused = code_of(lambda: list_exchanges(channel, BEARER))
        assert refused == grpc.StatusCode.PERMISSION_DENIED
    refusals = daemon.wait_records(lambda r: r.get("msg") == "calls refused", 2)
    assert [r["reason"] for r in refusals] == ["missing_token", "certificate_not_allowed"]


def test_non_loopback_without_tls_and_auth_refuses_to_start(
    make_daemon: MakeDaemon, pki: Pki
) -> None:
    cases = [
        ["--listen", "tcp://0.0.0.0:0"],
        ["--listen", "tcp://0.0.0.0:0", "--tls-cert-file", str(pki.server_cert),
         "--tls-key-file", str(pki.server_key)],
        ["--listen", "tcp://0.0.0.0:0", "--auth-token-file", str(pki.token_file)],
    ]  # fmt: skip
    for args in cases:
        result = make_daemon(args, start=False).run_to_exit()
        assert result.returncode == 78, result.stderr
        assert "needs TLS" in result.stderr


def test_world_readable_key_or_token_refuses_to_start(make_daemon: MakeDaemon, pki: Pki) -> None:
    daemon = make_daemon(tls_args(pki, "--auth-token-file", str(pki.token_file)), start=False)
    loose = daemon.root / "token"
    loose.write_text(TOKEN)
    loose.chmod(0o644)
    daemon.extra_args[daemon.extra_args.index(str(pki.token_file))] = str(loose)
    result = daemon.run_to_exit()
    assert result.returncode == 78 and "others must not read it" in result.stderr
    assert TOKEN not in result.stderr
