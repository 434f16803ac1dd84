"""Every RPC of ConnectionService, HealthService and EngineService gets
hypothesis-built requests; raw garbage goes straight onto the Unix socket.

Every answer must be a deliberate status (never UNKNOWN, INTERNAL or a hang)
and the daemon must keep serving. The daemon runs against the exchange
simulator, so tests and engines the fuzzer reaches stay on this machine.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
from collections.abc import Iterator
from functools import partial

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cts.v1 import connection_pb2 as cpb
from cts.v1 import connection_service_pb2 as cspb
from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2, health_service_pb2
from cts.v1 import engine_service_pb2 as epb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from tests.api.test_engine_service import paper_config
from tests.robustness.protofuzz import MAX_MESSAGE_BYTES, SEED_ID, message, near_valid
from tests.robustness.tally import Tally, log_problems
from tests.support.conn_tests import run_test, sim_connection
from tests.support.daemon_process import DaemonProcess
from tests.support.rpc import binance_spot, rpc_error, violations
from tests.support.sim_fixtures import sim, sim_channel, sim_daemon  # noqa: F401
from tests.support.simulator import SimulatorThread

SERVICES = (
    cspb.DESCRIPTOR.services_by_name["ConnectionService"],
    health_service_pb2.DESCRIPTOR.services_by_name["HealthService"],
    engine_service_pb2.DESCRIPTOR.services_by_name["EngineService"],
)
METHODS = [m for s in SERVICES for m in s.methods]
CALL_TIMEOUT_S = 30.0
STREAM_ITEMS = 200  # WatchEngines never ends: read a little, then hang up
EXAMPLES = int(os.environ.get("CTS_FUZZ_EXAMPLES", 60))  # per RPC; streams get a third
# The quick form replays the same examples every run; the soak explores new ones.
DERANDOMIZE = "CTS_FUZZ_EXAMPLES" not in os.environ


@pytest.fixture
def seeded(
    sim_daemon: DaemonProcess, sim: SimulatorThread,  # noqa: F811
) -> Iterator[DaemonProcess]:
    """The daemon with one enabled, tested connection the fuzzer's names point at.

    Earlier fuzzing may have deleted, disabled or re-keyed it: it is made anew then.
    """
    with grpc.insecure_channel(sim_daemon.address) as ch:
        stub = csgrpc.ConnectionServiceStub(ch)
        try:
            seed = stub.GetConnection(cspb.GetConnectionRequest(name=SEED_NAME))
            healthy = seed.enabled and seed.last_test.status == cpb.TEST_STATUS_SUCCESS
        except grpc.RpcError:
            healthy, seed = False, None
        if not healthy:
            if seed is not None:
                engines = sgrpc.EngineServiceStub(ch)
                with contextlib.suppress(grpc.RpcError):
                    engines.StopEngine(epb.StopEngineRequest(name=ENGINE_NAME))
                stub.DeleteConnection(cspb.DeleteConnectionRequest(name=SEED_NAME, force=True))
            conn = sim_connection(stub, sim, SEED_ID)
            run_test(stub, conn.name)
    yield sim_daemon


SEED_NAME = f"connections/{SEED_ID}"
ENGINE_NAME = f"{SEED_NAME}/engine"
# Valid requests that near_valid() fuzzes one or two fields of, to get past the
# first validation and into the domain and the store.
VALID: dict[str, Message] = {
    "CreateConnection": cspb.CreateConnectionRequest(
        connection_id="fz-new", connection=binance_spot("fz new")),
    "GetConnection": cspb.GetConnectionRequest(name=SEED_NAME),
    "ListConnections": cspb.ListConnectionsRequest(page_size=2, filter='exchange = "binance"'),
    "UpdateConnection": cspb.UpdateConnectionRequest(
        connection=cpb.Connection(name=SEED_NAME, display_name="fz seed", enabled=True),
        update_mask=field_mask_pb2.FieldMask(paths=["display_name", "enabled"])),
    "DeleteConnection": cspb.DeleteConnectionRequest(name="connections/fz-new"),
    "SetConnectionEnabled": cspb.SetConnectionEnabledRequest(name=SEED_NAME, enabled=True),
    "TestConnection": cspb.TestConnectionRequest(name=SEED_NAME),
    "BatchTestConnections": cspb.BatchTestConnectionsRequest(names=[SEED_NAME], concurrency=2),
    "StartEngine": epb.StartEngineRequest(name=ENGINE_NAME, config=paper_config()),
    "StopEngine": epb.StopEngineRequest(name=ENGINE_NAME),
    "GetEngine": epb.GetEngineRequest(name=ENGINE_NAME),
    "TestEngine": epb.TestEngineRequest(name=ENGINE_NAME, config=paper_config()),
    "ListOrders": epb.ListOrdersRequest(parent=ENGINE_NAME, page_size=5),
    "ListTrades": epb.ListTradesRequest(parent=ENGINE_NAME, page_size=5),
}


def requests_for(method: MethodDescriptor) -> st.SearchStrategy[Message]:
    anything = message(method.input_type)
    base = VALID.get(method.name)
    return anything if base is None else st.one_of(anything, near_valid(base))


def _call(channel: grpc.Channel, method: MethodDescriptor, request: object) -> grpc.StatusCode:
    path = f"/{method.containing_service.full_name}/{method.name}"
    reply = GetMessageClass(method.output_type)
    kwargs = dict(request_serializer=lambda m: m.SerializeToString(),
                  response_deserializer=reply.FromString)
    try:
        if method.server_streaming:
            stream = channel.unary_stream(path, **kwargs)(request, timeout=CALL_TIMEOUT_S)
            for n, _ in enumerate(stream):
                if n >= STREAM_ITEMS or method.name == "WatchEngines":
                    stream.cancel()
                    break
        else:
            channel.unary_unary(path, **kwargs)(request, timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return grpc.StatusCode.OK if code == grpc.StatusCode.CANCELLED else code
    return grpc.StatusCode.OK


def _serving(daemon: DaemonProcess) -> bool:
    alive = daemon.proc is not None and daemon.proc.poll() is None
    return alive and daemon.health() == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.timeout(300)
@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_fuzzed_requests_get_deliberate_answers(
    seeded: DaemonProcess, method: MethodDescriptor,
) -> None:
    tally = Tally(f"fuzz {method.name}")
    bad: list[str] = []
    examples = EXAMPLES // 3 if method.server_streaming else EXAMPLES
    with grpc.insecure_channel(seeded.address) as channel:

        @settings(max_examples=examples, deadline=None, derandomize=DERANDOMIZE, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(requests_for(method))
        def fuzz(request: object) -> None:
            code = _call(channel, method, request)
            if not tally.answer(code) and len(bad) < 5:
                bad.append(f"{code.name} for {str(request)[:300]!r}")

        fuzz()
    tally.notes.extend(bad)
    tally.report()
    assert tally.lost == 0, bad
    assert _serving(seeded), "the daemon stopped serving"


def test_messages_over_the_limit_are_resource_exhausted(
    seeded: DaemonProcess, sim_channel: grpc.Channel,  # noqa: F811
) -> None:
    stub = csgrpc.ConnectionServiceStub(sim_channel)
    tally = Tally("fuzz message size limit")
    for size, want in ((MAX_MESSAGE_BYTES - 4096, grpc.StatusCode.INVALID_ARGUMENT),
                       (MAX_MESSAGE_BYTES + 1, grpc.StatusCode.RESOURCE_EXHAUSTED),
                       (8 * MAX_MESSAGE_BYTES, grpc.StatusCode.RESOURCE_EXHAUSTED)):
        request = cspb.CreateConnectionRequest(connection=binance_spot("x" * size))
        code = rpc_error(partial(stub.CreateConnection, request, timeout=30)).code()
        tally.answer(code)
        assert code == want, f"{size} bytes: {code}"
    tally.report()
    assert _serving(seeded)


@pytest.mark.parametrize("seconds", [-(1 << 63), (1 << 63) - 2, 315_576_000_001, -1])
def test_an_engine_interval_out_of_any_range_is_invalid_argument(
    seeded: DaemonProcess, sim_channel: grpc.Channel, seconds: int,  # noqa: F811
) -> None:
    """Found by the soak: a Duration beyond timedelta's range was answered INTERNAL."""
    stub = sgrpc.EngineServiceStub(sim_channel)
    config = paper_config()
    config.interval.seconds = seconds
    for call in (partial(stub.TestEngine, epb.TestEngineRequest(name=ENGINE_NAME, config=config)),
                 partial(stub.StartEngine,
                         epb.StartEngineRequest(name=ENGINE_NAME, config=config))):
        err = rpc_error(partial(call, timeout=CALL_TIMEOUT_S))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
        assert "config.interval" in violations(err)


