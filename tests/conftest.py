"""Fixtures every test package may use: a real daemon process (fresh, or a module's one
emptied between tests) and a channel to it, a fresh database opened (and migrated) as the
daemon opens it, and the fleet's servers (PostgreSQL, Redis), started once per session on
first use."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings

from cts.v1.connection_service_pb2 import DeleteConnectionRequest, ListConnectionsRequest
from cts.v1.connection_service_pb2_grpc import ConnectionServiceStub
from ctsd.store.database import Database
from tests.robustness.tally import REPORTED
from tests.support import servers
from tests.support.daemon_process import DaemonProcess, remove_tree, short_tempdir
from tests.support.pg_databases import PgDatabases

# Hypothesis judges by the wall clock whether an example ran too long (`deadline`) or
# its data took too long to draw (`too_slow`): on a machine whose cores are busy that
# says nothing about the code, so no property test fails for it. Each test's own
# `@settings` still sets its number of examples.
settings.register_profile("cts", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("cts")


def _running_daemon() -> Iterator[DaemonProcess]:
    root = short_tempdir()
    proc = DaemonProcess(root)
    try:
        yield proc.start()
    finally:
        proc.stop()
        remove_tree(root)


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    """A fresh `ctsd` on a private state dir and Unix socket, stopped after the test."""
    yield from _running_daemon()


@pytest.fixture(scope="module")
def module_daemon() -> Iterator[DaemonProcess]:
    """One `ctsd` shared by a module's tests through `empty_daemon`."""
    yield from _running_daemon()


@pytest.fixture
def empty_daemon(module_daemon: DaemonProcess) -> Iterator[DaemonProcess]:
    """The module's daemon in the state a fresh one starts in, without paying a start-up
    (about a second of CPU) per test: it holds no connection when the test begins, which
    is checked, and every connection the test made is deleted through the API after it
    (with them, their secrets and test results: the store cascades). For tests whose
    state is connections only; a test that restarts or stops the daemon, reads its log or
    makes engines uses `daemon`."""
    with grpc.insecure_channel(module_daemon.address) as channel:
        stub = ConnectionServiceStub(channel)
        left = _connection_names(stub)
        assert not left, f"an earlier test's connections were not deleted: {left}"
        try:
            yield module_daemon
        finally:
            for name in _connection_names(stub):
                stub.DeleteConnection(DeleteConnectionRequest(name=name, force=True))


def _connection_names(stub: ConnectionServiceStub) -> list[str]:
    names: list[str] = []
    token = ""
    while True:
        page = stub.ListConnections(ListConnectionsRequest(page_size=100, page_token=token))
        names += [c.name for c in page.connections]
        token = page.next_page_token
        if not token:
            return names


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


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL superuser's URL: a private cluster, or `CTS_TEST_POSTGRES_URL`."""
    with servers.postgres_url() as url:
        yield url


@pytest.fixture(scope="session")
def pg_databases(postgres_url: str) -> Iterator[PgDatabases]:
    """Fresh databases on the session's PostgreSQL, each a copy of a migrated template."""
    yield PgDatabases(postgres_url)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL: a private server, or `CTS_TEST_REDIS_URL`. Tests share it: each
    keeps to keys of its own (a unique prefix) and never flushes it."""
    with servers.redis_url() as url:
        yield url


@pytest.fixture
def private_redis() -> Iterator[servers.PrivateRedis]:
    """A Redis of the test's own, which it may kill and start again (an outage)."""
    try:
        server = servers.PrivateRedis()
    except servers.ServerMissing as exc:
        pytest.skip(f"needs redis-server to kill and restart: {exc}")
    try:
        yield server.start()
    finally:
        server.stop()


BACKENDS = ("sqlite", "postgresql")


@pytest_asyncio.fixture
async def store_url(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    """None (the SQLite file) or a fresh PostgreSQL database's URL, dropped afterwards: a
    test that asks for it runs once per backend (`Database.open(state_dir, store_url)`)."""
    if request.param == "sqlite":
        yield None
        return
    databases: PgDatabases = request.getfixturevalue("pg_databases")
    url = await databases.fresh()
    try:
        yield url
    finally:
        await databases.drop(url)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_url" in metafunc.fixturenames:
        metafunc.parametrize("store_url", BACKENDS, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, the modules marked `long` dealt round the workers first.

    xdist's `load` scheduler hands each worker a first chunk of consecutive items (a
    quarter of its share) and refills them in collection order, so the long modules,
    which sit together under tests/robustness, ran one after another on one worker at
    the end: its minute-and-a-half tail set the suite's wall time. Here module k of the
    long ones goes to the head of worker k mod n's first chunk, and the short tests fill
    in after. Every worker computes the same order; without xdist nothing moves."""
    workers = int(getattr(config, "workerinput", {}).get("workercount", 0))
    if workers < 2:
        return
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        if item.get_closest_marker("long") is not None:
            modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    shares: list[list[pytest.Item]] = [[] for _ in range(workers)]
    for k, module in enumerate(modules.values()):
        shares[k % workers] += module
    rest = [item for item in items if item.get_closest_marker("long") is None]
    chunk = max(len(items) // workers // 4, 2)  # xdist LoadScheduling's first chunk
    order: list[pytest.Item] = []
    for share in shares:
        fill = max(chunk - len(share), 0)
        order += share + rest[:fill]
        rest = rest[fill:]
    items[:] = order + rest


# Every robustness test's tried/survived/lost row (tests/robustness/tally.py), printed at
# the end of the session. Under pytest-xdist the rows are reported in the workers; each
# hands its rows to the controller when it finishes (`workeroutput`), so the table is the
# same with or without `-n`. These hooks live here because the controller collects
# nothing and so never loads a conftest below this one.
_WORKER_KEY = "robustness_rows"


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller prints
        workeroutput[_WORKER_KEY] = list(REPORTED)


@pytest.hookimpl(optionalhook=True)  # xdist's hook: absent under `-p no:xdist`
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller hook: a worker finished; keep its rows."""
    REPORTED.extend(getattr(node, "workeroutput", {}).get(_WORKER_KEY, ()))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTED:
        terminalreporter.section("robustness: tried / survived / lost")
        for row in REPORTED:
            terminalreporter.write_line(row)
