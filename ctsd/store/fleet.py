"""The fleet's SQL: members, one lease per engine, and the fencing check.

Why the lease is a row with a token, checked by the database
------------------------------------------------------------
A daemon's belief that it owns an engine can be wrong at any moment: it may
have been paused (SIGSTOP, a long GC, a partition from the database) while its
lease expired and another daemon adopted the engine. So ownership is decided
where all daemons meet, in the database, by the database's clock:

- `engine_leases` has one row per engine that ever ran in the fleet: the owner,
  a `token` that grows by one each time the lease changes hands (never reset:
  a released row keeps its token), and `expires_ms`.
- Taking a lease (`take`) succeeds only if the row is expired, released, or
  already this member's; two daemons racing for an orphan serialize on the row
  (SQLite: one writer; PostgreSQL: the UPDATE's row lock, whose WHERE is
  re-evaluated after the other commits), and one of them sees no row changed.
- Every fenced write (`fence`) first runs a conditional no-op UPDATE of the
  lease row (owner, token and unexpired) in the same transaction: no row
  changed means the lease is gone, and the unit raises `LeaseLost`, so nothing
  of it commits. The PENDING record of an order is such a write, and a broker
  only sends an order after its PENDING record committed; an adopter reads the
  orders after its `take` committed, so it sees every PENDING record the old
  owner could still write.

The database's clock: PostgreSQL's `clock_timestamp()` (evaluated per
statement, not at the transaction's start); on SQLite every daemon shares one
host, whose wall clock (injected, for tests) is read inside the unit, at the
moment the statement runs, never when the write was queued.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ctsd.engine.lease_ports import Fence
from ctsd.engine.orders import OrderStatus
from ctsd.engine.store_ports import DesiredState
from ctsd.errors import LeaseLost
from ctsd.fleet.model import FleetView, LeaseRow, Member, MemberInfo
from ctsd.store.database import Database, Row, Transaction
from ctsd.store.timestamps import checked_ms

PG_NOW = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"


def _system_ms() -> int:
    return time.time_ns() // 1_000_000


class DatabaseClock:
    """`now` as an SQL fragment and its parameters, read when the statement runs."""

    def __init__(self, db: Database, wall_ms: Callable[[], int] = _system_ms) -> None:
        self._postgres = db.kind == "postgresql"
        self._wall_ms = wall_ms

    def sql(self) -> tuple[str, tuple[int, ...]]:
        if self._postgres:
            return PG_NOW, ()
        return "?", (self._wall_ms(),)

    def literal(self) -> str:
        """For reads: an integer literal (SQLite, read now) or the server's clock."""
        sql, params = self.sql()
        return str(params[0]) if params else sql


