"""The SQLite file backend: one writing connection on the writer thread, a read-only reader.

Reads go to a second, read-only connection (aiosqlite, its own thread): in WAL
mode it sees only committed rows and never waits for the writer. Notifications
(`tx.notify`) reach the listeners of every `Database` open on the same file in
this process, after COMMIT (`ctsd.store.database_feed.FileFeeds`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from ctsd.errors import ConfigurationError, ResourceExhausted, Unavailable
from ctsd.store.database_feed import Feed, FileFeeds
from ctsd.store.database_tx import Note, Outcome, Transaction, WriterBackend, one, roll_back
from ctsd.store.migrations import SCHEMA_VERSION, check_schema, refuse_newer, scripts
from ctsd.store.quarantine import Row, text_or_damaged

DB_NAME = "ctsd.db"
BUSY_TIMEOUT_MS = 5000

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("ctsd.store")

_UNWRITABLE = frozenset({
    sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_FULL, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB,
})
"""Errors that say the file cannot take writes, as opposed to a busy lock or a bad row."""


@contextmanager
def translated_errors() -> Iterator[None]:
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
        if getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_CORRUPT,
                                                       sqlite3.SQLITE_NOTADB):
            raise Unavailable("the database file is corrupt") from exc
        raise
    except UnicodeDecodeError as exc:
        # SQLite's message quoted bytes of the damaged file (a garbled schema entry) that
        # are not UTF-8: Python fails decoding it before any DatabaseError is raised.
        raise Unavailable("the database file is corrupt (undecodable schema text)") from exc


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does, whatever the umask."""
    if not path.exists():
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


class SqliteTransaction(Transaction):
    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__()
        self._conn = conn

    def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        return self._conn.execute(sql, tuple(params)).rowcount

    def insert(self, sql: str, params: Iterable[Any] = (), key: str = "seq") -> int:
        rowid = self._conn.execute(sql, tuple(params)).lastrowid  # `key` is the rowid alias
        assert rowid is not None
        return rowid

    def executemany(self, sql: str, params: Iterable[Iterable[Any]]) -> None:
        self._conn.executemany(sql, [tuple(p) for p in params])

    def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        return [tuple(row) for row in self._conn.execute(sql, tuple(params)).fetchall()]

    def clock_us(self) -> int:
        row = self._conn.execute(
            "SELECT CAST(round((julianday('now') - 2440587.5) * 86400000000) AS INTEGER)"
        ).fetchone()
        return int(row[0])


