"""The Node client (clients/node) against real daemons: the Unix socket, and TLS with a token.

Runs the package's own `node --test` suite with CTSD_ADDR pointing at a fresh
daemon on its Unix socket, and CTSD_TLS_ADDR (with the CA, the certificate's
name and the token file) at a second one on tcp://127.0.0.1 with TLS and a
bearer token, so the round trip is written once, in the language it tests.
The certificates come from tests/ops/pki.py; the packages from `make
node-deps` (`npm ci --prefix clients/node`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ops.pki import issue_pki
from tests.support.daemon_process import DaemonProcess, logged_daemon, remove_tree, short_tempdir

NODE_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "node"
NODE_TEST_TIMEOUT_S = 90
TOKEN = "node-tok-0123456789abcdef-SHOULD-NEVER-LEAK"
# The suites that must have run (a skipped or missing one fails the test).
SUITES = ("ConnectionService against ctsd", "ConnectionService over TLS with a bearer token")


@dataclass(frozen=True)
class TlsDaemon:
    daemon: DaemonProcess
    env: dict[str, str]


@pytest.fixture
def tls_daemon() -> Iterator[TlsDaemon]:
    """A daemon on tcp://127.0.0.1 with TLS (a certificate for localhost) and a bearer token."""
    root = short_tempdir()
    daemon = None
    try:
        pki = issue_pki(root, TOKEN)
        home = root / "ctsd"
        home.mkdir()
        daemon = logged_daemon(home, [
            "--listen", "tcp://127.0.0.1:0",
            "--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key),
            "--auth-token-file", str(pki.token_file),
        ]).start()  # fmt: skip
        yield TlsDaemon(
            daemon,
            {
                "CTSD_TLS_ADDR": f"tcp://{daemon.address}",
                "CTSD_TLS_CA": str(pki.ca_file),
                "CTSD_TLS_SERVER_NAME": "localhost",  # the address is 127.0.0.1
                "CTSD_TOKEN_FILE": str(pki.token_file),
            },
        )
    finally:
        if daemon is not None:
            daemon.stop(timeout=15)
        remove_tree(root)


def test_node_client_round_trip(daemon: DaemonProcess, tls_daemon: TlsDaemon) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed; the Node client's tests need Node.js 20 or newer")
    assert (NODE_CLIENT / "node_modules").is_dir(), "run `make node-deps` first"
    result = subprocess.run(
        [node, "--test", "--test-reporter=tap"],
        cwd=NODE_CLIENT,
        env={**os.environ, "CTSD_ADDR": daemon.address, **tls_daemon.env},
        capture_output=True,
        text=True,
        timeout=NODE_TEST_TIMEOUT_S,
        check=False,
    )
    output = (
        f"{result.stdout}\n{result.stderr}\n--- ctsd log ---\n{daemon.logs()}"
        f"\n--- ctsd (TLS) log ---\n{tls_daemon.daemon.logs()}"
    )
    assert result.returncode == 0, output
    assert "# SKIP" not in result.stdout, output  # the daemon tests ran, not skipped
    assert "# fail 0" in result.stdout, output
    for suite in SUITES:
        assert re.search(rf"^ok \d+ - {re.escape(suite)}$", result.stdout, re.MULTILINE), output
    # Both wrong-token calls were refused by the daemon, and its log never shows the token.
    refusals = tls_daemon.daemon.wait_records(lambda r: r.get("msg") == "calls refused", 2)
    assert sorted(r["reason"] for r in refusals) == ["invalid_token", "missing_token"], output
    assert TOKEN not in tls_daemon.daemon.logs()
    assert TOKEN not in result.stdout and TOKEN not in result.stderr
