"""The daemon as an operator sees it: socket mode, health, reflection, signals, single instance."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from tests.support.daemon_process import DaemonProcess


def test_socket_is_owner_only(daemon: DaemonProcess) -> None:
    assert (daemon.socket.stat().st_mode & 0o777) == 0o600
    assert (daemon.state_dir.stat().st_mode & 0o777) == 0o700


def test_reflection_lists_services(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for a in answers for s in a.list_services_response.service}
    assert {"cts.v1.ConnectionService", "grpc.health.v1.Health"} <= names


def test_sigterm_finishes_in_flight_calls_and_exits_quickly(daemon: DaemonProcess) -> None:
    results: list[object] = []

    def hammer() -> None:
        with grpc.insecure_channel(daemon.address) as ch:
            stub = sgrpc.ConnectionServiceStub(ch)
            for _ in range(200):
                try:
                    stub.ListExchanges(spb.ListExchangesRequest(), timeout=5)
                    results.append("ok")
                except grpc.RpcError as exc:
                    results.append(exc.code())
                    return

    worker = threading.Thread(target=hammer)
    worker.start()
    time.sleep(0.2)
    started = time.monotonic()
    code = daemon.stop(signal.SIGTERM, timeout=10)
    elapsed = time.monotonic() - started
    worker.join(10)
    assert code == 0
    assert elapsed < 5.0
    assert "ok" in results
    assert not daemon.socket.exists()
    assert set(results) <= {"ok", grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}


def test_second_daemon_on_same_state_dir_is_refused(daemon: DaemonProcess) -> None:
    other = daemon.run_refused("--listen", f"unix:{daemon.root}/other.sock",
                               command=daemon.command()[:-2])
    assert other.returncode == 78
    assert "in use by another ctsd" in other.stderr


def test_stale_socket_from_a_killed_daemon_is_replaced(daemon: DaemonProcess) -> None:
    daemon.kill()
    assert daemon.socket.exists()
    daemon.start()
    assert daemon.health() == 1  # SERVING


def test_loopback_tcp_listener(daemon: DaemonProcess) -> None:
    daemon.stop()
    log_path = daemon.root / "tcp.log"
    command = [*daemon.command()[:-2], "--listen", "tcp://127.0.0.1:0"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stderr=log, stdout=log)
    try:
        address = ""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not address:
            time.sleep(0.05)
            for line in log_path.read_text().splitlines():
                if "msg=serving" in line:
                    address = line.split("address=")[1].split()[0]
        assert address.startswith("127.0.0.1:"), log_path.read_text()
        with grpc.insecure_channel(address) as ch:
            got = sgrpc.ConnectionServiceStub(ch).ListExchanges(
                spb.ListExchangesRequest(), timeout=5
            )
        assert len(got.exchanges) == 4
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
