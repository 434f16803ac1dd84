"""SIGTERM drains and exits in time; SIGHUP reloads without dropping clients."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cts.v1 import connection_pb2 as cpb
from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from cts.v1 import health_service_pb2 as hpb
from cts.v1.health_service_pb2_grpc import HealthServiceStub
from tests.ops.conftest import MakeDaemon
from tests.support.conn_tests import run_test, sim_connection
from tests.support.daemon_process import DaemonProcess
from tests.support.sim_fixtures import sim  # noqa: F401
from tests.support.simulator import SimulatorThread

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def start_with_config(make_daemon: MakeDaemon, toml: str) -> tuple[DaemonProcess, Path, str]:
    daemon = make_daemon([], start=False)
    config = daemon.root / "ctsd.toml"
    config.write_text(toml)
    address = f"unix:{daemon.root / 'ctsd.sock'}"
    daemon.extra_args += ["--config", str(config), "--listen", address]
    daemon.start()
    return daemon, config, address


LIST_EXCHANGES = "/cts.v1.ConnectionService/ListExchanges"


def is_check_line(record: dict[str, object]) -> bool:
    return record.get("msg") == "rpc" and record.get("method") == "/grpc.health.v1.Health/Check"


def test_sighup_changes_the_log_level_and_keeps_open_streams(make_daemon: MakeDaemon) -> None:
    daemon, config, address = start_with_config(make_daemon, '[daemon]\nlog_level = "info"\n')
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=30)
        assert next(watch).status == SERVING
        health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        # A call is logged before its answer leaves: once a later call's line is written,
        # the check's would be there too, were it shown. It is a debug line: it is not.
        sgrpc.ConnectionServiceStub(channel).ListExchanges(spb.ListExchangesRequest(), timeout=5)
        daemon.wait_line(lambda r: r.get("method") == LIST_EXCHANGES)
        assert not [r for r in daemon.records() if is_check_line(r)]

        config.write_text('[daemon]\nlog_level = "debug"\n')
        daemon.send(signal.SIGHUP)
        daemon.wait_line(lambda r: r.get("msg") == "reloaded")
        health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert daemon.wait_records(is_check_line, 1)  # now it is

        config.write_text("[daemon\nlog_level = ")  # broken: refused, old config kept
        daemon.send(signal.SIGHUP)
        refused = daemon.wait_line(lambda r: r.get("msg", "").startswith("reload refused"))
        assert "not valid TOML" in refused["error"]
        stub = sgrpc.ConnectionServiceStub(channel)
        assert len(stub.ListExchanges(spb.ListExchangesRequest(), timeout=5).exchanges) == 4

        daemon.send(signal.SIGTERM)
        assert next(watch).status == NOT_SERVING  # the same stream, never dropped by reloads
    assert daemon.stop() == 0


def binance_weight(channel: grpc.Channel) -> hpb.RateLimitUsage:
    """The IP request-weight bucket, as GetSystemStatus shows it (limit: after the margin)."""
    status = HealthServiceStub(channel).GetSystemStatus(hpb.GetSystemStatusRequest(), timeout=5)
    return next(u for u in status.rate_limits if u.scope.startswith("binance/request_weight/"))


def test_sighup_applies_new_rate_limits_to_buckets_in_use(
    make_daemon: MakeDaemon, sim: SimulatorThread,  # noqa: F811
) -> None:
    endpoint = f'[exchanges.binance]\nendpoint = "{sim.base_url}"\n'
    daemon, config, address = start_with_config(make_daemon, endpoint)
    with grpc.insecure_channel(address) as channel:
        stub = sgrpc.ConnectionServiceStub(channel)
        conn = sim_connection(stub, sim, "sighup-limits")
        assert run_test(stub, conn.name).final().status == cpb.TEST_STATUS_SUCCESS
        before = binance_weight(channel)
        assert before.limit == 1080 and before.used > 0  # 90 % of Binance's 1200 per minute

        config.write_text(endpoint + "[rate_limits.binance.request_weight]\nlimit = 600\n")
        daemon.send(signal.SIGHUP)
        line = daemon.wait_line(lambda r: r.get("msg") == "rate limits reloaded")
        assert line["settings"] == "binance.request_weight: default -> limit=600"
        assert line["scopes"].endswith(": 1080/60s -> 540/60s")
        after = binance_weight(channel)  # the same channel, and the window's usage kept
        assert (after.limit, after.used) == (540, before.used)
        assert run_test(stub, conn.name).final().status == cpb.TEST_STATUS_SUCCESS

        config.write_text(endpoint + "[rate_limits.binance.request_wieght]\nlimit = 60\n")
        daemon.send(signal.SIGHUP)  # a misspelt limit: refused as a whole
        refused = daemon.wait_line(lambda r: r.get("msg", "").startswith("reload refused"))
        assert "binance limits are request_weight" in refused["error"]
        assert binance_weight(channel).limit == 540
    assert conn.api_key not in daemon.logs() and conn.secret not in daemon.logs()
    assert daemon.stop() == 0


def test_sigterm_refuses_new_calls_and_exits_within_the_grace(make_daemon: MakeDaemon) -> None:
    daemon, _, address = start_with_config(make_daemon, "[daemon]\ngrace_seconds = 1.5\n")
    with grpc.insecure_channel(address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert next(watch).status == SERVING
        started = time.monotonic()
        daemon.send(signal.SIGTERM)
        assert next(watch).status == NOT_SERVING
        time.sleep(0.2)
        with grpc.insecure_channel(address) as late:
            stub = sgrpc.ConnectionServiceStub(late)
            with pytest.raises(grpc.RpcError) as refused:
                stub.ListExchanges(spb.ListExchangesRequest(), timeout=2)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError):  # the open stream is cut at the deadline
            next(watch)
    assert daemon.stop(timeout=10) == 0
    elapsed = time.monotonic() - started
    assert 1.0 < elapsed < 4.0, elapsed  # waited for the stream, then no longer
    assert daemon.wait_line(lambda r: r.get("msg") == "stopped")


def test_stop_signals_repeated_through_the_whole_shutdown_still_exit_cleanly(
    make_daemon: MakeDaemon,
) -> None:
    """An impatient supervisor (or `kill` typed twice) signals again while the daemon is
    already stopping: every instant of the shutdown, up to the interpreter's exit, is hit
    by another SIGTERM or SIGINT, and the exit is still a clean 0."""
    daemon, _, _ = start_with_config(make_daemon, "[daemon]\ngrace_seconds = 0.5\n")
    proc = daemon.proc
    assert proc is not None
    signals = 0
    deadline = time.monotonic() + 15
    while proc.poll() is None and time.monotonic() < deadline:
        proc.send_signal(signal.SIGTERM if signals % 2 == 0 else signal.SIGINT)
        signals += 1
        try:
            proc.wait(timeout=0.002)
        except subprocess.TimeoutExpired:
            continue
    print(f"[signals] {signals} stop signals sent during one shutdown")
    assert proc.returncode == 0, proc.returncode
    assert daemon.stop() == 0
