"""TestConnection against the real daemon and the exchange simulator, over real ccxt.

Every failure class the issue names is produced the way it happens in
production (a wrong secret, a whitelist, a skewed exchange clock, the
venue's own maintenance and rate-limit answers, a hang, a garbled body) and
must come back as that class, with a remedy, from the step that hit it.
"""

from __future__ import annotations

import threading
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from tests.support.conn_tests import (
    PASSPHRASE,
    cancelled_calls,
    results_stored,
    run_test,
    sim_connection,
    wait_unwound,
)
from tests.support.daemon_process import DaemonProcess
from tests.support.simulator import SimulatorThread

STEPS = ["credentials", "markets", "clock", "balance", "permissions", "api_type", "latency"]

TEST_METHOD = "/cts.v1.ConnectionService/TestConnection"


@pytest.fixture
def stub(sim_channel: grpc.Channel) -> sgrpc.ConnectionServiceStub:
    return sgrpc.ConnectionServiceStub(sim_channel)


def get(stub: sgrpc.ConnectionServiceStub, name: str) -> pb.Connection:
    return stub.GetConnection(spb.GetConnectionRequest(name=name))


def test_a_working_key_streams_every_step_then_a_stored_result(
    stub: sgrpc.ConnectionServiceStub, sim: SimulatorThread
) -> None:
    conn = sim_connection(stub, sim, "ok-binance")
    stream = run_test(stub, conn.name)
    result = stream.final()
    assert stream.steps == STEPS
    assert result.status == pb.TEST_STATUS_SUCCESS, result.message
    assert result.failure_class == pb.FAILURE_CLASS_UNSPECIFIED
    assert {b.asset for b in result.balances} == {"BTC", "USDT"}
    assert result.balance_currency == "USDT" and result.balance_total > 1000
    assert set(result.capabilities) == {"read", "trade"}
    assert result.HasField("clock_skew") and result.HasField("latency")
    assert list(result.log_lines) == stream.lines
    assert [line.time.ToNanoseconds() for line in stream.lines] == sorted(
        line.time.ToNanoseconds() for line in stream.lines
    )
    stored = get(stub, conn.name).last_test
    assert stored.status == result.status and stored.start_time == result.start_time
    assert list(stored.log) == list(result.log) and len(stored.log) == len(stream.lines)


@pytest.mark.parametrize("exchange", ["bybit", "okx"])
def test_a_test_learns_the_keys_account_uid_without_changing_the_etag(
    stub: sgrpc.ConnectionServiceStub, sim: SimulatorThread, exchange: str
) -> None:
    uid = "700000001" if exchange == "bybit" else "700000002"
    keys = [sim_connection(stub, sim, f"uid-{exchange}-{role}", exchange, uid=int(uid))
            for role in ("read", "trade")]
    for conn in keys:
        before = get(stub, conn.name)
        assert before.account_uid == ""
        stream = run_test(stub, conn.name)
        assert stream.final().status == pb.TEST_STATUS_SUCCESS, stream.final().message
        assert stream.steps == STEPS
        [line] = [x for x in stream.lines if x.step == "permissions"]
        assert line.message.endswith(f"account uid ****{uid[-4:]}") and uid not in line.message
        after = get(stub, conn.name)
        assert after.account_uid == uid and after.etag == before.etag
    other = sim_connection(stub, sim, f"uid-{exchange}-binance")
    run_test(stub, other.name).final()
    assert get(stub, other.name).account_uid == ""  # Binance counts per key

    rekeyed = stub.UpdateConnection(spb.UpdateConnectionRequest(
        connection=pb.Connection(name=keys[0].name, credentials=pb.Credentials(
            api_key="another-key-00000000", api_secret="s",
            passphrase=PASSPHRASE if exchange == "okx" else "")),
        update_mask=field_mask_pb2.FieldMask(paths=["credentials"])))
    assert rekeyed.account_uid == "" and get(stub, keys[0].name).account_uid == ""
    assert get(stub, keys[1].name).account_uid == uid


