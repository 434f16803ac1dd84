"""Fixtures for operating the daemon: a short temp root, test certificates."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ops.pki import CertificateAuthority
from tests.support.daemon_process import DaemonProcess, logged_daemon, remove_tree, short_tempdir

TOKEN = "tok-0123456789abcdef-SHOULD-NEVER-LEAK"


@pytest.fixture
def root() -> Iterator[Path]:
    path = short_tempdir()
    try:
        yield path
    finally:
        remove_tree(path)


@dataclass(frozen=True)
class Pki:
    ca: CertificateAuthority
    ca_file: Path
    server_cert: Path
    server_key: Path
    token_file: Path

    def client(self, name: str) -> tuple[bytes, bytes]:
        issued = self.ca.client(name)
        return issued.key_pem, issued.cert_pem


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority()
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    cert, key = ca.server().write(directory, "server")
    token_file = directory / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    return Pki(ca, ca_file, cert, key, token_file)


MakeDaemon = Callable[..., DaemonProcess]


@pytest.fixture
def make_daemon(root: Path) -> Iterator[MakeDaemon]:
    """`make_daemon(args, env=None, start=True)`: a daemon stopped after the test."""
    made: list[DaemonProcess] = []

    def make(args: list[str], env: dict[str, str] | None = None,
             start: bool = True) -> DaemonProcess:
        home = root / f"d{len(made)}"
        home.mkdir()
        daemon = logged_daemon(home, args, env)
        made.append(daemon)
        return daemon.start() if start else daemon

    try:
        yield make
    finally:
        for daemon in made:
            daemon.stop(timeout=15)
