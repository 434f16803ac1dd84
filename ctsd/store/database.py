"""One SQLite file, opened twice: a writer behind a lock and a read-only reader.

aiosqlite runs each connection on its own thread. Sharing one connection
between coroutines would let a read run inside another coroutine's open
write transaction and see rows that may yet be rolled back; in WAL mode a
separate reader sees only committed data and never waits for the writer.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from ctsd.errors import ConfigurationError, ResourceExhausted, Unavailable
from ctsd.store.migrations import MIGRATIONS, SCHEMA_VERSION

DB_NAME = "ctsd.db"
BUSY_TIMEOUT_MS = 5000

Row = tuple[Any, ...]


@contextmanager
def translated_errors() -> Any:
    """SQLite failures become domain errors here, and nowhere else."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_FULL:
            raise ResourceExhausted("the database disk is full") from exc
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise Unavailable("the database is locked by another process") from exc
        if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR):
            raise Unavailable(f"the database cannot be written: {exc}") from exc
        raise
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_CORRUPT:
            raise Unavailable("the database file is corrupt") from exc
        raise


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does, whatever the umask."""
    if not path.exists():
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


class Database:
    """Owns both connections; `close()` is its end of life."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self.path = path
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, state_dir: Path) -> Database:
        path = state_dir / DB_NAME
        try:
            _create_private(path)
        except OSError as exc:
            raise ConfigurationError(f"cannot create database {path}: {exc}") from exc
        writer = await aiosqlite.connect(path, isolation_level=None)
        reader: aiosqlite.Connection | None = None
        try:
            with translated_errors():
                await writer.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                await writer.execute("PRAGMA journal_mode = WAL")
                await writer.execute("PRAGMA synchronous = FULL")
                await writer.execute("PRAGMA foreign_keys = ON")
                await _migrate(writer)
                reader = await aiosqlite.connect(path, isolation_level=None)
                await reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                await reader.execute("PRAGMA query_only = ON")
        except BaseException as exc:
            # Each aiosqlite connection owns a thread: leaving one open keeps the process alive.
            await writer.close()
            if reader is not None:
                await reader.close()
            if isinstance(exc, sqlite3.Error | ResourceExhausted | Unavailable):
                raise ConfigurationError(f"cannot open database {path}: {exc}") from exc
            raise
        return cls(path, writer, reader)

    async def close(self) -> None:
        async with self._write_lock:
            await self._reader.close()
            await self._writer.close()

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        with translated_errors():
            rows = await self._reader.execute_fetchall(sql, tuple(params))
        return [tuple(row) for row in rows]

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One write transaction: everything inside commits together or not at all."""
        async with self._write_lock:
            with translated_errors():
                await self._writer.execute("BEGIN IMMEDIATE")
                try:
                    yield Transaction(self._writer)
                except BaseException:
                    await self._writer.execute("ROLLBACK")
                    raise
                await self._writer.execute("COMMIT")

    async def integrity_check(self) -> str:
        row = await self.fetch_one("PRAGMA quick_check")
        return str(row[0]) if row else "no answer"

    async def schema_version(self) -> int:
        row = await self.fetch_one("PRAGMA user_version")
        return int(row[0]) if row else 0


class Transaction:
    """Statements on the writer inside an open transaction."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Runs a statement; returns the number of rows it changed."""
        cursor = await self._conn.execute(sql, tuple(params))
        count = cursor.rowcount
        await cursor.close()
        return count

    async def insert(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Runs an INSERT; returns the new row's rowid."""
        cursor = await self._conn.execute(sql, tuple(params))
        rowid = cursor.lastrowid
        await cursor.close()
        assert rowid is not None
        return rowid

    async def executemany(self, sql: str, params: Iterable[Iterable[Any]]) -> None:
        await self._conn.executemany(sql, [tuple(p) for p in params])

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        rows = await self._conn.execute_fetchall(sql, tuple(params))
        return [tuple(row) for row in rows]

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None


async def _migrate(conn: aiosqlite.Connection) -> None:
    rows = list(await conn.execute_fetchall("PRAGMA user_version"))
    version = int(rows[0][0])
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"database schema version {version} is newer than this ctsd ({SCHEMA_VERSION}); "
            "upgrade ctsd"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        # executescript would COMMIT on its own; run the statements in our transaction.
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(script):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {number}")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
