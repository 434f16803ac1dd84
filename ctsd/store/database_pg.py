"""The PostgreSQL backend: the same write mechanism on a server several daemons share.

Writes: one synchronous psycopg connection on the writer thread, exactly like
the SQLite writer (`ctsd.store.database`'s docstring: a unit runs between BEGIN
and COMMIT in one call nothing on the loop can interrupt). Each write unit runs
SERIALIZABLE, so units of different daemons behave as if they ran one after the
other, as SQLite's single writer makes them: a unit that reads a row (a lease,
a revision) and writes depending on it cannot be overtaken by another daemon's
write of that row. PostgreSQL reports such a conflict as a serialization failure
(or a deadlock); the writer rolls back and runs the unit again, a few times,
then answers UNAVAILABLE. A unit must therefore be a function of what it reads
in the transaction (they all are: in-memory changes belong in `publish`).

The writer's session also has `idle_in_transaction_session_timeout` and
`lock_timeout`: a daemon stopped (SIGSTOP) in the middle of a unit cannot hold
its row locks, and so the whole fleet, longer than that.

A connection that drops during COMMIT leaves the outcome in doubt; the writer
asks the server on a new connection (`txid_status` of the transaction's id,
taken at BEGIN): committed → the write succeeded (publish runs, the caller gets
its answer); aborted → UNAVAILABLE, nothing applied. Only when no connection can
be had to ask does the write answer UNAVAILABLE with its outcome unknown; read
models that follow the change feed reload on the gap the outage causes.

Reads: an async psycopg pool, autocommit (each read sees what is committed).
Notifications: `tx.notify` is `pg_notify` in the transaction; `PgListener` holds
one LISTEN connection per `Database`, reconnects with a back-off, and sends
every listener a gap once it listens again.

Repositories write SQLite's `?` placeholders; `pg_sql` turns them into
psycopg's, and `group_concat(x, sep)` into `string_agg(x, sep)`. Booleans are
stored as 0/1 integers, as SQLite stores them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import psycopg
import psycopg.errors
import psycopg_pool

from ctsd.errors import ConfigurationError, ResourceExhausted, Unavailable
from ctsd.store.database_feed import Feed, Notice
from ctsd.store.database_tx import Note, OnWriter, Transaction, WriterBackend, roll_back
from ctsd.store.migrations import SCHEMA_VERSION, check_schema, refuse_newer, scripts
from ctsd.store.quarantine import Row
from ctsd.store.store_url import redacted_url
from ctsd.tasks import cancel_and_wait, keep_cancellation

T = TypeVar("T")
log = logging.getLogger("ctsd.store")

CONNECT_TIMEOUT_S = 5
POOL_TIMEOUT_S = 5.0
POOL_MAX_SIZE = 4
WRITE_ATTEMPTS = 8
LISTEN_POLL_S = 0.1
"""How often the LISTEN connection looks for channels to add between notifications."""
SESSION = {
    "connect_timeout": CONNECT_TIMEOUT_S, "keepalives": 1, "keepalives_idle": 5,
    "keepalives_interval": 2, "keepalives_count": 3, "application_name": "ctsd",
}
WRITER_OPTIONS = "-c idle_in_transaction_session_timeout=5000 -c lock_timeout=5000"
LISTENER_NAME = "ctsd-listen"
MIGRATION_LOCK = 0x637473  # pg_advisory_xact_lock key: one migrating daemon at a time
_RETRY = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
_BUSY = (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled)
"""Waited too long for a lock another session holds: busy, not unreachable."""
_UNWRITABLE = (psycopg.errors.DiskFull, psycopg.errors.ReadOnlySqlTransaction)
"""The server answers but takes no writes (full disk; a standby after a failover)."""
_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|\?|%|\bgroup_concat\(", re.I)


@functools.lru_cache(maxsize=512)
def pg_sql(sql: str) -> str:
    """SQLite-spelled SQL as psycopg takes it (see the module docstring)."""
    def swap(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "?":
            return "%s"
        if text == "%":
            return "%%"
        if text.lower() == "group_concat(":
            return "string_agg("
        return text.replace("%", "%%")  # a quoted literal: only its % needs escaping

    return _PLACEHOLDER.sub(swap, sql)


def pg_params(params: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(int(p) if isinstance(p, bool) else p for p in params)


@contextmanager
def translated_errors() -> Iterator[None]:
    """psycopg failures become domain errors here, and nowhere else."""
    try:
        yield
    except psycopg.errors.DiskFull as exc:
        raise ResourceExhausted("the database server's disk is full") from exc
    except _RETRY as exc:
        raise Unavailable("the database is busy with conflicting writes; retry") from exc
    except _BUSY as exc:
        raise Unavailable(f"the database is busy: {_first_line(exc)}") from exc
    except psycopg.errors.ReadOnlySqlTransaction as exc:
        raise Unavailable("the database takes no writes (a read-only server)") from exc
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise Unavailable(f"the database is unreachable: {_first_line(exc)}") from exc
    except psycopg_pool.PoolTimeout as exc:
        raise Unavailable("the database is unreachable: no connection within "
                          f"{POOL_TIMEOUT_S:g}s") from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class PgTransaction(Transaction):
    dialect = "postgresql"

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        super().__init__()
        self._cur = cur

    def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        self._cur.execute(pg_sql(sql), pg_params(params))
        return self._cur.rowcount

    def insert(self, sql: str, params: Iterable[Any] = (), key: str = "seq") -> int:
        self._cur.execute(f"{pg_sql(sql)} RETURNING {key}", pg_params(params))
        row = self._cur.fetchone()
        assert row is not None
        return int(row[0])

    def executemany(self, sql: str, params: Iterable[Iterable[Any]]) -> None:
        self._cur.executemany(pg_sql(sql), [pg_params(p) for p in params])

    def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        self._cur.execute(pg_sql(sql), pg_params(params))
        return [tuple(row) for row in self._cur.fetchall()]

    def clock_us(self) -> int:
        row = self.fetch_one(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint")
        assert row is not None
        return int(row[0])

    def _notify(self, channel: str, payload: str) -> None:
        self._cur.execute("SELECT pg_notify(%s, %s)", (channel, payload))


class _Writer:
    """The one writing connection, used only from the writer thread."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection[Any] | None = None
        self.fault: str | None = None
        self.pids: set[int] = set()
        """Server processes this writer has used: their notifications are our own."""

    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, autocommit=True, options=WRITER_OPTIONS,
                                         **SESSION)  # type: ignore[arg-type]
            self.pids.add(self._conn.info.backend_pid)
        return self._conn

    def run(self, unit: Callable[[Transaction], T],
            isolation: str = "SERIALIZABLE") -> tuple[T, list[Note]]:
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                result, notes = self._once(unit, isolation)
            except _RETRY:
                if attempt == WRITE_ATTEMPTS:
                    raise
                time.sleep(random.uniform(0, 0.002 * 2 ** attempt))  # on the writer thread
                continue
            except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
                lost = self._conn is None or self._conn.broken or self._conn.closed
                if lost or isinstance(exc, _UNWRITABLE):  # not a unit's own error, nor busy
                    self.fault = f"{type(exc).__name__}: {_first_line(exc)}"
                if lost:
                    self.close()
                raise
            self.fault = None
            return result, notes
        raise AssertionError("unreachable")

    def _once(self, unit: Callable[[Transaction], T], isolation: str) -> tuple[T, list[Note]]:
        conn, xid = self._begun(isolation)
        tx = PgTransaction(conn.cursor())
        try:
            result = unit(tx)
        except BaseException:
            self._end(conn)
            raise
        try:
            conn.execute("COMMIT")
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if not conn.broken and not conn.closed:
                self._end(conn)  # the server refused the commit (a conflict): not applied
                raise
            if self._outcome(xid) != "committed":  # aborted, or nobody can tell
                raise
            log.warning("the connection dropped during COMMIT; the server says it committed",
                        extra={"reason": _first_line(exc)})
        return result, tx.notes

    def _begun(self, isolation: str) -> tuple[psycopg.Connection[Any], int]:
        """A connection inside a new transaction, and the transaction's id. One that
        dropped while idle (a server restarted, a session ended) is replaced once:
        nothing of the unit ran on it."""
        fresh = self._conn is None or self._conn.closed
        begin = f"BEGIN ISOLATION LEVEL {isolation}; SELECT txid_current()"
        conn = self.connection()
        try:
            cur = conn.execute(begin)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            if fresh:
                raise
            self.close()
            conn = self.connection()
            cur = conn.execute(begin)
        cur.nextset()
        row = cur.fetchone()
        assert row is not None
        return conn, int(row[0])

    def _outcome(self, xid: int) -> str | None:
        """What became of transaction `xid` whose COMMIT got no answer: "committed",
        "aborted", or None when no new connection can ask (the write then stays
        UNAVAILABLE with its outcome unknown)."""
        self.close()
        try:
            row = self.connection().execute("SELECT txid_status(%s)", (xid,)).fetchone()
        except psycopg.Error:
            self.close()
            return None
        status = str(row[0]) if row and row[0] is not None else None
        return status if status in ("committed", "aborted") else None

    def _end(self, conn: psycopg.Connection[Any]) -> None:
        """Leaves no transaction open: rolls back, or starts over on a new connection."""
        if conn.broken or conn.closed:
            self.close()
        else:
            roll_back(conn.execute, psycopg.Error, self.close)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None


