"""Real daemons sharing one simulated Binance IP through Redis: no violation at the venue.

Two `ctsd` processes, each with connections of its own (distinct keys), one
simulator whose Binance weight limit is scaled down (on a thread of its own: the
daemons call it over loopback HTTP), one Redis. Each daemon batch-tests its
connections, both at once; together they need several windows of weight, so
each must hold back for the other's requests, which only Redis tells it of. The
simulator counts every request over its limit. (`bench/fleet_limiter_bench.py`
is the long form: three daemons, the efficiency, Redis killed mid-run.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from cts.v1 import health_service_pb2 as hpb
from cts.v1 import health_service_pb2_grpc as hgrpc
from ctsd.sim.ratelimit import RateLimitConfig
from tests.support.conn_tests import run_batch, sim_connection
from tests.support.daemon_process import DaemonProcess, short_tempdir
from tests.support.exchange_clients import exchange_sim_config
from tests.support.simulator import SimulatorThread, running_simulator

LIMIT, WINDOW_S = 60, 0.5
"""Binance's 1,200 weight a minute, scaled: 60 per half second."""
CONNECTIONS = 5
"""Per daemon: each test charges ~22 weight, so ten tests need about four windows."""


def fleet_toml(redis_url: str, member: str, secret: Path) -> str:
    return (f"[rate_limits]\nsafety_margin = 1.0\n"
            f"[rate_limits.binance.request_weight]\nlimit = {LIMIT}\ninterval_s = {WINDOW_S}\n"
            f'[fleet]\nredis_url = "{redis_url}"\negress = "office"\nmember = "{member}"\n'
            f'prefix = "t-{secret.parent.name}"\nscope_secret_file = "{secret}"\n'
            "heartbeat_s = 0.2\nstale_after_s = 0.6\nmax_flight_s = 5\n")


def fleet_daemon(sim: SimulatorThread, toml: str) -> DaemonProcess:
    daemon = DaemonProcess(short_tempdir(), ["--exchange-endpoint", f"binance={sim.base_url}"])
    config = daemon.root / "ctsd.toml"
    config.write_text(toml)
    daemon.extra_args += ["--config", str(config)]
    return daemon


@pytest.fixture
def simulator() -> Iterator[SimulatorThread]:
    limits = RateLimitConfig(scale=(LIMIT + 0.5) / 1200, window_scale=WINDOW_S / 60)
    with running_simulator(exchange_sim_config(limits=limits)) as sim:
        yield sim


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "scope-secret"
    path.write_bytes(b"fleet-scope-secret-for-the-test")
    path.chmod(0o600)
    return path


def batch(address: str, names: list[str], summaries: list[spb.BatchTestSummary]) -> None:
    with grpc.insecure_channel(address) as channel:
        events = run_batch(sgrpc.ConnectionServiceStub(channel),
                           spb.BatchTestConnectionsRequest(names=names, concurrency=5))
    summaries += [e.summary for e in events if e.HasField("summary")]


def binance_buckets(address: str) -> list[hpb.RateLimitUsage]:
    with grpc.insecure_channel(address) as channel:
        status = hgrpc.HealthServiceStub(channel).GetSystemStatus(hpb.GetSystemStatusRequest())
    return [u for u in status.rate_limits if u.scope.startswith("binance/request_weight")]


def test_two_daemons_batch_testing_share_the_ip_weight_without_a_violation(
        simulator: SimulatorThread, redis_url: str, secret: Path) -> None:
    daemons = [fleet_daemon(simulator, fleet_toml(redis_url, f"d{i}", secret))
               for i in range(2)]
    try:
        for daemon in daemons:
            daemon.start(wait=False)
        names: list[list[str]] = []
        for i, daemon in enumerate(daemons):
            daemon.wait_serving()
            with grpc.insecure_channel(daemon.address) as channel:
                stub = sgrpc.ConnectionServiceStub(channel)
                names.append([sim_connection(stub, simulator, f"d{i}-c{j}").name
                              for j in range(CONNECTIONS)])
        summaries: list[spb.BatchTestSummary] = []
        threads = [threading.Thread(target=batch, args=(d.address, n, summaries))
                   for d, n in zip(daemons, names, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        buckets = [binance_buckets(d.address) for d in daemons]
    finally:
        for daemon in daemons:
            daemon.cleanup()
    stats = simulator.stats()
    assert stats["violations"] == {}, stats["violations_by_kind"]
    assert len(summaries) == 2 and all(s.total == CONNECTIONS for s in summaries)
    assert not any(s.failures for s in summaries), summaries
    for mine in buckets:  # one bucket, the fleet's, and it held requests back
        assert [u.counting for u in mine] == [hpb.RATE_LIMIT_COUNTING_SHARED]
    assert sum(u.waits for mine in buckets for u in mine) > 0


def test_redis_unreachable_at_start_exits_78_with_one_line(tmp_path: Path) -> None:
    """Counting alone instead could exceed every limit the fleet shares. The URL's
    password is not shown."""
    daemon = DaemonProcess(short_tempdir(), [])
    config = daemon.root / "ctsd.toml"
    config.write_text('[fleet]\nredis_url = "redis://ctsd:pa55word-NEVER-LEAK@127.0.0.1:1/0"\n')
    daemon.extra_args += ["--config", str(config)]
    try:
        result = daemon.run_to_exit()
    finally:
        daemon.cleanup()
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach Redis at redis://ctsd:***@127.0.0.1:1/0" in lines[0]
    assert "NEVER-LEAK" not in result.stderr
