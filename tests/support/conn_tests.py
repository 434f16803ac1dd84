"""Creating simulator-backed connections and reading test streams, for the API and CLI tests."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field

import grpc

from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from cts.v1 import health_service_pb2 as hpb
from cts.v1 import health_service_pb2_grpc as hsgrpc
from tests.support.daemon_process import DaemonProcess
from tests.support.simulator import SimulatorThread

SECRET_PREFIX = "sim-secret-NEVER-LEAK-"
PASSPHRASE = "sim-pass-NEVER-LEAK-9"

API_TYPES = {
    "spot": pb.API_TYPE_SPOT,
    "perp": pb.API_TYPE_PERPETUAL_FUTURES,
    "margin": pb.API_TYPE_MARGIN,
    "options": pb.API_TYPE_OPTIONS,
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


def cancelled_calls(daemon: DaemonProcess, method: str) -> int:
    """How many `method` calls the daemon has logged as cancelled by their client."""
    return sum(r.get("msg") == "rpc" and r.get("method") == method and r.get("code") == "CANCELLED"
               for r in daemon.records())


def wait_unwound(daemon: DaemonProcess, method: str, before: int) -> None:
    """Wait for the access-log line of one more cancelled `method` call than `before`.

    The daemon logs a call once it has unwound it: the generator that ran the test is
    closed and its task cancelled and awaited. Nothing of the call can be stored after
    this line, so a test checks for what is left without sleeping "long enough".
    """
    deadline = time.monotonic() + 15
    while cancelled_calls(daemon, method) <= before:
        assert time.monotonic() < deadline, f"no cancelled {method} in the log"
        time.sleep(0.02)


def results_stored(channel: grpc.Channel, name: str) -> int:
    """How many test results the daemon holds for connection `name` (in its health window)."""
    health = hsgrpc.HealthServiceStub(channel).GetConnectionsHealth(
        hpb.GetConnectionsHealthRequest())
    return next(h.tests_in_window for h in health.connections if h.name == f"{name}/health")
