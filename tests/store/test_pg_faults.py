"""PostgreSQL answers that are not the store's fault and ones that are: a lock held too
long by another session is UNAVAILABLE (busy) and leaves readiness alone; a server that
takes no writes (a read-only standby after a failover) is a write fault (readiness
NOT_SERVING) until it takes writes again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import pytest_asyncio

from ctsd.errors import Unavailable
from ctsd.store.database import Database
from ctsd.store.database_pg import POOL_MAX_SIZE
from tests.support.pg_databases import PgDatabases, database_url

ROW = ("INSERT INTO engines (connection_id, engine_id, config, desired, cycle, updated_us) "
       "VALUES ('a', 'e', '{}', 'stopped', 0, 0)")


@pytest_asyncio.fixture
async def pg(tmp_path: Path, pg_databases: PgDatabases) -> AsyncIterator[tuple[Database, str]]:
    url = await pg_databases.fresh()
    db = await Database.open(tmp_path, url)
    try:
        await db.write(lambda tx: tx.execute(ROW))
        yield db, url
    finally:
        await db.close()
        await pg_databases.drop(url)


def _admin(url: str, *statements: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(database_url(url, "postgres"), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.replace("{db}", name))


@pytest.mark.asyncio
async def test_a_lock_held_too_long_elsewhere_is_busy_not_an_outage(
        pg: tuple[Database, str]) -> None:
    db, url = pg
    with psycopg.connect(url) as holder:  # a transaction that keeps the row locked
        holder.execute("SELECT 1 FROM engines WHERE connection_id = 'a' FOR UPDATE")
        with pytest.raises(Unavailable, match="busy"):
            await db.write(lambda tx: tx.execute("UPDATE engines SET cycle = 1"))
        assert db.write_fault is None
    assert await db.write(lambda tx: tx.execute("UPDATE engines SET cycle = 2")) == 1


@pytest.mark.asyncio
async def test_a_server_that_takes_no_writes_is_a_write_fault_until_it_does(
        pg: tuple[Database, str]) -> None:
    db, url = pg
    terminate = ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE datname = '{db}' AND pid != pg_backend_pid()")
    _admin(url, "ALTER DATABASE {db} SET default_transaction_read_only = on", terminate)
    with pytest.raises(Unavailable):
        await db.write(lambda tx: tx.execute("UPDATE engines SET cycle = 1"))
    assert db.write_fault is not None and "ReadOnly" in db.write_fault
    _admin(url, "ALTER DATABASE {db} RESET default_transaction_read_only", terminate)
    await db.probe_write()
    assert db.write_fault is None


@pytest.mark.asyncio
async def test_reads_cancelled_mid_query_leave_the_pool_usable(pg: tuple[Database, str]) -> None:
    """More cancelled reads than the pool has connections: none is lost or left busy."""
    db, _ = pg
    for _ in range(POOL_MAX_SIZE + 2):
        slow = asyncio.ensure_future(db.fetch_all("SELECT pg_sleep(5)"))
        await asyncio.sleep(0.05)  # the query is on the server (it takes 5 s)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        started = time.monotonic()
        assert await db.fetch_all("SELECT connection_id FROM engines") == [("a",)]
        assert time.monotonic() - started < 2.5, "a read waited for a cancelled one"
