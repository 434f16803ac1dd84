"""BatchTestConnections against the real daemon and simulator: streaming, sharing, retries."""

from __future__ import annotations

import grpc
import pytest

from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from tests.support.conn_tests import (
    cancelled_calls,
    results_stored,
    run_batch,
    sim_connection,
    wait_unwound,
)
from tests.support.daemon_process import DaemonProcess
from tests.support.simulator import SimulatorThread

Events = list[spb.BatchTestConnectionsResponse]

BATCH_METHOD = "/cts.v1.ConnectionService/BatchTestConnections"


@pytest.fixture
def stub(sim_channel: grpc.Channel) -> sgrpc.ConnectionServiceStub:
    return sgrpc.ConnectionServiceStub(sim_channel)


def results(events: Events) -> dict[str, spb.BatchTestItemResult]:
    return {e.result.name: e.result for e in events if e.HasField("result")}


def batch(stub: sgrpc.ConnectionServiceStub, *names: str) -> Events:
    return run_batch(stub, spb.BatchTestConnectionsRequest(names=list(names)))


def test_results_stream_as_they_finish_with_progress_then_a_summary(
    stub: sgrpc.ConnectionServiceStub, sim: SimulatorThread
) -> None:
    names = [
        sim_connection(stub, sim, "b-binance").name,
        sim_connection(stub, sim, "b-bybit", "bybit").name,
        sim_connection(stub, sim, "b-okx", "okx").name,
        sim_connection(stub, sim, "b-wrong", stored_secret="mistyped").name,
    ]
    events = batch(stub, *names)
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["result", "progress"] * 4 + ["summary"]
    progress = [e.progress for e in events if e.HasField("progress")]
    assert [(p.done, p.total) for p in progress] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    found = results(events)
    assert set(found) == set(names)
    assert found[names[3]].result.failure_class == pb.FAILURE_CLASS_AUTHENTICATION
    assert all(found[n].result.status == pb.TEST_STATUS_SUCCESS for n in names[:3])
    summary = events[-1].summary
    assert summary.total == 4
    assert {(c.status, c.count) for c in summary.by_status} == {
        (pb.TEST_STATUS_SUCCESS, 3),
        (pb.TEST_STATUS_FAILED, 1),
    }
    assert [(f.failure_class, f.count) for f in summary.failures] == [
        (pb.FAILURE_CLASS_AUTHENTICATION, 1)
    ]
    stored = stub.GetConnection(spb.GetConnectionRequest(name=names[3])).last_test
    assert stored.failure_class == pb.FAILURE_CLASS_AUTHENTICATION


def test_connections_with_the_same_credentials_are_tested_once(
    stub: sgrpc.ConnectionServiceStub, sim: SimulatorThread
) -> None:
    first = sim_connection(stub, sim, "twin-a")
    second = sim_connection(stub, sim, "twin-b", provision=False, api_key=first.api_key,
                            stored_secret=first.secret)  # fmt: skip
    typo = sim_connection(stub, sim, "twin-typo", provision=False, api_key=first.api_key,
                          stored_secret="not-the-secret")  # fmt: skip
    found = results(batch(stub, first.name, second.name, typo.name))
    shared = {n: r.shared_from for n, r in found.items()}
    assert sorted(shared.values()) == ["", "", first.name]  # the twin shares, the typo does not
    assert shared[typo.name] == ""
    assert found[first.name].result.start_time == found[second.name].result.start_time
    assert found[typo.name].result.failure_class == pb.FAILURE_CLASS_AUTHENTICATION
    for conn in (first, second):
        stored = stub.GetConnection(spb.GetConnectionRequest(name=conn.name)).last_test
        assert stored.status == pb.TEST_STATUS_SUCCESS


def test_only_retryable_failures_are_retried(
    stub: sgrpc.ConnectionServiceStub, sim: SimulatorThread
) -> None:
    limited = sim_connection(stub, sim, "retry-limited")
    maintained = sim_connection(stub, sim, "retry-maint", "okx")
    refused = sim_connection(stub, sim, "retry-refused", stored_secret="mistyped")
    sim.fault("rate_limit", venue="binance", path_prefix="/api/v3/account", count=1)
    sim.fault("maintenance", venue="okx", path_prefix="/api/v5/account/balance", count=1)
    found = results(batch(stub, limited.name, maintained.name, refused.name))
    assert found[limited.name].attempts == 2
    assert found[limited.name].result.status == pb.TEST_STATUS_SUCCESS
    assert found[maintained.name].attempts == 2
    assert found[maintained.name].result.status == pb.TEST_STATUS_SUCCESS
    assert found[refused.name].attempts == 1  # AUTHENTICATION: asking again cannot help
    assert found[refused.name].result.failure_class == pb.FAILURE_CLASS_AUTHENTICATION


