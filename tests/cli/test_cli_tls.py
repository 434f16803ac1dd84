"""`cts` over TLS with a bearer token (and mTLS) against a real `ctsd`, right and wrong.

The daemons listen on tcp://127.0.0.1 with a certificate for `localhost` made
by tests/ops/pki.py; the CLI runs as a process, as users run it, and the token
must never show up in anything it prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ops.pki import CertificateAuthority, Pki, issue_pki
from tests.support.daemon_process import DaemonProcess, logged_daemon, remove_tree, short_tempdir

TOKEN = "cli-tok-0123456789abcdef-SHOULD-NEVER-LEAK"
WRONG = "cli-tok-fedcba9876543210-WRONG-ONE-XXXXX"


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    root = short_tempdir()  # short: the Unix-socket daemon lives here too
    try:
        yield issue_pki(root, TOKEN)
    finally:
        remove_tree(root)


def start(pki: Pki, name: str, *args: str) -> DaemonProcess:
    home = pki.root / name
    home.mkdir()
    return logged_daemon(home, list(args)).start()


@pytest.fixture(scope="module")
def tls_daemon(pki: Pki) -> Iterator[DaemonProcess]:
    daemon = start(
        pki, "tls", "--listen", "tcp://127.0.0.1:0",
        "--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key),
        "--auth-token-file", str(pki.token_file),
    )  # fmt: skip
    try:
        yield daemon
    finally:
        daemon.stop(timeout=15)


def cts(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CTS_")}
    return subprocess.run(
        [sys.executable, "-m", "cts.cli.main", *argv],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
        env={**clean, **(env or {})},
        check=False,
    )


def tls_argv(daemon: DaemonProcess, pki: Pki, token_file: Path | None = None) -> list[str]:
    argv = ["--addr", f"tcp://{daemon.address}", "--tls-ca", str(pki.ca_file)]
    return argv + (["--token-file", str(token_file)] if token_file else [])


def assert_no_token(result: subprocess.CompletedProcess[str], *tokens: str) -> None:
    for token in (TOKEN, WRONG, *tokens):
        assert token not in result.stdout and token not in result.stderr


def test_the_right_token_over_tls(tls_daemon: DaemonProcess, pki: Pki) -> None:
    result = cts(*tls_argv(tls_daemon, pki, pki.token_file), "exchanges", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["exchanges"]) == 4
    assert_no_token(result)
    # Options after the command, a certificate name other than the address's host.
    result = cts("connections", "list", *tls_argv(tls_daemon, pki, pki.token_file),
                 "--server-name", "localhost", "-o", "json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout).get("connections", []) == []
    assert_no_token(result)


def test_the_environment_supplies_ca_and_token_file(tls_daemon: DaemonProcess, pki: Pki) -> None:
    env = {
        "CTS_ADDR": f"tcp://{tls_daemon.address}",
        "CTS_TLS_CA": str(pki.ca_file),
        "CTS_TOKEN_FILE": str(pki.token_file),
        "CTS_SERVER_NAME": "localhost",
    }
    result = cts("exchanges", env=env)
    assert result.returncode == 0, result.stderr
    assert "binance" in result.stdout
    assert_no_token(result)


def test_a_wrong_or_missing_token_is_unauthenticated(tls_daemon: DaemonProcess, pki: Pki) -> None:
    wrong = pki.private("wrong-token", WRONG + "\n")
    for token_file in (wrong, None):
        result = cts(*tls_argv(tls_daemon, pki, token_file), "exchanges")
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith("error: UNAUTHENTICATED: "), result.stderr
        assert result.stdout == ""
        assert_no_token(result)
    assert TOKEN not in tls_daemon.logs() and WRONG not in tls_daemon.logs()


def test_loose_token_files_are_refused_or_warned_about(tls_daemon: DaemonProcess, pki: Pki) -> None:
    world = pki.private("world-token", TOKEN, mode=0o644)
    result = cts(*tls_argv(tls_daemon, pki, world), "exchanges")
    assert result.returncode == 2, result.stderr
    assert "others must not read it" in result.stderr and "chmod 600" in result.stderr
    assert_no_token(result)

    group = pki.private("group-token", TOKEN, mode=0o640)
    result = cts(*tls_argv(tls_daemon, pki, group), "exchanges")
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and "group can read it" in result.stderr
    assert_no_token(result)

    odd = pki.private("odd-token", "two words\n")
    result = cts(*tls_argv(tls_daemon, pki, odd), "exchanges")
    assert result.returncode == 2 and "printable ASCII" in result.stderr
    assert "two words" not in result.stderr


def test_the_wrong_channel_does_not_get_through(tls_daemon: DaemonProcess, pki: Pki) -> None:
    # Plaintext to the TLS port, and TLS with a CA that did not sign the daemon's certificate.
    plain = cts("--addr", f"tcp://{tls_daemon.address}", "exchanges")
    assert plain.returncode == 1 and plain.stderr.startswith("error: UNAVAILABLE: ")
    other_ca = pki.root / "other-ca.crt"
    other_ca.write_bytes(CertificateAuthority("other").cert_pem)
    stranger = cts("--addr", f"tcp://{tls_daemon.address}", "--tls-ca", str(other_ca),
                   "--token-file", str(pki.token_file), "exchanges")  # fmt: skip
    assert stranger.returncode == 1 and stranger.stderr.startswith("error: UNAVAILABLE: ")
    assert len(stranger.stderr.splitlines()) == 1, stranger.stderr  # no gRPC handshake log
    assert_no_token(stranger)


def test_usage_errors_never_send_the_token() -> None:
    # No daemon needed: each is refused before a channel exists.
    cases = [
        (["--addr", "tcp://192.0.2.1:7443", "--token-file", "/nonexistent"], "cannot read"),
        (["--addr", "unix:/tmp/x.sock", "--tls-ca", "/nonexistent"], "cannot read"),
        (["--addr", "tcp://127.0.0.1:1", "--tls-cert", "/c"], "both --tls-cert and --tls-key"),
        (["--addr", "tcp://127.0.0.1:1", "--server-name", "x"], "applies to TLS"),
    ]
    for argv, message in cases:
        result = cts(*argv, "exchanges")
        assert result.returncode == 2, result.stderr
        assert message in result.stderr, result.stderr


def test_a_token_needs_tls_beyond_loopback(pki: Pki) -> None:
    result = cts("--addr", "tcp://192.0.2.1:7443", "--token-file", str(pki.token_file),
                 "exchanges")  # fmt: skip
    assert result.returncode == 2
    assert "needs TLS on a non-loopback address" in result.stderr
    result = cts("--addr", "unix:/tmp/x.sock", "--tls", "exchanges")
    assert result.returncode == 2 and "Unix socket has no TLS" in result.stderr


def test_a_token_on_the_unix_socket(pki: Pki) -> None:
    socket = pki.root / "unix" / "ctsd.sock"
    daemon = start(pki, "unix", "--listen", f"unix:{socket}",
                   "--auth-token-file", str(pki.token_file))  # fmt: skip
    try:
        result = cts("--addr", f"unix:{socket}", "--token-file", str(pki.token_file), "exchanges")
        assert result.returncode == 0, result.stderr
        refused = cts("--addr", f"unix:{socket}", "exchanges")
        assert refused.returncode == 1
        assert refused.stderr.startswith("error: UNAUTHENTICATED: "), refused.stderr
        assert_no_token(result)
    finally:
        daemon.stop(timeout=15)


def test_mutual_tls_with_a_client_certificate(pki: Pki) -> None:
    daemon = start(
        pki, "mtls", "--listen", "tcp://127.0.0.1:0",
        "--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key),
        "--tls-client-ca-file", str(pki.ca_file),
    )  # fmt: skip
    try:
        cert, key = pki.ca.client("desk-1").write(pki.root, "desk-1")
        base = ["--addr", f"tcp://{daemon.address}", "--tls-ca", str(pki.ca_file)]
        result = cts(*base, "--tls-cert", str(cert), "--tls-key", str(key), "exchanges")
        assert result.returncode == 0, result.stderr
        without = cts(*base, "exchanges")
        assert without.returncode == 1, without.stderr
        key.chmod(0o644)
        loose = cts(*base, "--tls-cert", str(cert), "--tls-key", str(key), "exchanges")
        assert loose.returncode == 2 and "others must not read it" in loose.stderr
        assert "PRIVATE KEY" not in loose.stderr
    finally:
        daemon.stop(timeout=15)
