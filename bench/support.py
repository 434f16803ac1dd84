"""Shared by the daemon benchmarks: run ctsd as a process and seed it with connections."""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc

REPO = Path(__file__).resolve().parent.parent


class Daemon:
    """`ctsd` on a private state dir; `start()` returns seconds until SERVING."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="ctsb-", dir="/tmp"))
        self.socket = self.root / "ctsd.sock"
        self.address = f"unix:{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> float:
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ctsd",
                "--state-dir",
                str(self.root / "state"),
                "--listen",
                self.address,
                "--log-level",
                "warning",
            ],
            cwd=REPO,
            stderr=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        request = health_pb2.HealthCheckRequest()
        while time.perf_counter() - started < timeout:
            if self.socket.exists():
                try:
                    with grpc.insecure_channel(self.address) as ch:
                        answer = health_pb2_grpc.HealthStub(ch).Check(request, timeout=0.5)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return time.perf_counter() - started
                except grpc.RpcError:
                    pass
            time.sleep(0.002)
        raise TimeoutError("ctsd did not become SERVING")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def seed_connections(address: str, count: int) -> list[str]:
    """Creates `count` Binance spot connections; returns their names."""
    names = []
    with grpc.insecure_channel(address) as ch:
        stub = sgrpc.ConnectionServiceStub(ch)
        for i in range(count):
            conn = pb.Connection(
                display_name=f"bench {i:05d}",
                exchange="binance",
                api_type=pb.API_TYPE_SPOT,
                enabled=i % 2 == 0,
                credentials=pb.Credentials(
                    api_key=f"benchkey{i:012d}", api_secret=os.urandom(16).hex()
                ),
            )
            made = stub.CreateConnection(
                spb.CreateConnectionRequest(connection=conn, connection_id=f"bench-{i:05d}")
            )
            names.append(made.name)
    return names


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")