def test_an_item_that_times_out_still_gets_a_result(
    stub: sgrpc.ConnectionServiceStub, sim: SimulatorThread
) -> None:
    hung = sim_connection(stub, sim, "batch-hung", "bybit")
    fine = sim_connection(stub, sim, "batch-fine")
    sim.fault("hang", venue="bybit", path_prefix="/v5/account/wallet-balance", delay_s=8, count=5)
    events = batch(stub, hung.name, fine.name)
    found = results(events)
    assert found[fine.name].result.status == pb.TEST_STATUS_SUCCESS
    timed_out = found[hung.name].result
    assert timed_out.status == pb.TEST_STATUS_FAILED
    assert timed_out.failure_class == pb.FAILURE_CLASS_TIMEOUT
    # The batch did not wait out the 8 s hang: the item's deadline ended it (with room for
    # a loaded machine; the deadline itself is exact in tests/connections/checks/test_batch).
    assert events[-1].summary.elapsed.seconds < 8


def test_a_filter_selects_enabled_connections_and_bad_requests_are_refused(
    stub: sgrpc.ConnectionServiceStub, sim: SimulatorThread
) -> None:
    on = sim_connection(stub, sim, "kraken-on", "kraken")
    sim_connection(stub, sim, "kraken-off", "kraken", enabled=False)
    request = spb.BatchTestConnectionsRequest(filter='exchange = "kraken"')
    assert set(results(run_batch(stub, request))) == {on.name}
    bad = [
        (spb.BatchTestConnectionsRequest(names=[on.name], filter="x"), "INVALID_ARGUMENT"),
        (spb.BatchTestConnectionsRequest(names=["connections/missing"]), "NOT_FOUND"),
        (spb.BatchTestConnectionsRequest(names=["nope"]), "INVALID_ARGUMENT"),
        (spb.BatchTestConnectionsRequest(filter="exchange =="), "INVALID_ARGUMENT"),
        (spb.BatchTestConnectionsRequest(concurrency=99), "INVALID_ARGUMENT"),
        (spb.BatchTestConnectionsRequest(priority=10), "INVALID_ARGUMENT"),
        (spb.BatchTestConnectionsRequest(names=["connections/kraken-off"]), "FAILED_PRECONDITION"),
    ]
    for request, code in bad:
        with pytest.raises(grpc.RpcError) as refused:
            run_batch(stub, request)
        assert refused.value.code().name == code, request


def test_a_batch_cancelled_mid_way_keeps_what_finished_and_nothing_else(
    stub: sgrpc.ConnectionServiceStub, sim: SimulatorThread, sim_daemon: DaemonProcess,
    sim_channel: grpc.Channel,
) -> None:
    quick = sim_connection(stub, sim, "cancel-quick", "okx")
    slow = sim_connection(stub, sim, "cancel-slow")
    # Twice: the cancelled test's balance request, then the one of the run after it.
    sim.fault("latency", venue="binance", path_prefix="/api/v3/account", delay_s=1.5, count=2)
    call = stub.BatchTestConnections(
        spb.BatchTestConnectionsRequest(names=[quick.name, slow.name]), timeout=30
    )
    cancelled = cancelled_calls(sim_daemon, BATCH_METHOD)
    first = next(iter(call))
    assert first.result.name == quick.name
    call.cancel()
    wait_unwound(sim_daemon, BATCH_METHOD, cancelled)  # the slow test is gone, not finished
    get = stub.GetConnection
    assert get(spb.GetConnectionRequest(name=quick.name)).HasField("last_test")
    assert not get(spb.GetConnectionRequest(name=slow.name)).HasField("last_test")
    # Had the slow test lived on, it would have finished before this one, started later.
    assert results(batch(stub, slow.name))[slow.name].result.status == pb.TEST_STATUS_SUCCESS
    assert results_stored(sim_channel, slow.name) == 1
