"""The store's tests run on both backends: `db` is a fresh SQLite file, then a fresh
PostgreSQL database (a copy of a migrated template on the session's server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from ctsd.store.database import Database
from tests.support.pg_databases import PgDatabases

BACKENDS = ("sqlite", "postgresql")


@pytest_asyncio.fixture
async def store_url(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    """None (the SQLite file) or a fresh PostgreSQL database's URL, dropped afterwards."""
    if request.param == "sqlite":
        yield None
        return
    databases: PgDatabases = request.getfixturevalue("pg_databases")
    url = await databases.fresh()
    try:
        yield url
    finally:
        await databases.drop(url)


@pytest_asyncio.fixture
async def db(tmp_path: Path, store_url: str | None) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path, store_url)
    try:
        yield database
    finally:
        await database.close()


@pytest_asyncio.fixture
async def other(tmp_path: Path, store_url: str | None, db: Database) -> AsyncIterator[Database]:
    """A second `Database` on `db`'s store: another daemon of the fleet."""
    second = await Database.open(tmp_path, store_url)
    try:
        yield second
    finally:
        await second.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_url" in metafunc.fixturenames:
        metafunc.parametrize("store_url", BACKENDS, indirect=True)
