"""Writes queued while the writer is busy run as one batch (`ctsd.store.database_queue`).

On SQLite a batch is one transaction with a savepoint per write: one COMMIT for a burst.
Each write stays all or nothing on its own (one that raises is undone alone), committed
results are published in commit order before any caller resumes, and a write cancelled
while still queued never starts. PostgreSQL runs the same batch one transaction per write.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import pytest

from ctsd.errors import Unavailable
from ctsd.store.database import Database, Transaction
from ctsd.store.database_tx import Outcome

INSERT = ("INSERT INTO connections (id, display_name, exchange, api_type, testnet, "
          "margin_mode, position_mode, market_data_method, enabled, predefined, "
          "created_us, updated_us, revision) "
          "VALUES (?, ?, 'binance', 'spot', 0, 'cross', 'one_way', 'rest', 0, 0, 0, 0, 1)")


def insert(cid: str, fail: bool = False) -> Callable[[Transaction], str]:
    def unit(tx: Transaction) -> str:
        tx.execute(INSERT, (cid, cid))
        if fail:
            raise ValueError(f"{cid} refused")
        return cid
    return unit


async def ids(db: Database) -> set[str]:
    return {str(r[0]) for r in await db.fetch_all("SELECT id FROM connections")}


@pytest.mark.asyncio
async def test_a_burst_is_one_batch_each_write_all_or_nothing(db: Database) -> None:
    batches: list[int] = []
    run_many = db._backend.run_many

    def counted(units: list[Callable[[Transaction], Any]]) -> list[Outcome]:
        batches.append(len(units))
        return run_many(units)

    db._backend.run_many = counted  # type: ignore[method-assign]
    busy, release = threading.Event(), threading.Event()

    def hold(tx: Transaction) -> None:
        busy.set()
        release.wait(10)  # on the writer thread: the burst below queues meanwhile

    first = asyncio.ensure_future(db.write(hold))
    await asyncio.get_running_loop().run_in_executor(None, busy.wait, 10)
    published: list[str] = []
    resumed: list[tuple[str, list[str]]] = []

    async def write(cid: str, fail: bool = False) -> str:
        done = await db.write(insert(cid, fail), published.append)
        resumed.append((done, list(published)))
        return done

    burst = [asyncio.ensure_future(write(f"c{i}", fail=i == 3)) for i in range(8)]
    cancelled = asyncio.ensure_future(write("gone"))
    await asyncio.sleep(0)  # every write queued
    cancelled.cancel()
    release.set()
    results = await asyncio.gather(first, *burst, return_exceptions=True)
    assert cancelled.cancelled()
    assert isinstance(results[4], ValueError) and "c3 refused" in str(results[4])
    wanted = [f"c{i}" for i in range(8) if i != 3]
    assert await ids(db) == set(wanted)  # c3 undone alone; the cancelled one never ran
    assert published == wanted  # in commit order
    assert all(seen == wanted for _, seen in resumed)  # every publish before any caller
    assert batches == [1, 8]
    assert await db.write(insert("after")) == "after"  # the writer is outside any transaction


@pytest.mark.asyncio
async def test_a_batch_that_cannot_begin_fails_every_write_in_it(db: Database) -> None:
    """Another process holds SQLite's write lock: every write of the burst hears so (none
    is committed), and once the lock is free the next write works."""
    if db.path is None:
        pytest.skip("SQLite's file lock")
    writer = db._backend._writer.connection()  # type: ignore[attr-defined]
    await asyncio.get_running_loop().run_in_executor(
        db._executor, writer.execute, "PRAGMA busy_timeout = 100")
    holder = sqlite3.connect(db.path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        burst = [db.write(insert(cid)) for cid in ("a", "b", "c")]
        results = await asyncio.gather(*burst, return_exceptions=True)
        assert all(isinstance(r, Unavailable) and "locked" in str(r) for r in results), results
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert await db.write(insert("after")) == "after"
    assert await ids(db) == {"after"}
