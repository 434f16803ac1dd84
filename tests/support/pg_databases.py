"""Fresh PostgreSQL databases for tests, fast: a copy of one migrated template each.

Migrating takes a while; `CREATE DATABASE ... TEMPLATE` copies a migrated one
in milliseconds. One template per test process (pytest-xdist workers and runs
sharing `CTS_TEST_POSTGRES_URL` never meet: names carry the process id).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from ctsd.store.database import Database
from ctsd.store.migrations import scripts

_COUNTER = itertools.count()


def database_url(server_url: str, name: str) -> str:
    """`server_url` (any database of the server) pointed at database `name`."""
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


class PgDatabases:
    """Creates (and drops) databases on the server a superuser's `server_url` reaches."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self._template: str | None = None

    async def _admin(self, sql: str) -> None:
        async with await psycopg.AsyncConnection.connect(
                self.server_url, autocommit=True) as conn:
            await conn.execute(sql)

    async def empty(self) -> str:
        """A new empty database's URL (never migrated)."""
        name = f"ctsd_t{os.getpid()}_{next(_COUNTER)}"
        await self._admin(f"CREATE DATABASE {name} TEMPLATE template0 LC_COLLATE 'C' "
                          "LC_CTYPE 'C' ENCODING 'UTF8'")
        return database_url(self.server_url, name)

    async def fresh(self) -> str:
        """A new database at this ctsd's schema, empty of rows."""
        if self._template is None:  # tests of one process run one at a time
            url = await self.empty()
            db = await Database.open(Path("/nonexistent"), url)  # no state dir on PostgreSQL
            await db.close()
            self._template = url
        return await self.copy(self._template)

    async def copy(self, url: str) -> str:
        """A new database with the rows of the one at `url` (nobody may be connected to it)."""
        name = f"ctsd_t{os.getpid()}_{next(_COUNTER)}"
        await self._admin(f"CREATE DATABASE {name} TEMPLATE {urlsplit(url).path.lstrip('/')}")
        return database_url(self.server_url, name)

    async def at_version(self, version: int) -> str:
        """A new database as a ctsd of schema `version` left it (its steps only)."""
        url = await self.empty()
        async with await psycopg.AsyncConnection.connect(url) as conn:
            for script in scripts("postgresql")[:version]:
                for statement in (s.strip() for s in script.split(";")):
                    if statement:
                        await conn.execute(statement)
            await conn.execute("CREATE TABLE ctsd_schema (version BIGINT NOT NULL)")
            await conn.execute("INSERT INTO ctsd_schema (version) VALUES (%s)", (version,))
        return url

    async def drop(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        await self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