class _Writer:
    """The one writing connection, used only from its own thread (the executor's)."""

    def __init__(self, path: Path, synchronous: str = "full") -> None:
        self._path = path
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be full or normal, not {synchronous!r}")
        self._synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self.fault: str | None = None

    def connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.text_factory = text_or_damaged
            try:
                for pragma in (f"busy_timeout = {BUSY_TIMEOUT_MS}", "journal_mode = WAL",
                               f"synchronous = {self._synchronous.upper()}",
                               "foreign_keys = ON"):
                    conn.execute(f"PRAGMA {pragma}")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def run(self, unit: Callable[[Transaction], T]) -> tuple[T, list[Note]]:
        def body(conn: sqlite3.Connection) -> tuple[T, list[Note]]:
            tx = SqliteTransaction(conn)
            return unit(tx), tx.notes

        done = self._transaction(body)
        self.fault = None
        return done

    def run_many(self, units: list[Callable[[Transaction], Any]]) -> list[Outcome]:
        """Group commit: the units in one transaction, each in its own savepoint, so a
        burst of writes (a thousand engines' orders on one market event) costs one
        COMMIT — one fsync — and one trip to this thread, not one each. A unit that
        raises is rolled back to its savepoint alone; the others commit."""
        if len(units) == 1:
            return [one(self.run, units[0])]
        outcomes = self._transaction(lambda conn: [self._savepoint(conn, u) for u in units])
        self.fault = None
        for ok, value, _notes in outcomes:
            if not ok and isinstance(value, sqlite3.Error):
                self._note_fault(value)
        return outcomes

    def _transaction(self, body: Callable[[sqlite3.Connection], R]) -> R:
        """`body` between BEGIN IMMEDIATE and COMMIT; anything it raises rolls it back."""
        try:
            conn = self.connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body(conn)
                conn.execute("COMMIT")
            except BaseException:
                self._end(conn)
                raise
        except sqlite3.Error as exc:
            self._note_fault(exc)
            raise
        return result

    @staticmethod
    def _savepoint(conn: sqlite3.Connection, unit: Callable[[Transaction], Any]) -> Outcome:
        conn.execute("SAVEPOINT unit")
        tx = SqliteTransaction(conn)
        try:
            result = unit(tx)
        except Exception as exc:
            conn.execute("ROLLBACK TO unit")  # fails only when the batch must end
            conn.execute("RELEASE unit")
            return False, exc, []
        conn.execute("RELEASE unit")
        return True, result, tx.notes

    def _note_fault(self, exc: sqlite3.Error) -> None:
        if getattr(exc, "sqlite_errorcode", None) in _UNWRITABLE:
            self.fault = f"{type(exc).__name__}: {exc}"

    def _end(self, conn: sqlite3.Connection) -> None:
        """Leaves no transaction open: rolls back, or starts over on a new connection."""
        if conn.in_transaction:  # else SQLite already rolled back (some I/O errors do)
            roll_back(conn.execute, sqlite3.Error, self.close)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class SqliteBackend(WriterBackend):
    """`ctsd.store.database_tx.Backend` on the file `state_dir/ctsd.db`."""

    _writer: _Writer

    def __init__(self, path: Path, writer: _Writer, reader: aiosqlite.Connection,
                 feed: Feed) -> None:
        self.path = path
        self.where = str(path)
        self._writer = writer
        self._reader = reader
        self._feed = feed
        self._key = str(path.resolve())
        FileFeeds.join(self._key, feed)
        self.found_version = SCHEMA_VERSION

    @classmethod
    async def open(cls, state_dir: Path, executor: ThreadPoolExecutor,
                   feed: Feed, synchronous: str = "full") -> SqliteBackend:
        path = state_dir / DB_NAME
        try:
            _create_private(path)
        except OSError as exc:
            raise ConfigurationError(f"cannot create database {path}: {exc}") from exc
        writer = _Writer(path, synchronous)
        loop = asyncio.get_running_loop()
        reader: aiosqlite.Connection | None = None
        connecting: asyncio.Future[aiosqlite.Connection] | None = None
        try:
            with translated_errors():
                found = await loop.run_in_executor(executor, _migrate, writer)
                connecting = asyncio.ensure_future(_connect_reader(path))
                reader = await asyncio.shield(connecting)
                reader.text_factory = text_or_damaged  # a damaged row is quarantined
                await reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                await reader.execute("PRAGMA query_only = ON")
        except BaseException as exc:
            # Each connection owns a thread: leaving one open keeps the process alive,
            # so the reader is closed first and whatever cancels the writer's closing.
            try:
                if reader is None and connecting is not None:
                    reader = await _settled(connecting)
                if reader is not None:
                    await _close_reader(reader)
            finally:  # shielded: a writer call cancelled before it starts never runs
                await asyncio.shield(loop.run_in_executor(executor, writer.close))
            if isinstance(exc, sqlite3.Error | ResourceExhausted | Unavailable):
                raise ConfigurationError(f"cannot open database {path}: {exc}") from exc
            raise
        backend = cls(path, writer, reader, feed)
        backend.found_version = found
        return backend

    def run_many(self, units: list[Callable[[Transaction], Any]]) -> list[Outcome]:
        return self._writer.run_many(units)

    def committed(self, notes: list[Note]) -> None:
        FileFeeds.committed(self._key, self._feed, notes)

    def errors(self) -> AbstractContextManager[None]:
        return translated_errors()

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        rows = await self._reader.execute_fetchall(sql, tuple(params))
        return [tuple(row) for row in rows]

    async def integrity_check(self) -> str:
        rows = await self.fetch_all("PRAGMA quick_check")
        return str(rows[0][0]) if rows else "no answer"

    async def schema_version(self) -> int:
        rows = await self.fetch_all("PRAGMA user_version")
        return int(rows[0][0]) if rows else 0

    def probe(self, tx: Transaction) -> None:
        tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    async def close(self) -> None:
        FileFeeds.leave(self._key, self._feed)
        await _close_reader(self._reader)


async def _connect_reader(path: Path) -> aiosqlite.Connection:
    return await aiosqlite.connect(path, isolation_level=None)


READER_END_S = 10.0
"""A bound on the wait for the reader's thread after an interrupted close (its queue holds
local reads and the close: milliseconds)."""


async def _close_reader(reader: aiosqlite.Connection) -> None:
    """Closes the reader; a close interrupted midway still waits, blocking, for the
    reader's thread to end. That thread's last act is the close's answer to the loop, and
    a program interrupted now closes the loop next (asyncio.run cancels every task left,
    this close among them, then closes the loop): the answer found it closed and the
    thread died with a traceback. Blocking is safe: the thread only queues its answer."""
    try:
        await reader.close()
    except BaseException:
        reader._thread.join(READER_END_S)  # aiosqlite keeps no public handle on it
        raise


async def _settled(connecting: asyncio.Future[aiosqlite.Connection],
                   ) -> aiosqlite.Connection | None:
    """The reader an interrupted open was connecting, once connected (None if that
    failed). aiosqlite's own connect, cancelled, stops its thread without waiting for
    it, and the thread's last answer then finds the loop closed (a traceback on every
    Ctrl-C at that instant): the connect runs to its end and the reader is closed."""
    try:
        return await connecting
    except Exception:
        return None


def _migrate(writer: _Writer) -> int:
    """Every missing step, each in its own transaction; returns the version found."""
    conn = writer.connection()
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    refuse_newer(version)
    for number, script in enumerate(scripts("sqlite")[version:], start=version + 1):
        # executescript would COMMIT on its own; run the statements in our transaction.
        def step(tx: Transaction, script: str = script, number: int = number) -> None:
            for statement in _statements(script):
                tx.execute(statement)
            tx.execute(f"PRAGMA user_version = {number}")

        writer.run(step)
    check_schema(_tables(conn))  # a table dropped or altered by hand: refuse now, not per call
    answer = conn.execute("PRAGMA quick_check").fetchone()
    if answer is None or answer[0] != "ok":
        raise ConfigurationError(
            f"database is corrupt (quick_check: {answer[0] if answer else 'no answer'}); "
            "restore a backup (docs/operations.md)")
    return version


def _tables(conn: sqlite3.Connection) -> dict[str, frozenset[str]]:
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    return {t: frozenset(r[1] for r in conn.execute(f'PRAGMA table_info("{t}")'))
            for t in tables}


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
