"""The opt-in Prometheus endpoint: RPCs by method and code, latency, auth failures."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import grpc
from prometheus_client.parser import text_string_to_metric_families

from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from tests.ops.conftest import TOKEN, MakeDaemon
from tests.ops.pki import Pki
from tests.support.conn_tests import run_test, sim_connection
from tests.support.daemon_process import DaemonProcess
from tests.support.simulator import running_simulator

SERVICE = "cts.v1.ConnectionService"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(address: str) -> tuple[str, Samples]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    with opener.open(f"http://{address}/metrics", timeout=5) as answer:
        body: str = answer.read().decode()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    return body, samples


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


def wait_for(daemon: DaemonProcess, address: str, key: tuple[str, frozenset[tuple[str, str]]],
             value: float) -> tuple[str, Samples]:  # fmt: skip
    deadline = time.monotonic() + 5
    while True:
        body, samples = scrape(address)
        if samples.get(key) == value or time.monotonic() > deadline:
            return body, samples
        time.sleep(0.05)


def test_metrics_endpoint_counts_rpcs_latency_and_auth_failures(
    make_daemon: MakeDaemon, pki: Pki
) -> None:
    daemon = make_daemon([], start=False)
    address = f"unix:{daemon.root / 'ctsd.sock'}"
    daemon.extra_args += ["--listen", address, "--metrics-listen", "127.0.0.1:0",
                       "--auth-token-file", str(pki.token_file)]  # fmt: skip
    daemon.start()
    metrics = str(daemon.wait_line(lambda r: r.get("msg") == "metrics serving")["metrics_address"])
    with grpc.insecure_channel(address) as channel:
        stub = sgrpc.ConnectionServiceStub(channel)
        for _ in range(3):
            stub.ListExchanges(
                spb.ListExchangesRequest(),
                timeout=5,
                metadata=(("authorization", f"Bearer {TOKEN}"),),
            )
        try:
            stub.ListExchanges(spb.ListExchangesRequest(), timeout=5)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED

    ok = labels(grpc_service=SERVICE, grpc_method="ListExchanges", grpc_code="OK")
    body, samples = wait_for(daemon, metrics, ("grpc_server_handled_total", ok), 3.0)
    assert samples[("grpc_server_handled_total", ok)] == 3.0
    refused = labels(grpc_service=SERVICE, grpc_method="ListExchanges", grpc_code="UNAUTHENTICATED")
    assert samples[("grpc_server_handled_total", refused)] == 1.0
    assert samples[("grpc_server_handling_seconds_count", ok)] == 3.0
    assert samples[("grpc_server_handling_seconds_bucket", ok | {("le", "+Inf")})] == 3.0
    assert samples[("grpc_server_handling_seconds_sum", ok)] > 0
    failure = labels(grpc_service=SERVICE, grpc_method="ListExchanges", reason="missing_token")
    assert samples[("ctsd_auth_failures_total", failure)] == 1.0
    assert samples[("process_resident_memory_bytes", frozenset())] > 0
    assert TOKEN not in body


def test_metrics_show_rate_limits_connection_tests_and_engines(make_daemon: MakeDaemon) -> None:
    with running_simulator() as sim:
        daemon = make_daemon([], start=False)
        config = daemon.root / "ctsd.toml"
        config.write_text(f'[exchanges.binance]\nendpoint = "{sim.base_url}"\n')
        daemon.extra_args += ["--config", str(config), "--metrics-listen", "127.0.0.1:0"]
        daemon.start()
        serving = daemon.wait_line(lambda r: r.get("msg") == "metrics serving")
        metrics = str(serving["metrics_address"])
        with grpc.insecure_channel(daemon.address) as channel:
            stub = sgrpc.ConnectionServiceStub(channel)
            conn = sim_connection(stub, sim, "metrics-binance")
            run_test(stub, conn.name).final()
        key = ("ctsd_connection_tests_total", labels(status="success", failure_class="none"))
        body, samples = wait_for(daemon, metrics, key, 1.0)
    assert samples[key] == 1.0
    names = {name for name, _ in samples}
    assert {"ctsd_ratelimit_used", "ctsd_ratelimit_limit", "ctsd_ratelimit_waits_total",
            "ctsd_ratelimit_wait_seconds_total", "ctsd_ratelimit_rejections_total",
            "ctsd_ratelimit_paused_seconds"} <= names  # fmt: skip
    assert any(dict(lbls).get("exchange") == "binance" for name, lbls in samples
               if name == "ctsd_ratelimit_used")  # fmt: skip
    assert samples[("ctsd_engines", labels(state="running"))] == 0.0
    assert "# TYPE ctsd_engine_cycles_total counter" in body  # declared even with no engines


def test_metrics_are_off_by_default_and_cost_no_import() -> None:
    code = (
        "import sys, ctsd.cli, ctsd.daemon\n"
        "from ctsd.ops.metrics import MetricsRegistry\n"
        "r = MetricsRegistry(); r.counter('x_total', 'x', ('a',)).labels('b').inc()\n"
        "print('prometheus_client' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_engine_metrics_report_each_engines_cycle_lag_and_skipped_ticks() -> None:
    from ctsd.engine.config import TradingMode
    from ctsd.engine.status import EngineState, EngineStatus
    from ctsd.ops.metrics import EngineCollector

    running = EngineStatus("a", "e1", EngineState.RUNNING, TradingMode.PAPER, "grid",
                           ("BTC/USDT",), cycles=7, last_cycle_lag_s=0.004, skipped_ticks=2,
                           quiet_events=5, heartbeat_ms=9_000, position_differences=1,
                           liquidations=1)
    collected = {(s.name, frozenset(s.labels.items())): s.value
                 for family in EngineCollector(lambda: [running], now=lambda: 10.0).collect()
                 for s in family.samples}
    a = labels(connection_id="a")
    assert collected[("ctsd_engine_last_cycle_lag_seconds", a)] == 0.004
    assert collected[("ctsd_engine_skipped_ticks_total", a)] == 2
    assert collected[("ctsd_engine_quiet_events_total", a)] == 5
    assert collected[("ctsd_engine_cycles_total", a)] == 7
    assert collected[("ctsd_engine_heartbeat_age_seconds", a)] == 1.0
    assert collected[("ctsd_engine_position_differences_total", a)] == 1
    assert collected[("ctsd_engine_liquidations_total", a)] == 1
    assert collected[("ctsd_engines", labels(state="running"))] == 1


def test_metrics_beyond_loopback_need_an_explicit_opt_in(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon([], start=False)
    daemon.extra_args += ["--metrics-listen", "0.0.0.0:0"]
    refused = daemon.run_to_exit()
    reasons = [line for line in refused.stderr.splitlines() if line.startswith("ctsd: ")]
    assert refused.returncode == 78 and len(reasons) == 1 and "metrics_public" in reasons[0]
    daemon.extra_args += ["--metrics-public"]
    daemon.start()
    address = str(daemon.wait_line(lambda r: r.get("msg") == "metrics serving")[
        "metrics_address"])
    assert address.startswith("0.0.0.0:")
    scrape(address.replace("0.0.0.0", "127.0.0.1"))


def threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("Threads:")).split()[1])


def test_idle_connections_cannot_grow_the_metrics_endpoint(make_daemon: MakeDaemon) -> None:
    """Before: each open connection held a thread of its own (1,500 idle ones, 1,500)."""
    daemon = make_daemon(["--metrics-listen", "127.0.0.1:0"])
    address = str(daemon.wait_line(lambda r: r.get("msg") == "metrics serving")[
        "metrics_address"])
    host, port = address.rsplit(":", 1)
    assert daemon.proc is not None
    before = threads_of(daemon.proc.pid)
    idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(120)]
    during = 0
    try:  # the most threads seen while they are open (each accepted one gets served)
        for _ in range(40):
            during = max(during, threads_of(daemon.proc.pid))
            time.sleep(0.02)
    finally:
        for connection in idle:
            connection.close()
    assert during - before <= 16 + 2, (before, during)
    deadline = time.monotonic() + 15
    while True:  # the slots come back as the server sees the connections close
        try:
            scrape(address)
            break
        except OSError:
            assert time.monotonic() < deadline, "the endpoint never served again"
            time.sleep(0.1)
