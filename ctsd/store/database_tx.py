"""What a write unit sees (`Transaction`) and what a backend provides (`Backend`).

`ctsd.store.database.Database` is the one entry point; a backend (SQLite file,
PostgreSQL server) supplies the writer that runs whole transactions on the
writer thread, and the readers. Repositories write one SQL for both: `?`
placeholders and the common subset of SQLite and PostgreSQL (the PostgreSQL
backend translates placeholders and the few names that differ, see
`ctsd.store.database_pg.pg_sql`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from ctsd.store.database_feed import check_notice
from ctsd.store.quarantine import Row

T = TypeVar("T")
log = logging.getLogger("ctsd.store")
Note = tuple[str, str]
"""(channel, payload) of a `Transaction.notify`."""
Outcome = tuple[bool, Any, list[Note]]
"""One unit of `Backend.run_many`: (committed, its result or the exception it raised, its
notes)."""


class Transaction:
    """Statements on the writer, inside the open transaction of one `Database.write`."""

    dialect = "sqlite"
    """"sqlite" or "postgresql": for the rare statement the two must spell differently."""

    def __init__(self) -> None:
        self.notes: list[Note] = []

    def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Runs a statement; returns the number of rows it changed."""
        raise NotImplementedError

    def insert(self, sql: str, params: Iterable[Any] = (), key: str = "seq") -> int:
        """Runs an INSERT of one row; returns its generated `key` (an integer column)."""
        raise NotImplementedError

    def executemany(self, sql: str, params: Iterable[Iterable[Any]]) -> None:
        raise NotImplementedError

    def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        raise NotImplementedError

    def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        rows = self.fetch_all(sql, params)
        return rows[0] if rows else None

    def clock_us(self) -> int:
        """The database's clock, microseconds since the epoch: the one clock every member
        of a fleet shares (leases expire by it, not by a member's own)."""
        raise NotImplementedError

    def notify(self, channel: str, payload: str = "") -> None:
        """Announces `payload` on `channel` to `Database.listen` listeners once this
        transaction commits (`ctsd.store.database_feed`). Raises ValueError for a bad
        channel name or a payload over the size limit."""
        check_notice(channel, payload)
        if (channel, payload) not in self.notes:
            self.notes.append((channel, payload))
            self._notify(channel, payload)

    def _notify(self, channel: str, payload: str) -> None:
        """The backend's part of `notify`, inside the transaction."""


def roll_back(execute: Callable[[str], object], errors: type[Exception],
              reconnect: Callable[[], None]) -> None:
    """Ends the open transaction, or drops the connection when even that fails: the next
    write must start outside any transaction."""
    try:
        execute("ROLLBACK")
    except errors:
        log.warning("rollback failed; the writer reconnects", exc_info=True)
        reconnect()


class OnWriter(Protocol):
    """Runs a call on the writer thread: `await on_writer(call)`."""

    def __call__(self, call: Callable[[], T]) -> asyncio.Future[T]: ...


class Writer(Protocol):
    """A backend's writing connection, used on the writer thread only."""

    fault: str | None

    def run(self, unit: Callable[[Transaction], T]) -> tuple[T, list[Note]]: ...

    def close(self) -> None: ...


class WriterBackend:
    """What both backends delegate to their writer, and their reachability hook."""

    _writer: Writer
    _on_reach: Callable[[str | None], None] | None = None

    def watch_reachability(self, hook: Callable[[str | None], None]) -> None:
        """`hook(reason)` on the loop when a read or the listener finds the database
        unreachable, `hook(None)` when it answers again."""
        self._on_reach = hook

    def _reached(self, fault: str | None) -> None:
        if self._on_reach is not None:
            self._on_reach(fault)

    @property
    def fault(self) -> str | None:
        return self._writer.fault

    def run(self, unit: Callable[[Transaction], T]) -> tuple[T, list[Note]]:
        return self._writer.run(unit)

    def run_many(self, units: list[Callable[[Transaction], Any]]) -> list[Outcome]:
        """Each unit in its own transaction (PostgreSQL: a unit may be retried whole on a
        serialization failure, which one shared transaction would not allow)."""
        return [one(self._writer.run, unit) for unit in units]

    def close_writer(self) -> None:
        self._writer.close()


def one(run: Callable[[Callable[[Transaction], Any]], tuple[Any, list[Note]]],
        unit: Callable[[Transaction], Any]) -> Outcome:
    """`run(unit)` as an outcome: a unit's failure is its own, not the batch's."""
    try:
        result, notes = run(unit)
    except Exception as exc:
        return False, exc, []
    return True, result, notes


class Backend(Protocol):
    """One kind of database behind `Database`."""

    where: str
    """What the messages name: the file, or the server's URL without its password."""
    found_version: int
    """The schema version the database had when opened (before any migration)."""

    @property
    def fault(self) -> str | None:
        """Why the last write failed to reach the database, or None once one succeeded."""

    def run(self, unit: Callable[[Transaction], T]) -> tuple[T, list[Note]]:
        """On the writer thread: `unit` in one transaction; its result and its notes."""

    def run_many(self, units: list[Callable[[Transaction], Any]]) -> list[Outcome]:
        """On the writer thread: every unit, in order, each all or nothing; a unit that
        raises an `Exception` is undone alone (its outcome holds the exception). Raises
        only when none could be committed (then none is)."""

    def committed(self, notes: list[Note]) -> None:
        """On the writer thread, right after a commit with `notes`."""

    def close_writer(self) -> None:
        """On the writer thread."""

    def errors(self) -> AbstractContextManager[None]:
        """Turns the driver's errors into domain errors."""

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]: ...

    async def integrity_check(self) -> str: ...

    async def schema_version(self) -> int: ...

    def probe(self, tx: Transaction) -> None:
        """A statement that changes nothing but needs the database to take a write."""

    def watch_reachability(self, hook: Callable[[str | None], None]) -> None: ...

    async def close(self) -> None:
        """Closes the readers (and the listener); the writer is closed already."""
