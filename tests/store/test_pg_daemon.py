"""A real `ctsd` on PostgreSQL (`[store] url`): it serves and keeps what it acknowledged,
secrets sealed; it refuses to start on an unreachable server or a newer schema (exit 78,
one line, no password shown); a server that goes away later turns writes UNAVAILABLE and
health NOT_SERVING, and both recover when it is back, nothing acknowledged lost."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2

from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from ctsd.store.migrations import SCHEMA_VERSION
from tests.support.daemon_process import DaemonProcess, remove_tree, short_tempdir
from tests.support.pg_databases import PgDatabases, database_url
from tests.support.rpc import API_KEY, SECRET, binance_spot

pytestmark = pytest.mark.long

EX_CONFIG = 78
CALL_TIMEOUT_S = 20.0
RECOVERY_S = 20.0
SERVING = int(health_pb2.HealthCheckResponse.SERVING)
NOT_SERVING = int(health_pb2.HealthCheckResponse.NOT_SERVING)
PASSWORD = "pg-pa55-NEVER-LEAK-9c2"


@pytest.fixture
def store(pg_databases: PgDatabases) -> Iterator[str]:
    url = asyncio.run(pg_databases.fresh())
    try:
        yield url
    finally:
        asyncio.run(pg_databases.drop(url))


def _daemon(url: str) -> DaemonProcess:
    daemon = DaemonProcess(short_tempdir())
    config = daemon.root / "ctsd.toml"
    config.write_text(f'[store]\nurl = "{url}"\n')
    daemon.extra_args += ["--config", str(config)]
    return daemon


@pytest.fixture
def daemon_on(store: str) -> Iterator[Callable[[], DaemonProcess]]:
    made: list[DaemonProcess] = []

    def start() -> DaemonProcess:
        made.append(_daemon(_with_password(store)))
        return made[-1]

    try:
        yield start
    finally:
        for daemon in made:
            if daemon.proc is not None:
                daemon.stop()
            remove_tree(daemon.root)


def _with_password(url: str) -> str:
    """`url` carrying a password (the test server trusts its clients and ignores it): no
    log line, error or answer may show it."""
    parts = urlsplit(url)
    query = f"{parts.query}&password={PASSWORD}" if parts.query else f"password={PASSWORD}"
    return urlunsplit(parts._replace(query=query))


def _create(daemon: DaemonProcess, cid: str) -> grpc.StatusCode:
    with grpc.insecure_channel(daemon.address) as channel:
        try:
            sgrpc.ConnectionServiceStub(channel).CreateConnection(spb.CreateConnectionRequest(
                connection_id=cid, connection=binance_spot(f"name {cid}")),
                timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            return code
    return grpc.StatusCode.OK


def _ids(daemon: DaemonProcess) -> set[str]:
    with grpc.insecure_channel(daemon.address) as channel:
        page = sgrpc.ConnectionServiceStub(channel).ListConnections(
            spb.ListConnectionsRequest(page_size=1000), timeout=CALL_TIMEOUT_S)
    return {c.name.removeprefix("connections/") for c in page.connections}


def _until(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + RECOVERY_S
    while not done():
        assert time.monotonic() < deadline, f"not {what} within {RECOVERY_S:g}s"
        time.sleep(0.05)


def test_a_daemon_on_postgresql_keeps_what_it_acknowledged_with_secrets_sealed(
        daemon_on: Callable[[], DaemonProcess], store: str) -> None:
    daemon = daemon_on().start()
    assert _create(daemon, "a") == grpc.StatusCode.OK
    daemon.stop()
    daemon.start()
    assert _ids(daemon) == {"a"}
    with psycopg.connect(store) as conn:
        rows = conn.execute("SELECT c::text FROM connections c UNION ALL "
                            "SELECT s::text FROM sealed_secrets s").fetchall()
    dumped = " ".join(str(r[0]) for r in rows)
    assert len(rows) == 3 and "binance" in dumped  # one connection, key and secret sealed
    for plain in (API_KEY, SECRET):
        assert plain not in dumped and plain.encode().hex() not in dumped


def test_an_unreachable_server_at_start_exits_78_with_one_line() -> None:
    daemon = _daemon("postgresql://ctsd:pa55-NEVER-LEAK@127.0.0.1:1/ctsd?connect_timeout=2")
    try:
        result = daemon.run_to_exit()
    finally:
        daemon.cleanup()
    assert result.returncode == EX_CONFIG
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "cannot reach database postgresql://ctsd:***@127.0.0.1:1/ctsd" in lines[0]
    assert "NEVER-LEAK" not in result.stderr + daemon.logs()


def test_a_database_a_newer_ctsd_made_is_refused_untouched(
        daemon_on: Callable[[], DaemonProcess], store: str) -> None:
    with psycopg.connect(store, autocommit=True) as conn:
        conn.execute("UPDATE ctsd_schema SET version = %s", (SCHEMA_VERSION + 1,))
    daemon = daemon_on()
    result = daemon.run_to_exit()
    assert result.returncode == EX_CONFIG
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"schema version {SCHEMA_VERSION + 1} is newer than this ctsd's " \
           f"({SCHEMA_VERSION})" in lines[0]
    with psycopg.connect(store) as conn:
        assert conn.execute("SELECT version FROM ctsd_schema").fetchone() == (
            SCHEMA_VERSION + 1,)


def test_a_server_gone_later_is_unavailable_then_recovers_with_nothing_lost(
        daemon_on: Callable[[], DaemonProcess], store: str) -> None:
    daemon = daemon_on().start()
    assert _create(daemon, "before") == grpc.StatusCode.OK
    name = urlsplit(store).path.lstrip("/")
    with psycopg.connect(database_url(store, "postgres"), autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s", (name,))
        try:
            assert _create(daemon, "during") == grpc.StatusCode.UNAVAILABLE
            _until(lambda: daemon.health() == NOT_SERVING, "NOT_SERVING")
            assert _ids(daemon) == {"before"}  # reads come from memory meanwhile
        finally:
            admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
    _until(lambda: _create(daemon, "after") == grpc.StatusCode.OK, "writing again")
    _until(lambda: daemon.health() == SERVING, "SERVING again")
    daemon.stop()
    daemon.start()
    assert _ids(daemon) == {"before", "after"}
    assert "unreachable" in daemon.logs()  # the outage was logged, the password never
    assert PASSWORD not in daemon.logs()


def test_rotate_key_reseals_the_postgresql_store(
        daemon_on: Callable[[], DaemonProcess], store: str) -> None:
    """`ctsd rotate-key --config` works on the database of `[store] url`; the daemon then
    opens every secret under the new key (a connection test needs them unsealed)."""
    daemon = daemon_on().start()
    assert _create(daemon, "a") == grpc.StatusCode.OK
    daemon.stop()
    with psycopg.connect(store) as conn:
        before = conn.execute("SELECT key_id, blob FROM sealed_secrets ORDER BY field").fetchall()
    done = subprocess.run(
        [sys.executable, "-m", "ctsd", "rotate-key", "--state-dir", str(daemon.state_dir),
         "--config", str(daemon.root / "ctsd.toml")],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "re-sealed 2 secrets" in done.stdout
    with psycopg.connect(store) as conn:
        after = conn.execute("SELECT key_id, blob FROM sealed_secrets ORDER BY field").fetchall()
    assert len(after) == 2
    assert all(a[0] != b[0] and a[1] != b[1] for a, b in zip(after, before, strict=True))
    daemon.start()  # refuses with exit 78 unless every secret is sealed under its key
    assert _ids(daemon) == {"a"}


def test_an_older_shared_database_is_refused_until_ctsd_migrate_upgrades_it(
        pg_databases: PgDatabases) -> None:
    """Daemons of the older version may share it: a newer daemon never changes its schema
    under them on its own. `ctsd migrate` does, once, keeping every row."""
    url = asyncio.run(pg_databases.at_version(SCHEMA_VERSION - 1))
    daemon = _daemon(url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO connections (id, display_name, exchange, api_type, testnet, "
                "margin_mode, position_mode, market_data_method, enabled, predefined, "
                "created_us, updated_us, revision) VALUES ('old', 'old', 'binance', 'spot', 0, "
                "'cross', 'one_way', 'rest', 1, 0, 1, 1, 1)")
        refused = daemon.run_to_exit()
        assert refused.returncode == EX_CONFIG
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and f"schema version {SCHEMA_VERSION - 1} is older than this " \
            f"ctsd's ({SCHEMA_VERSION})" in lines[0] and "ctsd migrate" in lines[0], lines
        runs = [subprocess.run(
            [sys.executable, "-m", "ctsd", "migrate", "--state-dir", str(daemon.state_dir),
             "--config", str(daemon.root / "ctsd.toml")],
            capture_output=True, text=True, timeout=60, check=False) for _ in range(2)]
        assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
        assert f"schema version {SCHEMA_VERSION - 1} -> {SCHEMA_VERSION}" in runs[0].stdout
        assert "nothing to do" in runs[1].stdout
        daemon.start()
        assert _ids(daemon) == {"old"}
    finally:
        daemon.cleanup()
        asyncio.run(pg_databases.drop(url))
