"""cts.v1.HealthService against the real daemon and simulator."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from cts.v1 import health_service_pb2 as hpb
from cts.v1 import health_service_pb2_grpc as hgrpc
from ctsd import __version__
from ctsd.store.migrations import SCHEMA_VERSION
from tests.support.conn_tests import run_test, sim_connection
from tests.support.daemon_process import DaemonProcess
from tests.support.simulator import SimulatorThread


@pytest.fixture
def stubs(
    sim_channel: grpc.Channel,
) -> tuple[sgrpc.ConnectionServiceStub, hgrpc.HealthServiceStub]:
    return sgrpc.ConnectionServiceStub(sim_channel), hgrpc.HealthServiceStub(sim_channel)


def test_system_status_counts_connections_and_shows_rate_limit_usage(
    stubs: tuple[sgrpc.ConnectionServiceStub, hgrpc.HealthServiceStub], sim: SimulatorThread
) -> None:
    connections, health = stubs
    good = sim_connection(connections, sim, "status-good")
    bad = sim_connection(connections, sim, "status-bad", stored_secret="mistyped")
    sim_connection(connections, sim, "status-off", enabled=False)
    run_test(connections, good.name)
    run_test(connections, bad.name)
    status = health.GetSystemStatus(hpb.GetSystemStatusRequest())
    assert status.version == __version__
    assert status.uptime.ToNanoseconds() > 0 and status.start_time.seconds > 0
    assert status.store_status == "ok" and status.schema_version == SCHEMA_VERSION
    states = {c.state: c.count for c in status.connections}
    assert states["disabled"] >= 1 and states["test_failed"] >= 1 and states["test_success"] >= 1
    assert states["untested"] >= 1
    weight = [u for u in status.rate_limits if u.scope.startswith("binance/request_weight/")]
    assert weight and weight[0].used > 0 and weight[0].limit > 0
    assert weight[0].interval.seconds == 60


def test_connections_health_reports_last_test_error_rate_and_buckets(
    stubs: tuple[sgrpc.ConnectionServiceStub, hgrpc.HealthServiceStub], sim: SimulatorThread
) -> None:
    connections, health = stubs
    flaky = sim_connection(connections, sim, "health-flaky", "bybit")
    run_test(connections, flaky.name)
    sim.fault("maintenance", venue="bybit", path_prefix="/v5/account/wallet-balance")
    run_test(connections, flaky.name)
    answer = health.GetConnectionsHealth(
        hpb.GetConnectionsHealthRequest(filter='exchange = "bybit"')
    )
    mine = {c.name: c for c in answer.connections}[f"{flaky.name}/health"]
    assert all(c.exchange == "bybit" for c in answer.connections)
    assert mine.last_test_status == pb.TEST_STATUS_FAILED
    assert mine.last_failure_class == pb.FAILURE_CLASS_MAINTENANCE
    assert mine.tests_in_window == 2 and mine.error_rate == 0.5
    assert mine.window.seconds == 24 * 3600
    assert mine.rate_limits and all(u.scope.startswith("bybit/") for u in mine.rate_limits)
    assert any("key ****" in u.scope for u in mine.rate_limits)  # its own account's buckets
    for usage in mine.rate_limits:  # a masked hint at most, never the key
        assert flaky.api_key not in usage.scope


def test_verify_startup_runs_every_check_and_they_pass_here(
    stubs: tuple[sgrpc.ConnectionServiceStub, hgrpc.HealthServiceStub],
) -> None:
    _, health = stubs
    answer = health.VerifyStartup(hpb.VerifyStartupRequest(), timeout=30)
    assert [c.name for c in answer.checks] == [
        "state_dir_writable", "database_integrity", "schema_version", "master_key",
        "database_writable", "exchange_modules", "exchange_endpoints", "clock", "database_rows",
    ]  # fmt: skip
    assert answer.passed, [(c.name, c.detail) for c in answer.checks if not c.passed]
    endpoints = {c.name: c for c in answer.checks}["exchange_endpoints"]
    assert "answered" in endpoints.detail


def test_grpc_health_is_serving_for_every_service(sim_daemon: DaemonProcess) -> None:
    with grpc.insecure_channel(sim_daemon.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "cts.v1.ConnectionService", "cts.v1.HealthService"):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, service


def test_an_unreachable_endpoint_fails_verification(daemon: DaemonProcess) -> None:
    """The plain `daemon` fixture has no endpoints; this one points at a closed port."""
    daemon.stop()
    daemon.extra_args = ["--exchange-endpoint", "okx=http://127.0.0.1:9"]
    daemon.start()
    with grpc.insecure_channel(daemon.address) as channel:
        answer = hgrpc.HealthServiceStub(channel).VerifyStartup(
            hpb.VerifyStartupRequest(), timeout=30
        )
    checks = {c.name: c for c in answer.checks}
    assert not answer.passed and not checks["exchange_endpoints"].passed
    assert "okx: http://127.0.0.1:9 unreachable" in checks["exchange_endpoints"].detail
    assert checks["database_integrity"].passed and checks["master_key"].passed
