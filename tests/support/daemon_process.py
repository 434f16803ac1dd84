"""Runs the real `ctsd` as a child process on a private state dir and socket.

Unix socket paths are limited to 107 bytes, so the directory is a short one
under /tmp rather than pytest's deep tmp_path.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

START_TIMEOUT_S = 15.0


class DaemonProcess:
    def __init__(
        self, root: Path, extra_args: list[str] | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.root = root
        self.state_dir = root / "state"
        self.socket = root / "ctsd.sock"
        self.address = f"unix:{self.socket}"
        self.log_path = root / "ctsd.log"
        self.extra_args = list(extra_args or [])
        self.env = dict(os.environ if env is None else env)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: object = None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "ctsd",
            "--state-dir",
            str(self.state_dir),
            "--listen",
            self.address,
            *self.extra_args,
        ]

    def start(self) -> DaemonProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file = log
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, env=self.env)
        self.wait_serving()
        return self

    def wait_serving(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"ctsd exited with {self.proc.returncode}:\n{self.logs()}")
            if self.socket.exists() and self.health() == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.05)
        raise TimeoutError(f"ctsd did not become SERVING in {timeout}s:\n{self.logs()}")

    def health(self) -> int:
        try:
            with grpc.insecure_channel(self.address) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status)
        except grpc.RpcError:
            return int(health_pb2.HealthCheckResponse.UNKNOWN)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc is None:
            return 0
        code = stop_process(self.proc, sig, timeout)
        self.proc = None
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> DaemonProcess:
        self.stop()
        return self.start()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def stop_process(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> int:
    """Signal a child and wait for it; one that outlives `timeout` is killed and it raises."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode


def short_tempdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="cts-", dir="/tmp"))


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def send_signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    os.kill(proc.pid, sig)