def test_a_key_that_can_withdraw_is_a_warning_with_its_remedy(
    stub: sgrpc.ConnectionServiceStub, sim: SimulatorThread
) -> None:
    conn = sim_connection(stub, sim, "withdraw", permissions=["read", "trade", "withdraw"])
    result = run_test(stub, conn.name).final()
    assert result.status == pb.TEST_STATUS_WARNING
    assert "withdraw" in result.capabilities
    assert "withdrawals are enabled" in result.message and "disable withdrawals" in result.remedy


def _skew(sim: SimulatorThread) -> None:
    sim.clock.offset_ms = 20_000  # the exchange's clock runs 20 s ahead of ours


FAILURES: list[tuple[str, str, dict[str, Any], Any, pb.FailureClass.ValueType, str]] = [
    # (case, exchange, connection options, arrange the simulator, class, failing step)
    ("bad_key", "binance", {"provision": False}, None, pb.FAILURE_CLASS_AUTHENTICATION, "balance"),
    ("bad_signature", "binance", {"stored_secret": "mistyped-secret"}, None,
     pb.FAILURE_CLASS_AUTHENTICATION, "balance"),
    ("bybit_bad_signature", "bybit", {"stored_secret": "mistyped-secret"}, None,
     pb.FAILURE_CLASS_AUTHENTICATION, "balance"),
    ("ip_not_allowed", "bybit", {"ip_whitelist": ["10.9.8.7"]}, None,
     pb.FAILURE_CLASS_IP_NOT_ALLOWED, "balance"),
    ("okx_ip_not_allowed", "okx", {"ip_whitelist": ["10.9.8.7"]}, None,
     pb.FAILURE_CLASS_IP_NOT_ALLOWED, "balance"),
    ("clock_skew", "binance", {}, _skew, pb.FAILURE_CLASS_CLOCK_SKEW, "balance"),
    ("rate_limited", "binance", {},
     lambda s: s.fault("rate_limit", venue="binance", path_prefix="/api/v3/account"),
     pb.FAILURE_CLASS_RATE_LIMITED, "balance"),
    ("maintenance", "okx", {},
     lambda s: s.fault("maintenance", venue="okx", path_prefix="/api/v5/account/balance"),
     pb.FAILURE_CLASS_MAINTENANCE, "balance"),
    ("timeout", "binance", {},
     lambda s: s.fault("hang", venue="binance", path_prefix="/api/v3/account", delay_s=8),
     pb.FAILURE_CLASS_TIMEOUT, "balance"),
    ("malformed", "binance", {},
     lambda s: s.fault("malformed_json", venue="binance", path_prefix="/api/v3/account"),
     pb.FAILURE_CLASS_EXCHANGE_ERROR, "balance"),
    ("network", "binance", {},
     # aiohttp silently retries an idempotent request once on a dropped pooled connection
     lambda s: s.fault("connection_reset", venue="binance", path_prefix="/api/v3/account",
                       count=2),
     pb.FAILURE_CLASS_NETWORK, "balance"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "exchange", "options", "arrange", "failure_class", "step"),
    FAILURES,
    ids=[f[0] for f in FAILURES],
)
def test_each_failure_class_is_named_with_a_remedy_at_the_step_that_hit_it(
    stub: sgrpc.ConnectionServiceStub,
    sim: SimulatorThread,
    case: str,
    exchange: str,
    options: dict[str, Any],
    arrange: Any,
    failure_class: pb.FailureClass.ValueType,
    step: str,
) -> None:
    conn = sim_connection(stub, sim, case.replace("_", "-"), exchange, **options)
    if arrange is not None:
        arrange(sim)
    stream = run_test(stub, conn.name)
    result = stream.final()
    assert result.status == pb.TEST_STATUS_FAILED
    assert pb.FailureClass.Name(result.failure_class) == pb.FailureClass.Name(failure_class), (
        result.message
    )
    assert result.remedy
    errors = [line for line in stream.lines if line.level == pb.LOG_LEVEL_ERROR]
    assert [line.step for line in errors] == [step]
    assert result.message.startswith(f"{step}: ")
    assert get(stub, conn.name).last_test.failure_class == result.failure_class


