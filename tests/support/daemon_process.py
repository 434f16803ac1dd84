"""The real `ctsd` as a child process: the one harness of the tests and the benchmarks.

It runs on a private state dir with its log in a file. By default it listens
on a Unix socket of its own and is SERVING once `grpc.health.v1` says so on
that socket; with `socket=False` the caller gives `--listen` (a TCP port
with TLS or a token, say) and readiness is the daemon's "serving" log line
(JSON logs), whose address becomes `address`.

Unix socket paths are limited to 107 bytes, so roots are short directories
under /tmp (`short_tempdir`) rather than pytest's deep tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

START_TIMEOUT_S = 60.0
"""A bound for the daemon's start in a test, so that a daemon that never starts fails its
test instead of hanging it: not a speed check (bench/startup_bench.py measures that). On
this 2-core machine with other work on both cores, a start took over 15 s."""
STOP_TIMEOUT_S = 30.0
"""Likewise for a SIGTERM'd daemon's exit: one that hangs is still killed and fails."""
Record = dict[str, Any]


class DaemonProcess:
    def __init__(
        self, root: Path, extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None,
        *, socket: bool = True, log_format: str | None = None, log_level: str | None = None,
        launcher: Sequence[str] = (sys.executable, "-m", "ctsd"), cwd: Path | None = None,
    ) -> None:
        self.root = root
        self.state_dir = root / "state"
        self.socket = root / "ctsd.sock"
        self._own_socket = socket
        self.address = f"unix:{self.socket}" if socket else ""
        self.log_path = root / "ctsd.log"
        self.extra_args = list(extra_args)
        """More flags; may be changed until `start`."""
        self.env = dict(os.environ if env is None else env)
        self._options = [*(["--log-format", log_format] if log_format else []),
                         *(["--log-level", log_level] if log_level else [])]
        self.launcher = list(launcher)
        """The command before the flags (a benchmark may wrap `ctsd.cli.main`)."""
        self._cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self.startup_s = 0.0
        """Seconds from the last `start` until SERVING."""

    def command(self) -> list[str]:
        listen = ["--listen", self.address] if self._own_socket else []
        return [*self.launcher, "--state-dir", str(self.state_dir), *listen, *self._options,
                *self.extra_args]

    def run_refused(self, *extra: str,
                    command: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        """The daemon's command (or `command`) and `extra` run to their end, the output
        captured: a start that must be refused (exit 78) names why on stderr."""
        return subprocess.run([*(command or self.command()), *extra], capture_output=True,
                              text=True, timeout=30, check=False)

    def start(self, wait: bool = True, timeout: float = START_TIMEOUT_S,
              poll_s: float = 0.05) -> DaemonProcess:
        started = time.perf_counter()
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.command(), stdout=self._log_file,
                                     stderr=self._log_file, env=self.env, cwd=self._cwd)
        if wait:
            try:
                self.wait_serving(timeout, poll_s)
            except BaseException:
                self._abandon()
                raise
            self.startup_s = time.perf_counter() - started
        return self

    def wait_serving(self, timeout: float = START_TIMEOUT_S, poll_s: float = 0.05) -> None:
        if not self._own_socket:
            self.address = str(self.wait_line(lambda r: r.get("msg") == "serving",
                                              timeout)["address"])
            return
        self._poll(lambda: self.socket.exists() and self.health() == int(
            health_pb2.HealthCheckResponse.SERVING), timeout, poll_s, "become SERVING")

    def health(self) -> int:
        try:
            with grpc.insecure_channel(self.address) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status)
        except grpc.RpcError:
            return int(health_pb2.HealthCheckResponse.UNKNOWN)

    # --- the log ----------------------------------------------------------------------------

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def records(self) -> list[Record]:
        """The log lines so far, JSON or logfmt, as dicts; other lines are skipped."""
        found = []
        for line in self.logs().splitlines():
            try:
                found.append(json.loads(line) if line.startswith("{") else _logfmt(line))
            except ValueError:
                continue  # a library's plain warning
        return found

    def wait_line(self, match: Callable[[Record], bool],
                  timeout: float = START_TIMEOUT_S) -> Record:
        """The first log record `match` accepts, once it is written."""
        found: list[Record] = []

        def written() -> bool:
            found[:] = [r for r in self.records() if match(r)][:1]
            return bool(found)

        self._poll(written, timeout, 0.05, "write the log line")
        return found[0]

    def wait_records(self, match: Callable[[Record], bool], count: int,
                     timeout: float = 5.0) -> list[Record]:
        """The matching records once there are at least `count` (lines land after the answer),
        or those there are at `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.records() if match(r)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def _poll(self, done: Callable[[], bool], timeout: float, poll_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return
            if self.proc is None or self.proc.poll() is not None:
                code = "stopped" if self.proc is None else f"exited with {self.proc.returncode}"
                raise RuntimeError(f"ctsd {code}:\n{self.logs()}")
            time.sleep(poll_s)
        raise TimeoutError(f"ctsd did not {what} in {timeout}s:\n{self.logs()}")

    # --- signals and stopping -------------------------------------------------------------

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
        if self.proc is None:
            return 0
        try:
            return stop_process(self.proc, sig, timeout)
        finally:  # a daemon too slow to stop fails its test, not the next one's (open log)
            self.proc = None
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def _abandon(self) -> None:
        """After a failed start: no process and no open log left behind, but the exit
        code kept for `stop` (a refusal's code is what a caller checks)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> DaemonProcess:
        self.stop()
        return self.start()

    def run_to_exit(self, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a daemon expected to refuse to start; returns its exit code and stderr."""
        return subprocess.run(self.command(), capture_output=True, text=True, timeout=timeout,
                              env=self.env, cwd=self._cwd, check=False)

    def cleanup(self) -> None:
        """Stop it (never raising) and remove its root."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, STOP_TIMEOUT_S, strict=False)
            self.proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        remove_tree(self.root)


_LOGFMT_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def _logfmt(line: str) -> Record:
    """`ts=... level=info msg="two words" code=OK` as a dict (`ctsd.logs`' logfmt)."""
    pairs = _LOGFMT_PAIR.findall(line)
    if not pairs or pairs[0][0] != "ts":
        raise ValueError(f"not a ctsd logfmt line: {line!r}")
    return {k: json.loads(v) if v.startswith('"') else v for k, v in pairs}


def stop_process(proc: subprocess.Popen[bytes], sig: int, timeout: float,
                 strict: bool = True) -> int:
    """Signal a child and wait for it; one that outlives `timeout` is killed, and then,
    if `strict`, the timeout is raised (a test's failure, a benchmark's shrug)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            if strict:
                raise
    return proc.returncode


def short_tempdir(prefix: str = "cts-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def send_signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    os.kill(proc.pid, sig)


def logged_daemon(root: Path, args: Sequence[str], env: Mapping[str, str] | None = None,
                  ) -> DaemonProcess:
    """A daemon whose `--listen` is among `args` (a TLS or token-guarded port, say), with
    JSON logs: ready by its "serving" line; `env` adds to the environment."""
    return DaemonProcess(root, args, {**os.environ, **(env or {})}, socket=False,
                         log_format="json")


@contextmanager
def configured_daemon(toml: str, files: Mapping[str, str] | None = None,
                      ) -> Iterator[DaemonProcess]:
    """A started daemon reading `toml` as its configuration file; stopped and removed after.

    `files` are written (mode 0600) into its root first; `{root}` in `toml` names it."""
    root = short_tempdir()
    for name, content in (files or {}).items():
        (root / name).write_text(content)
        (root / name).chmod(0o600)
    config = root / "ctsd.toml"
    config.write_text(toml.replace("{root}", str(root)))
    daemon = DaemonProcess(root, ["--config", str(config)])
    try:
        yield daemon.start()
    finally:
        daemon.stop()
        remove_tree(root)
