"""Fixtures for operating the daemon: a short temp root, test certificates."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.ops.pki import Pki, issue_pki
from tests.support.daemon_process import DaemonProcess, logged_daemon, remove_tree, short_tempdir

TOKEN = "tok-0123456789abcdef-SHOULD-NEVER-LEAK"


@pytest.fixture
def root() -> Iterator[Path]:
    path = short_tempdir()
    try:
        yield path
    finally:
        remove_tree(path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return issue_pki(tmp_path_factory.mktemp("pki"), TOKEN)


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
