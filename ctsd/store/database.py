"""One SQLite file: a writer thread that runs whole transactions, and a read-only reader.

How a write runs, and what a caller's cancellation may interrupt
---------------------------------------------------------------
A caller may be cancelled at any await (a client's deadline, a dropped
connection, an engine being stopped). If a transaction were a series of awaits,
a cancellation landing on `BEGIN IMMEDIATE` would leave the writer inside a
transaction nobody ends (every later write failing), and one landing on `COMMIT`
would commit rows the in-memory read model never hears of. So a write is
`Database.write(unit, publish)`:

- `unit(tx)` is plain synchronous SQL. The writer thread runs it between
  `BEGIN IMMEDIATE` and `COMMIT` in one call, and rolls back on any error it
  raises. Once started, nothing on the event loop can interrupt it; a write
  still queued when its caller is cancelled never starts.
- `publish(result)` applies the committed result to in-memory state (a read
  model). The writer thread schedules it on the event loop right after COMMIT,
  before it wakes the caller, whether or not the caller is still waiting, and
  in commit order. A read after the caller's answer sees the write; a write
  whose caller was cancelled after COMMIT is visible all the same.

So a cancelled write is either fully applied and visible, or not applied at
all, and the next write always starts on a writer outside any transaction.
`publish` must not await or fail: it runs as a plain callback on the loop.

Reads go to a second, read-only connection (aiosqlite, its own thread): in WAL
mode it sees only committed rows and never waits for the writer.

If a write fails because the file cannot be written (read-only, I/O error,
disk full, corrupt), `write_fault` says why until a write succeeds again; the
readiness check turns it into NOT_SERVING (`ctsd.health`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from ctsd.errors import ConfigurationError, ResourceExhausted, Unavailable
from ctsd.store.migrations import MIGRATIONS, SCHEMA_VERSION, check_schema
from ctsd.store.quarantine import Quarantine
from ctsd.store.quarantine import Row as Row

DB_NAME = "ctsd.db"
BUSY_TIMEOUT_MS = 5000

T = TypeVar("T")
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


class Transaction:
    """Statements on the writer, inside the open transaction of one `Database.write`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Runs a statement; returns the number of rows it changed."""
        return self._conn.execute(sql, tuple(params)).rowcount

    def insert(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Runs an INSERT; returns the new row's rowid."""
        rowid = self._conn.execute(sql, tuple(params)).lastrowid
        assert rowid is not None
        return rowid

    def executemany(self, sql: str, params: Iterable[Iterable[Any]]) -> None:
        self._conn.executemany(sql, [tuple(p) for p in params])

    def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        return [tuple(row) for row in self._conn.execute(sql, tuple(params)).fetchall()]

    def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        rows = self.fetch_all(sql, params)
        return rows[0] if rows else None