class SqlFleetStore:
    """Members and leases on the daemon's `Database`; `fence` is used by the engine store."""

    def __init__(self, db: Database, wall_ms: Callable[[], int] = _system_ms) -> None:
        self._db = db
        self._clock = DatabaseClock(db, wall_ms)

    # --- in a unit --------------------------------------------------------------------

    def fence(self, tx: Transaction, connection_id: str, fence: Fence) -> None:
        """Raise `LeaseLost` (rolling the unit back) unless `fence` still holds the lease."""
        now, params = self._clock.sql()
        held = tx.execute(
            "UPDATE engine_leases SET token = token WHERE connection_id = ? AND owner = ? "
            f"AND token = ? AND expires_ms > {now}",
            (connection_id, fence.owner, fence.token, *params))
        if held != 1:
            raise LeaseLost(f"connections/{connection_id}: lease token {fence.token} of "
                            f"{fence.owner} no longer holds")

    # --- writes -----------------------------------------------------------------------

    async def renew(self, member: MemberInfo, ttl_ms: int) -> dict[str, int]:
        """Heartbeat and renewal of every lease of `member` still unexpired, in one unit;
        answers the leases it still holds (connection id -> token). A lease that expired
        before this ran is not renewed: another daemon may have adopted it already."""

        def unit(tx: Transaction) -> dict[str, int]:
            now, p = self._clock.sql()
            tx.execute(
                "INSERT INTO fleet_members (id, address, version, schema_version, started_ms, "
                f"heartbeat_ms) VALUES (?, ?, ?, ?, {now}, {now}) ON CONFLICT (id) DO UPDATE "
                "SET address = excluded.address, version = excluded.version, "
                "schema_version = excluded.schema_version, heartbeat_ms = excluded.heartbeat_ms",
                (member.id, member.address, member.version, member.schema_version, *p, *p))
            now, p = self._clock.sql()
            tx.execute(f"UPDATE engine_leases SET expires_ms = {now} + ? "
                       f"WHERE owner = ? AND expires_ms > {now}", (*p, ttl_ms, member.id, *p))
            now, p = self._clock.sql()
            rows = tx.fetch_all("SELECT connection_id, token FROM engine_leases "
                                f"WHERE owner = ? AND expires_ms > {now}", (member.id, *p))
            return {str(r[0]): int(r[1]) for r in rows}

        return await self._db.write(unit)

    async def take(self, connection_id: str, member_id: str, ttl_ms: int, *,
                   running_only: bool) -> int | None:
        """The lease of `connection_id` for `member_id` under a new token, if it is free,
        expired, released or already this member's; None if another holds it (or, with
        `running_only`, if the engine's desired state is not RUNNING: an adoption)."""

        def unit(tx: Transaction) -> int | None:
            if running_only:
                row = tx.fetch_one("SELECT desired FROM engines WHERE connection_id = ?",
                                   (connection_id,))
                if row is None or row[0] != DesiredState.RUNNING.value:
                    return None
            now, p = self._clock.sql()
            changed = tx.execute(
                f"UPDATE engine_leases SET owner = ?, token = token + 1, expires_ms = {now} + ?, "
                f"acquired_ms = {now} WHERE connection_id = ? "
                f"AND (owner = ? OR expires_ms <= {now})",
                (member_id, *p, ttl_ms, *p, connection_id, member_id, *p))
            if changed == 0:
                exists = tx.fetch_one("SELECT 1 FROM engine_leases WHERE connection_id = ?",
                                      (connection_id,))
                if exists is not None:
                    return None  # held by another, unexpired
                now, p = self._clock.sql()
                tx.execute("INSERT INTO engine_leases (connection_id, owner, token, expires_ms, "
                           f"acquired_ms) VALUES (?, ?, 1, {now} + ?, {now})",
                           (connection_id, member_id, *p, ttl_ms, *p))
            row = tx.fetch_one("SELECT token FROM engine_leases WHERE connection_id = ?",
                               (connection_id,))
            assert row is not None
            return int(row[0])

        return await self._db.write(unit)

    async def release(self, connection_id: str, fence: Fence) -> bool:
        """Give the lease up (its token stays); False if it was no longer ours."""
        return bool(await self._db.write(lambda tx: tx.execute(
            "UPDATE engine_leases SET owner = '', expires_ms = 0 "
            "WHERE connection_id = ? AND owner = ? AND token = ?",
            (connection_id, fence.owner, fence.token))))

    async def leave(self, member_id: str) -> None:
        """A member that shuts down cleanly: its row goes (its leases were released)."""
        await self._db.write(lambda tx: tx.execute(
            "DELETE FROM fleet_members WHERE id = ?", (member_id,)))

    async def set_draining(self, member_id: str, draining: bool) -> bool:
        """False if no such member."""
        return bool(await self._db.write(lambda tx: tx.execute(
            "UPDATE fleet_members SET draining = ? WHERE id = ?", (int(draining), member_id))))

    # --- reads ------------------------------------------------------------------------

    async def view(self, ttl_ms: int) -> FleetView:
        """Members (alive: a heartbeat within `ttl_ms`) and leases, with the clock used."""
        now_row = await self._db.fetch_one(f"SELECT {self._now_read()}")
        assert now_row is not None
        now = int(now_row[0])
        members = await self._db.fetch_all(
            "SELECT id, address, version, schema_version, started_ms, heartbeat_ms, draining "
            "FROM fleet_members ORDER BY id")
        leases = await self._db.fetch_all(
            "SELECT connection_id, owner, token, expires_ms, acquired_ms FROM engine_leases "
            "ORDER BY connection_id")
        decoded = self._db.quarantine.decoded
        return FleetView(
            tuple(decoded("fleet_members", members, lambda r: _member(r, now, ttl_ms),
                          key=lambda r: str(r[0]))),
            tuple(decoded("engine_leases", leases, lambda r: _lease(r, now),
                          key=lambda r: str(r[0]))), now)

    async def orphans(self) -> list[str]:
        """Engines that should run and whose lease is missing, released or expired."""
        now = self._now_read()
        rows = await self._db.fetch_all(
            "SELECT e.connection_id FROM engines e LEFT JOIN engine_leases l "
            "ON l.connection_id = e.connection_id WHERE e.desired = ? "
            f"AND (l.connection_id IS NULL OR l.expires_ms <= {now}) ORDER BY e.connection_id",
            (DesiredState.RUNNING.value,))
        return [str(r[0]) for r in rows]

    async def unfinished_stops(self) -> list[str]:
        """Engines stopped (desired STOPPED) while no member held their lease, with orders
        still open or pending in the store: someone must reconcile and cancel them."""
        now = self._now_read()
        rows = await self._db.fetch_all(
            "SELECT e.connection_id FROM engines e LEFT JOIN engine_leases l "
            "ON l.connection_id = e.connection_id WHERE e.desired = ? "
            f"AND (l.connection_id IS NULL OR l.expires_ms <= {now}) AND EXISTS "
            "(SELECT 1 FROM engine_orders o WHERE o.connection_id = e.connection_id "
            "AND o.status IN (?, ?)) ORDER BY e.connection_id",
            (DesiredState.STOPPED.value, OrderStatus.PENDING.value, OrderStatus.OPEN.value))
        return [str(r[0]) for r in rows]

    async def stopped(self, connection_ids: list[str]) -> list[str]:
        """Which of these engines should no longer run (stopped through another daemon)."""
        if not connection_ids:
            return []
        marks = ", ".join("?" * len(connection_ids))
        rows = await self._db.fetch_all(
            f"SELECT connection_id FROM engines WHERE connection_id IN ({marks}) "
            "AND desired <> ? ORDER BY connection_id",
            (*connection_ids, DesiredState.RUNNING.value))
        return [str(r[0]) for r in rows]

    def _now_read(self) -> str:
        return self._clock.literal()


def _member(row: Row, now: int, ttl_ms: int) -> Member:
    info = MemberInfo(str(row[0]), str(row[1]), str(row[2]), int(row[3]))
    heartbeat = checked_ms(row[5])
    return Member(info, checked_ms(row[4]), heartbeat, bool(row[6]), heartbeat > now - ttl_ms)


def _lease(row: Row, now: int) -> LeaseRow:
    expires = checked_ms(row[3])
    return LeaseRow(str(row[0]), str(row[1]), int(row[2]), expires, checked_ms(row[4]),
                    bool(row[1]) and expires > now)
