"""The Node client (clients/node) against the real daemon over its Unix socket.

Runs the package's own `node --test` suite with CTSD_ADDR pointing at a fresh
daemon, so the round trip is written once, in the language it tests. The
packages come from `make node-deps` (`npm ci --prefix clients/node`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.daemon_process import DaemonProcess

NODE_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "node"
NODE_TEST_TIMEOUT_S = 90


def test_node_client_round_trip(daemon: DaemonProcess) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed; the Node client's tests need Node.js 20 or newer")
    assert (NODE_CLIENT / "node_modules").is_dir(), "run `make node-deps` first"
    result = subprocess.run(
        [node, "--test", "--test-reporter=tap"],
        cwd=NODE_CLIENT,
        env={**os.environ, "CTSD_ADDR": daemon.address},
        capture_output=True,
        text=True,
        timeout=NODE_TEST_TIMEOUT_S,
        check=False,
    )
    output = f"{result.stdout}\n{result.stderr}\n--- ctsd log ---\n{daemon.logs()}"
    assert result.returncode == 0, output
    assert "# SKIP" not in result.stdout, output  # the daemon tests ran, not skipped
    assert "# fail 0" in result.stdout, output
