"""Creating simulator-backed connections and reading test streams, for the API and CLI tests."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import grpc

from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from tests.support.simulator import SimulatorThread

SECRET_PREFIX = "sim-secret-NEVER-LEAK-"
PASSPHRASE = "sim-pass-NEVER-LEAK-9"

API_TYPES = {
    "spot": pb.API_TYPE_SPOT,
    "perp": pb.API_TYPE_PERPETUAL_FUTURES,
}


@dataclass(frozen=True)
class SimConnection:
    name: str
    api_key: str
    secret: str

    @property
    def id(self) -> str:
        return self.name.removeprefix("connections/")


def sim_connection(
    stub: sgrpc.ConnectionServiceStub,
    sim: SimulatorThread,
    cid: str,
    exchange: str = "binance",
    *,
    api_type: str = "spot",
    provision: bool = True,
    stored_secret: str | None = None,
    enabled: bool = True,
    api_key: str | None = None,
    **account: object,
) -> SimConnection:
    """A connection `cid` whose key exists on the simulator (unless `provision` is False).

    `stored_secret` stores a different secret than the simulator's: a mistyped secret.
    """
    key = api_key or f"key-{cid}-00000000"
    secret = SECRET_PREFIX + cid
    if exchange == "kraken":  # Kraken's secrets are base64, and the daemon checks
        secret = base64.b64encode(secret.encode()).decode()
    if provision:
        sim.provision(key, secret, passphrase=PASSPHRASE, **account)
    credentials = pb.Credentials(
        api_key=key,
        api_secret=stored_secret or secret,
        passphrase=PASSPHRASE if exchange == "okx" else "",
    )
    made = stub.CreateConnection(
        spb.CreateConnectionRequest(
            connection_id=cid,
            connection=pb.Connection(
                display_name=f"{exchange} {cid}",
                exchange=exchange,
                api_type=API_TYPES[api_type],
                credentials=credentials,
                enabled=enabled,
            ),
        )
    )
    return SimConnection(made.name, key, stored_secret or secret)


@dataclass
class TestStream:
    __test__ = False  # not a pytest test class, whatever its name

    lines: list[pb.TestLogLine] = field(default_factory=list)
    result: pb.ConnectionTestResult | None = None
    raw: list[bytes] = field(default_factory=list)

    @property
    def steps(self) -> list[str]:
        return list(dict.fromkeys(line.step for line in self.lines))

    def final(self) -> pb.ConnectionTestResult:
        assert self.result is not None, "the stream ended without a result"
        return self.result


def run_test(stub: sgrpc.ConnectionServiceStub, name: str, timeout: float = 30) -> TestStream:
    stream = TestStream()
    for event in stub.TestConnection(spb.TestConnectionRequest(name=name), timeout=timeout):
        stream.raw.append(event.SerializeToString())
        if event.HasField("log"):
            stream.lines.append(event.log)
        else:
            assert stream.result is None, "more than one result"
            stream.result = event.result
    return stream


def run_batch(
    stub: sgrpc.ConnectionServiceStub, request: spb.BatchTestConnectionsRequest
) -> list[spb.BatchTestConnectionsResponse]:
    return list(stub.BatchTestConnections(request, timeout=60))


def rpc_code(call: grpc.RpcError) -> grpc.StatusCode:
    code: grpc.StatusCode = call.code()
    return code