class _Writer:
    """The one writing connection, used only from its own thread (the executor's)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self.fault: str | None = None

    def connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            try:
                for pragma in (f"busy_timeout = {BUSY_TIMEOUT_MS}", "journal_mode = WAL",
                               "synchronous = FULL", "foreign_keys = ON"):
                    conn.execute(f"PRAGMA {pragma}")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def run(self, unit: Callable[[Transaction], T]) -> T:
        try:
            conn = self.connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = unit(Transaction(conn))
                conn.execute("COMMIT")
            except BaseException:
                self._end(conn)
                raise
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", None) in _UNWRITABLE:
                self.fault = f"{type(exc).__name__}: {exc}"
            raise
        self.fault = None
        return result

    def _end(self, conn: sqlite3.Connection) -> None:
        """Leaves no transaction open: rolls back, or starts over on a new connection."""
        if not conn.in_transaction:
            return  # SQLite already rolled back (some I/O errors do)
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.warning("rollback failed; the writer reconnects", exc_info=True)
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Database:
    """Owns the writer thread and the reader; `close()` is its end of life."""

    def __init__(self, path: Path, writer: _Writer, executor: ThreadPoolExecutor,
                 reader: aiosqlite.Connection) -> None:
        self.path = path
        self._writer = writer
        self._executor = executor
        self._reader = reader
        self._closed = False
        self.quarantine = Quarantine()
        self._fault_listeners: list[Callable[[], None]] = []
        """Rows that did not decode (`ctsd.store.quarantine`): every repository reports here."""

    @classmethod
    async def open(cls, state_dir: Path) -> Database:
        path = state_dir / DB_NAME
        try:
            _create_private(path)
        except OSError as exc:
            raise ConfigurationError(f"cannot create database {path}: {exc}") from exc
        writer = _Writer(path)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ctsd-writer")
        loop = asyncio.get_running_loop()
        reader: aiosqlite.Connection | None = None
        try:
            with translated_errors():
                await loop.run_in_executor(executor, _migrate, writer)
                reader = await aiosqlite.connect(path, isolation_level=None)
                await reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                await reader.execute("PRAGMA query_only = ON")
        except BaseException as exc:
            # Each connection owns a thread: leaving one open keeps the process alive.
            await loop.run_in_executor(executor, writer.close)
            executor.shutdown(wait=False)
            if reader is not None:
                await reader.close()
            if isinstance(exc, sqlite3.Error | ResourceExhausted | Unavailable):
                raise ConfigurationError(f"cannot open database {path}: {exc}") from exc
            raise
        return cls(path, writer, executor, reader)

    async def close(self) -> None:
        """Waits for the writes already queued, then closes both connections."""
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._writer.close)
        self._executor.shutdown(wait=True)
        await self._reader.close()

    @property
    def write_fault(self) -> str | None:
        """Why the last write failed to reach the file, or None once one succeeded."""
        return self._writer.fault

    def on_write_fault(self, listener: Callable[[], None]) -> None:
        """Call `listener` (on the loop) whenever `write_fault` changes: readiness re-checks."""
        self._fault_listeners.append(listener)

    async def write(self, unit: Callable[[Transaction], T],
                    publish: Callable[[T], None] | None = None) -> T:
        """Runs `unit` in one transaction on the writer thread; see the module docstring."""
        if self._closed:
            raise Unavailable("the store is closed")
        loop = asyncio.get_running_loop()

        def run() -> T:
            before = self._writer.fault
            try:
                result = self._writer.run(unit)
            finally:
                if self._writer.fault != before:
                    for listener in self._fault_listeners:
                        _schedule(loop, _call, listener)
            if publish is not None:
                _schedule(loop, publish, result)
            return result

        with translated_errors():
            return await loop.run_in_executor(self._executor, run)

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        with translated_errors():
            rows = await self._reader.execute_fetchall(sql, tuple(params))
        return [tuple(row) for row in rows]

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def integrity_check(self) -> str:
        row = await self.fetch_one("PRAGMA quick_check")
        return str(row[0]) if row else "no answer"

    async def schema_version(self) -> int:
        row = await self.fetch_one("PRAGMA user_version")
        return int(row[0]) if row else 0

    async def probe_write(self) -> None:
        """A write that changes nothing but still reaches the file: clears `write_fault`
        once the file takes writes again."""
        await self.write(lambda tx: tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}"))


def _call(listener: Callable[[], None]) -> None:
    listener()


def _schedule(loop: asyncio.AbstractEventLoop, publish: Callable[[T], None], result: T) -> None:
    """Runs `publish(result)` on the loop, from the writer thread, after the commit."""
    def apply() -> None:
        try:
            publish(result)
        except Exception:  # a bug in a read model; the row is committed regardless
            log.exception("publishing a committed write failed")

    with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads the model
        loop.call_soon_threadsafe(apply)


def _migrate(writer: _Writer) -> None:
    conn = writer.connection()
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"database schema version {version} is newer than this ctsd ({SCHEMA_VERSION}); "
            "upgrade ctsd"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        # executescript would COMMIT on its own; run the statements in our transaction.
        def step(tx: Transaction, script: str = script, number: int = number) -> None:
            for statement in _statements(script):
                tx.execute(statement)
            tx.execute(f"PRAGMA user_version = {number}")

        writer.run(step)
    check_schema(conn)  # a table dropped or altered by hand: refuse now, not per call
    answer = conn.execute("PRAGMA quick_check").fetchone()
    if answer is None or answer[0] != "ok":
        raise ConfigurationError(
            f"database is corrupt (quick_check: {answer[0] if answer else 'no answer'}); "
            "restore a backup (docs/operations.md)")


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
