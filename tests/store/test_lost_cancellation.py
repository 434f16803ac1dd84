"""A task reading the store ends when it is cancelled, at any instant, on both backends.

The daemon's followers, fleet tasks and readiness checks read the store and are ended
by their owners with one `cancel()` at shutdown. psycopg_pool waits for a free read
connection with Python 3.11's `asyncio.wait_for`, which loses a cancellation that
arrives as a connection is handed over: the task went on to wait for the next
notification, its owner waited for it, and a PostgreSQL daemon never exited after
SIGTERM (`ctsd.tasks`, lost cancellations). Here every reader, long-lived follower or
single read, is cancelled once at a seeded random instant while others keep the read
pool busy, and must end cancelled. The owner's single `cancel()` is used, not
`cancel_and_wait` (which cancels again and would hide a lost one).

Quick form: 20 rounds of 8 readers per backend; `CTS_SOAK_ROUNDS` for the long one.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from ctsd.store.connections import ConnectionRepository
from ctsd.store.database import Database
from ctsd.store.engine_statuses import SqlStatusStore
from ctsd.store.fleet import SqlFleetStore
from ctsd.tasks import waiting_at
from tests.robustness.tally import Tally, soak_rounds

READERS = 8
MAX_DELAY_S = 0.03
ENDED_WITHIN_S = 5.0
"""A cancelled reader ends within one read; one that lost its cancellation never does."""

Reader = Callable[[], Coroutine[Any, Any, object]]


def _readers(db: Database) -> list[tuple[str, Reader]]:
    """Each runs until cancelled, as the daemon's background tasks do."""
    connections = ConnectionRepository(db)
    statuses = SqlStatusStore(db)
    fleet = SqlFleetStore(db)

    async def statuses_follower() -> None:
        async for _ in statuses.changes():
            await statuses.load()

    async def reading(read: Callable[[], Awaitable[object]]) -> None:
        while True:
            await read()

    return [
        ("connections.follow", connections.follow),
        ("engine_statuses.changes", statuses_follower),
        ("fetch_all", lambda: reading(lambda: db.fetch_all("SELECT 1"))),
        ("fleet.view", lambda: reading(lambda: fleet.view(10_000))),
        ("fleet.orphans", lambda: reading(fleet.orphans)),
        ("integrity_check", lambda: reading(db.integrity_check)),
    ]


@pytest.mark.asyncio
async def test_every_cancelled_reader_ends_cancelled(db: Database) -> None:
    rng = random.Random(16)
    kinds = _readers(db)
    tally = Tally(f"lost cancellations ({db.kind})")
    lost: list[str] = []
    for _ in range(soak_rounds(20)):
        chosen = [rng.choice(kinds) for _ in range(READERS)]
        tasks = [asyncio.create_task(run(), name=name) for name, run in chosen]
        for task in rng.sample(tasks, len(tasks)):
            await asyncio.sleep(rng.uniform(0, MAX_DELAY_S))
            task.cancel()
        done, running = await asyncio.wait(tasks, timeout=ENDED_WITHIN_S)
        for task in tasks:
            tally.tried += 1
            if task in done and task.cancelled():
                tally.survived += 1
                continue
            tally.lost += 1
            if task in done:
                lost.append(f"{task.get_name()} ended without its cancellation: "
                            f"{task.exception()!r}")
            else:
                lost.append(f"{task.get_name()} went on at {waiting_at(task)}")
        for task in running:  # not to leave them behind the failure
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=ENDED_WITHIN_S)
    tally.report()
    assert not lost, lost[:5]
