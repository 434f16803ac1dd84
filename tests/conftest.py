"""Fixtures every test package may use: a real daemon process and a channel to it, and a
fresh database opened (and migrated) as the daemon opens it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from ctsd.store.database import Database
from tests.support.daemon_process import DaemonProcess, remove_tree, short_tempdir


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    """A fresh `ctsd` on a private state dir and Unix socket, stopped after the test."""
    root = short_tempdir()
    proc = DaemonProcess(root)
    try:
        yield proc.start()
    finally:
        proc.stop()
        remove_tree(root)


@pytest.fixture
def channel(daemon: DaemonProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(daemon.address) as ch:
        yield ch


@pytest_asyncio.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path)
    try:
        yield database
    finally:
        await database.close()
