"""Write units of two `Database`s on one store (two daemons of a fleet) behave as if they
ran one after the other: a unit that reads a row and writes what it read plus one loses
no increment, on SQLite (one writer at a time, BEGIN IMMEDIATE) and on PostgreSQL
(SERIALIZABLE, a conflicting unit rolled back and run again)."""

from __future__ import annotations

import asyncio
import time

import pytest

from ctsd.store.database import Database, Transaction

ROUNDS = 25
ROW = ("INSERT INTO engines (connection_id, engine_id, config, desired, cycle, updated_us) "
       "VALUES ('counter', 'e', '{}', 'stopped', 0, 0)")


def increment(tx: Transaction) -> int:
    row = tx.fetch_one("SELECT cycle FROM engines WHERE connection_id = 'counter'")
    assert row is not None
    tx.execute("UPDATE engines SET cycle = ? WHERE connection_id = 'counter'", (row[0] + 1,))
    return int(row[0]) + 1


@pytest.mark.asyncio
async def test_read_then_write_units_of_two_databases_lose_no_update(
        db: Database, other: Database) -> None:
    await db.write(lambda tx: tx.execute(ROW))

    async def bump(database: Database) -> list[int]:
        return [await database.write(increment) for _ in range(ROUNDS)]

    seen = await asyncio.gather(bump(db), bump(other), bump(db), bump(other))
    row = await db.fetch_one("SELECT cycle FROM engines WHERE connection_id = 'counter'")
    assert row == (4 * ROUNDS,)
    assert sorted(n for part in seen for n in part) == list(range(1, 4 * ROUNDS + 1))


@pytest.mark.asyncio
async def test_the_database_clock_is_the_wall_clock_in_microseconds(db: Database) -> None:
    before = time.time_ns() // 1000
    stamp = await db.write(lambda tx: tx.clock_us())
    after = time.time_ns() // 1000
    assert before - 1_000_000 <= stamp <= after + 1_000_000  # same host, whole seconds apart
