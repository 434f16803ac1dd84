"""The daemon's database: a writer thread that runs whole transactions, readers, a change feed.

How a write runs, and what a caller's cancellation may interrupt
---------------------------------------------------------------
A caller may be cancelled at any await (a client's deadline, a dropped
connection, an engine being stopped). If a transaction were a series of awaits,
a cancellation landing on `BEGIN` would leave the writer inside a transaction
nobody ends (every later write failing), and one landing on `COMMIT` would
commit rows the in-memory read model never hears of. So a write is
`Database.write(unit, publish)`:

- `unit(tx)` is plain synchronous SQL. The writer thread runs it between
  `BEGIN` and `COMMIT` in one call, and rolls back on any error it raises.
  Once started, nothing on the event loop can interrupt it; a write still
  queued when its caller is cancelled never starts.
- `publish(result)` applies the committed result to in-memory state (a read
  model). The writer thread schedules it on the event loop right after COMMIT,
  before it wakes the caller, whether or not the caller is still waiting, and
  in commit order. A read after the caller's answer sees the write; a write
  whose caller was cancelled after COMMIT is visible all the same.

So a cancelled write is either fully applied and visible, or not applied at
all, and the next write always starts on a writer outside any transaction.
`publish` must not await or fail: it runs as a plain callback on the loop.

Writes queue for the writer thread (`ctsd.store.database_queue`), which takes
every write waiting when it gets to them and hands them to the backend at once
(`Backend.run_many`): on SQLite one transaction, a savepoint per write, one
COMMIT; the loop hears of the whole batch in one callback. A burst of writes
(every engine on a market event writing its order before sending it) then
costs one fsync and one trip each way between threads, not one per write,
and each write is still all or nothing on its own.

Two backends keep that contract (`ctsd.store.database_tx.Backend`): the SQLite
file in the state directory (the default, `ctsd.store.database_sqlite`), and a
PostgreSQL server several daemons share (`[store] url`,
`ctsd.store.database_pg`, whose docstring says how concurrent writers of
different daemons stay serial).

The change feed: `tx.notify(channel, payload)` in a unit, `db.listen(channel)`
to hear it after COMMIT, from any daemon on the same database
(`ctsd.store.database_feed`).

If a write fails because the database cannot take it (a read-only or full
disk, a corrupt file, a server gone), `write_fault` says why until a write
succeeds again; the readiness check turns it into NOT_SERVING (`ctsd.health`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ctsd.errors import Unavailable
from ctsd.store.database_feed import MAX_QUEUED, Feed, Subscription
from ctsd.store.database_queue import WriteQueue
from ctsd.store.database_sqlite import DB_NAME as DB_NAME
from ctsd.store.database_sqlite import SqliteBackend
from ctsd.store.database_tx import Backend, Outcome
from ctsd.store.database_tx import Transaction as Transaction
from ctsd.store.quarantine import Quarantine
from ctsd.store.quarantine import Row as Row

T = TypeVar("T")
log = logging.getLogger("ctsd.store")


class Database:
    """Owns the writer thread, the backend's readers and the change feed; `close()` ends
    them."""

    def __init__(self, backend: Backend, executor: ThreadPoolExecutor, feed: Feed,
                 kind: str) -> None:
        self._backend = backend
        self._executor = executor
        self._feed = feed
        self.kind = kind
        """"sqlite" or "postgresql"."""
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        self.quarantine = Quarantine()
        """Rows that did not decode (`ctsd.store.quarantine`): every repository reports here."""
        self._fault_listeners: list[Callable[[], None]] = []
        self._unreachable: str | None = None
        backend.watch_reachability(self._reachability)
        self._loop = asyncio.get_running_loop()
        self._queue = WriteQueue(self._loop, executor, self._batch, self._took_write)

    @classmethod
    async def open(cls, state_dir: Path, url: str | None = None,
                   upgrade: bool = False, synchronous: str = "full") -> Database:
        """The SQLite file in `state_dir`, or the PostgreSQL database at `url`; migrated to
        this ctsd's schema (a PostgreSQL database at an older version only with `upgrade`:
        `ctsd migrate`). ConfigurationError (exit 78) if it cannot be used."""
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ctsd-writer")
        feed = Feed(loop)

        def on_writer(call: Callable[[], T]) -> asyncio.Future[T]:
            return loop.run_in_executor(executor, call)

        backend: Backend
        try:
            if url is None:
                backend = await SqliteBackend.open(state_dir, executor, feed, synchronous)
            else:
                from ctsd.store.database_pg import PgBackend  # psycopg only when configured
                backend = await PgBackend.open(url, on_writer, feed, upgrade)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(backend, executor, feed, "sqlite" if url is None else "postgresql")

    @property
    def path(self) -> Path | None:
        """The SQLite file, or None on PostgreSQL."""
        return self._backend.path if isinstance(self._backend, SqliteBackend) else None

    @property
    def found_version(self) -> int:
        """The schema version the database had before this open migrated it."""
        return self._backend.found_version

    @property
    def where(self) -> str:
        """What messages name: the file, or the server's URL without its password."""
        return self._backend.where

    async def close(self) -> None:
        """Waits for the writes already queued, then closes every connection; listeners'
        iterations end. A caller cancelled meanwhile leaves the closing to finish on its
        own (a half-closed database would keep connections and pool tasks alive)."""
        if self._closing is None:
            self._closed = True
            self._feed.close()
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        """Each step runs even if the one before it was cancelled: a program interrupted
        while it closes (asyncio.run cancels every task left on SIGINT) must still stop
        the reader's thread, which is not a daemon thread and would keep the process
        alive after its main function returned. A cancelled wait for the writer's closing
        must not cancel the closing: a call the writer thread has not picked up yet would
        never run, and its connection would be left open."""
        closing = asyncio.get_running_loop().run_in_executor(self._executor,
                                                             self._backend.close_writer)
        try:
            await asyncio.shield(closing)
        finally:
            self._executor.shutdown(wait=False)  # its thread ends after close_writer
            await self._backend.close()

    @property
    def write_fault(self) -> str | None:
        """Why the last write failed to reach the database (or, on PostgreSQL, why the
        last read or the listener found the server unreachable), or None once one
        succeeded."""
        return self._backend.fault or self._unreachable

    def _reachability(self, fault: str | None) -> None:
        if fault != self._unreachable:
            self._unreachable = fault
            for listener in self._fault_listeners:
                listener()

    def on_write_fault(self, listener: Callable[[], None]) -> None:
        """Call `listener` (on the loop) whenever `write_fault` changes: readiness re-checks."""
        self._fault_listeners.append(listener)

    async def write(self, unit: Callable[[Transaction], T],
                    publish: Callable[[T], None] | None = None) -> T:
        """Runs `unit` in one transaction on the writer thread; see the module docstring."""
        if self._closed:
            raise Unavailable("the store is closed")
        with self._backend.errors():
            result: T = await self._queue.write(unit, publish)
            return result

    def _batch(self, units: list[Callable[[Transaction], Any]]) -> list[Outcome]:
        """On the writer thread: one batch of queued writes (`WriteQueue`)."""
        backend = self._backend
        before = backend.fault
        try:
            outcomes = backend.run_many(units)
        finally:
            if backend.fault != before:
                for listener in self._fault_listeners:
                    _schedule(self._loop, _call, listener)
        backend.committed([n for ok, _, notes in outcomes if ok for n in notes])
        return outcomes

    def _took_write(self) -> None:
        self._reachability(None)

    def listen(self, channel: str, max_queued: int = MAX_QUEUED) -> Subscription:
        """The notices of `channel` (`ctsd.store.database_feed`): `async with` it, then
        iterate; listening is in force once `async with` has entered. More than
        `max_queued` unread notices become one gap. ValueError for a bad channel name;
        Unavailable if the database cannot be reached."""
        return Subscription(self._feed, channel, max_queued)

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        if self._closed:
            raise Unavailable("the store is closed")
        with self._backend.errors():
            return await self._backend.fetch_all(sql, params)

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def integrity_check(self) -> str:
        """"ok", or what the database says is damaged."""
        with self._backend.errors():
            return await self._backend.integrity_check()

    async def schema_version(self) -> int:
        with self._backend.errors():
            return await self._backend.schema_version()

    async def probe_write(self) -> None:
        """A write that changes nothing but still needs the database to take it: clears
        `write_fault` once the database takes writes again."""
        await self.write(self._backend.probe)


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