class PgListener:
    """The LISTEN connection of one `Database`: owned by its task, cancelled at close."""

    def __init__(self, url: str, feed: Feed, own_pids: set[int],
                 reached: Callable[[str | None], None]) -> None:
        self._url = url
        self._feed = feed
        self._own = own_pids
        self._reached = reached
        self._listening: set[str] = set()
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    def listen(self, channel: str) -> asyncio.Future[None] | None:
        """Starts listening on `channel`; the future resolves once LISTEN is in force."""
        if channel in self._listening:
            return None
        if channel not in self._pending:
            self._pending[channel] = asyncio.get_running_loop().create_future()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="pg-listen")
        return self._pending[channel]

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        self._fail_pending(Unavailable("the store is closed"))  # waiters were not cancelled

    async def _run(self) -> None:
        delay, listened = 0.05, False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True,
                    **{**SESSION, "application_name": LISTENER_NAME})  # type: ignore[arg-type]
            except psycopg.OperationalError as exc:
                self._refuse_pending(exc)
                self._reached(f"unreachable: {_first_line(exc)}")
            else:
                async with conn:
                    try:
                        await self._serve(conn, gap=listened)
                    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                        self._refuse_pending(exc)
                        self._reached(f"unreachable: {_first_line(exc)}")
                        log.warning("the database's notifications stopped; reconnecting",
                                    extra={"reason": _first_line(exc)})
                    except Exception as exc:  # a bug here must not end the feed for good
                        self._refuse_pending(exc)
                        log.exception("the database's notifications failed; reconnecting")
                    listened = listened or self.connected
                    self.connected = False
                    delay = 0.05
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _serve(self, conn: psycopg.AsyncConnection[Any], gap: bool) -> None:
        for channel in sorted(self._listening):
            await conn.execute(f"LISTEN {channel}")  # names are checked: [a-z][a-z0-9_]*
        self.connected = True
        self._reached(None)
        if gap:
            self._feed.gap()
        while True:
            for channel, future in list(self._pending.items()):
                await conn.execute(f"LISTEN {channel}")
                self._listening.add(channel)
                del self._pending[channel]
                if not future.done():
                    future.set_result(None)
            async for note in conn.notifies(timeout=LISTEN_POLL_S):
                self._feed.deliver(Notice(note.channel, note.payload,
                                          own=note.pid in self._own))

    def _refuse_pending(self, exc: BaseException) -> None:
        self._fail_pending(Unavailable(f"the database is unreachable: {_first_line(exc)}"))

    def _fail_pending(self, error: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved here too: its waiter may be gone
        self._pending.clear()


class PgBackend(WriterBackend):
    """`ctsd.store.database_tx.Backend` on a PostgreSQL database."""

    def __init__(self, url: str, writer: _Writer, pool: psycopg_pool.AsyncConnectionPool[Any],
                 feed: Feed) -> None:
        self.where = redacted_url(url)
        self._writer = writer
        self._pool = pool
        self.listener = PgListener(url, feed, writer.pids, self._reached)
        self.found_version = SCHEMA_VERSION
        feed.on_listen = self.listener.listen

    @classmethod
    async def open(cls, url: str, run_on_writer: OnWriter, feed: Feed,
                   upgrade: bool) -> PgBackend:
        where = redacted_url(url)
        writer = _Writer(url)
        pool: psycopg_pool.AsyncConnectionPool[Any] = psycopg_pool.AsyncConnectionPool(
            url, min_size=1, max_size=POOL_MAX_SIZE, open=False, timeout=POOL_TIMEOUT_S,
            kwargs={"autocommit": True, **SESSION},
            check=psycopg_pool.AsyncConnectionPool.check_connection, name="ctsd-read")
        try:
            try:
                found = await run_on_writer(functools.partial(_migrate, writer, upgrade))
                await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
            except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
                raise ConfigurationError(
                    f"cannot reach database {where}: {_first_line(exc)}") from exc
            except psycopg.Error as exc:  # a schema made by hand or by something else
                raise ConfigurationError(
                    f"cannot open database {where}: {_first_line(exc)}; "
                    "is it a ctsd database? restore a backup") from exc
        except BaseException:
            try:  # shielded: a writer call cancelled before it starts never runs
                await asyncio.shield(run_on_writer(writer.close))
            finally:
                await pool.close()
            raise
        backend = cls(url, writer, pool, feed)
        backend.found_version = found
        return backend

    def committed(self, notes: list[Note]) -> None:
        """The server delivers them (to every LISTENing session, ours included)."""

    def errors(self) -> AbstractContextManager[None]:
        return translated_errors()

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        """psycopg_pool may lose a cancellation while it waits for a free connection
        (`ctsd.tasks`, lost cancellations): the read runs under `keep_cancellation`."""
        return await keep_cancellation(self._read(sql, params))

    async def _read(self, sql: str, params: Iterable[Any]) -> list[Row]:
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(pg_sql(sql), pg_params(params))
                rows = [tuple(row) for row in await cur.fetchall()]
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            if not isinstance(exc, (*_RETRY, *_BUSY, *_UNWRITABLE)):  # answered: reachable
                self._reached(f"unreachable: {_first_line(exc)}")
            raise
        self._reached(None)
        return rows

    async def integrity_check(self) -> str:
        """The data checksums' verdict (PostgreSQL checks pages as it reads them)."""
        rows = await self.fetch_all(
            "SELECT coalesce(checksum_failures, 0) FROM pg_stat_database "
            "WHERE datname = current_database()")
        failures = int(rows[0][0]) if rows else 0
        return "ok" if failures == 0 else f"{failures} data checksum failure(s)"

    async def schema_version(self) -> int:
        rows = await self.fetch_all("SELECT version FROM ctsd_schema")
        return int(rows[0][0]) if rows else 0

    def probe(self, tx: Transaction) -> None:
        tx.execute("UPDATE ctsd_schema SET version = version")

    async def close(self) -> None:
        try:
            await self.listener.close()
        finally:  # a cancelled closing still closes the pool's sessions
            await self._pool.close()


def _migrate(writer: _Writer, upgrade: bool) -> int:
    """Every missing step in one transaction, under a lock other daemons wait on; at READ
    COMMITTED, so a daemon that waited sees what the one before it made. Returns the
    version found.

    An empty database is made at once. One at an older version is upgraded only when
    `upgrade` says so (`ctsd migrate`): other daemons of the fleet may still run the
    older version on it, and must not find its schema changed under them."""
    def unit(tx: Transaction) -> int:
        tx.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        tx.execute("CREATE TABLE IF NOT EXISTS ctsd_schema (version BIGINT NOT NULL)")
        row = tx.fetch_one("SELECT version FROM ctsd_schema")
        if row is None:
            tx.execute("INSERT INTO ctsd_schema (version) VALUES (0)")
        version = int(row[0]) if row else 0
        refuse_newer(version)
        if 0 < version < SCHEMA_VERSION and not upgrade:
            raise ConfigurationError(
                f"database schema version {version} is older than this ctsd's "
                f"({SCHEMA_VERSION}); daemons of the older version may share it: stop them, "
                "then run `ctsd migrate` once (docs/operations.md, PostgreSQL store)")
        for script in scripts("postgresql")[version:]:
            for statement in (s.strip() for s in script.split(";")):
                if statement:
                    tx.execute(statement)
        tx.execute("UPDATE ctsd_schema SET version = ?", (SCHEMA_VERSION,))
        check_schema(_tables(tx))
        return version

    return writer.run(unit, isolation="READ COMMITTED")[0]


def _tables(tx: Transaction) -> dict[str, frozenset[str]]:
    found: dict[str, set[str]] = {}
    for table, column in tx.fetch_all(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name != 'ctsd_schema'"):
        found.setdefault(str(table), set()).add(str(column))
    return {t: frozenset(c) for t, c in found.items()}