GARBAGE_KINDS = ("random", "h2-preface+random", "http1", "h2-preface+huge-frame", "half-open")
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _garbage(kind: str, rng: random.Random) -> bytes:
    noise = rng.randbytes(rng.randrange(1, 65536))
    return {
        "random": noise,
        "h2-preface+random": PREFACE + noise,
        "http1": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + noise[:100],
        # a SETTINGS-less HEADERS frame that claims 16 MiB of payload
        "h2-preface+huge-frame": PREFACE + b"\xff\xff\xff\x01\x04\x00\x00\x00\x01" + noise,
        "half-open": PREFACE[:7],
    }[kind]


def test_raw_garbage_on_the_socket_leaves_the_daemon_serving(
    seeded: DaemonProcess, sim_channel: grpc.Channel,  # noqa: F811
) -> None:
    rng = random.Random(11)
    tally = Tally("fuzz raw socket garbage")
    stub = csgrpc.ConnectionServiceStub(sim_channel)
    for n in range(40):
        kind = GARBAGE_KINDS[n % len(GARBAGE_KINDS)]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            raw.settimeout(2)
            raw.connect(str(seeded.socket))
            try:
                raw.sendall(_garbage(kind, rng))
                raw.recv(65536)
            except OSError:
                pass  # the daemon hung up on us: that is fine
        tally.tried += 1
        if _serving(seeded):
            stub.ListConnections(cspb.ListConnectionsRequest(), timeout=5)
            tally.survived += 1
        else:
            tally.lost += 1
            tally.notes.append(f"not serving after {kind}")
    tally.report()
    assert tally.lost == 0


def test_the_daemon_logged_no_unhandled_error(sim_daemon: DaemonProcess) -> None:  # noqa: F811
    """Runs last in this module: a bug in a background task shows only in the log."""
    problems = log_problems(sim_daemon.logs())
    assert not problems, "\n".join(problems)