def test_a_skewed_clock_is_measured_and_warned_about_before_it_fails(
    stub: sgrpc.ConnectionServiceStub, sim: SimulatorThread
) -> None:
    conn = sim_connection(stub, sim, "skew-measured")
    _skew(sim)
    stream = run_test(stub, conn.name)
    clock = [line for line in stream.lines if line.step == "clock"]
    assert clock and clock[0].level == pb.LOG_LEVEL_WARNING
    skew_s = stream.final().clock_skew.seconds
    assert 19 <= skew_s <= 20


def test_a_disabled_or_unknown_connection_is_refused(
    stub: sgrpc.ConnectionServiceStub, sim: SimulatorThread
) -> None:
    conn = sim_connection(stub, sim, "switched-off", enabled=False)
    with pytest.raises(grpc.RpcError) as disabled:
        run_test(stub, conn.name)
    assert disabled.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as missing:
        run_test(stub, "connections/nobody-here")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as malformed:
        run_test(stub, "connections/Not An Id")
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_stream_cancelled_mid_test_stores_nothing(
    stub: sgrpc.ConnectionServiceStub, sim: SimulatorThread, sim_daemon: DaemonProcess,
    sim_channel: grpc.Channel,
) -> None:
    conn = sim_connection(stub, sim, "cancelled")
    # Twice: the cancelled test's balance request, then the one of the run after it.
    sim.fault("latency", venue="binance", path_prefix="/api/v3/account", delay_s=1.5, count=2)
    cancelled = cancelled_calls(sim_daemon, TEST_METHOD)
    call = stub.TestConnection(spb.TestConnectionRequest(name=conn.name), timeout=30)
    seen = []
    for event in call:
        seen.append(event.log.step)
        if event.log.step == "clock":
            call.cancel()
            break
    assert "balance" not in seen
    wait_unwound(sim_daemon, TEST_METHOD, cancelled)  # the test is gone, not finished
    assert not get(stub, conn.name).HasField("last_test")
    # The connection is fine: a full run stores its result, and only its own: had the
    # cancelled test lived on, it would have finished first (it started first).
    assert run_test(stub, conn.name).final().status == pb.TEST_STATUS_SUCCESS
    assert get(stub, conn.name).HasField("last_test")
    assert results_stored(sim_channel, conn.name) == 1


def test_concurrent_tests_of_one_connection_each_store_a_result(
    stub: sgrpc.ConnectionServiceStub, sim: SimulatorThread
) -> None:
    conn = sim_connection(stub, sim, "concurrent")
    results: list[pb.ConnectionTestResult] = []

    def one() -> None:
        results.append(run_test(stub, conn.name).final())

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 4 and all(r.status == pb.TEST_STATUS_SUCCESS for r in results)
    newest = max(r.start_time.ToNanoseconds() for r in results)
    stored = get(stub, conn.name).last_test
    assert stored.start_time.ToNanoseconds() <= newest  # some finished result, never a blend


def test_no_credential_reaches_a_streamed_line_a_result_or_the_log(
    stub: sgrpc.ConnectionServiceStub, sim: SimulatorThread, sim_daemon: DaemonProcess
) -> None:
    """Bybit echoes the API key in its errors; ccxt puts URLs (with signatures) in messages."""
    connections = [
        sim_connection(stub, sim, "leak-ok"),
        sim_connection(stub, sim, "leak-bad-secret", stored_secret="mistyped-secret-x"),
        sim_connection(stub, sim, "leak-bybit", "bybit", stored_secret="mistyped-secret-y"),
        sim_connection(stub, sim, "leak-bybit-key", "bybit", provision=False),
        sim_connection(stub, sim, "leak-okx", "okx", stored_secret="mistyped-secret-z"),
    ]
    streamed: list[bytes] = []
    for conn in connections:
        streamed += run_test(stub, conn.name).raw
        streamed.append(get(stub, conn.name).SerializeToString())
    batch = stub.BatchTestConnections(
        spb.BatchTestConnectionsRequest(names=[c.name for c in connections]), timeout=60
    )
    streamed += [event.SerializeToString() for event in batch]
    everything = b"\n".join(streamed) + sim_daemon.logs().encode()
    for conn in connections:
        for value in (conn.secret, conn.api_key, PASSPHRASE):
            assert value.encode() not in everything, f"{value!r} leaked"
