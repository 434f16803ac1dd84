"""The real `ctsd` as a child process, read through its JSON log lines.

Unlike `tests.support.daemon_process`, readiness is the "serving" log line,
not a health call, so it works on TLS and token-guarded TCP ports too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.daemon_process import stop_process

START_TIMEOUT_S = 15.0


class OpsDaemon:
    def __init__(self, root: Path, args: list[str], env: dict[str, str] | None = None) -> None:
        self.root = root
        self.log_path = root / "ctsd.log"
        self.command = [
            sys.executable, "-m", "ctsd", "--state-dir", str(root / "state"),
            "--log-format", "json", *args,
        ]  # fmt: skip
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.address = ""

    def start(self, wait: bool = True) -> OpsDaemon:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=log, env=self.env)
        if wait:
            self.address = str(self.wait_line(lambda r: r.get("msg") == "serving")["address"])
        return self

    def records(self) -> list[dict[str, Any]]:
        found = []
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        for line in text.splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue  # a library's plain warning
        return found

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_line(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = START_TIMEOUT_S
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.records():
                if match(record):
                    return record
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"ctsd exited with {self.proc.returncode}:\n{self.logs()}")
            time.sleep(0.05)
        raise TimeoutError(f"no matching log line in {timeout}s:\n{self.logs()}")

    def wait_records(
        self, match: Callable[[dict[str, Any]], bool], count: int, timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """The matching records once there are at least `count` (lines land after the answer)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.records() if match(r)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc is None:
            return 0
        code = stop_process(self.proc, sig, timeout)
        self.proc = None
        return code

    def run_to_exit(self, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a daemon expected to refuse to start; returns its exit code and stderr."""
        return subprocess.run(
            self.command, capture_output=True, text=True, timeout=timeout, env=self.env,
            check=False,
        )  # fmt: skip
