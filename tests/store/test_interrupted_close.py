"""A program interrupted while it opens, uses or closes the database still exits, and
leaves no connection open.

`ctsd rotate-key` hung on a SIGINT that arrived while it closed the store: asyncio.run
cancelled the caller, then every task left, among them the closing itself, which
stopped before the reader's thread was told to end. That thread (aiosqlite's, not a
daemon thread) then kept the finished process alive forever. Here each run of
open → listen → read → write → close is cancelled at one of its await points in turn, and the
runner then cancels whatever is left after a seeded number of loop turns, as asyncio.run
does on SIGINT; every thread the run started must end by itself, and no connection may
be left for the garbage collector to find open (the writer's close, cancelled before its
thread picked it up, never ran: a PostgreSQL session left behind).
"""

from __future__ import annotations

import asyncio
import gc
import random
import threading
import warnings
from pathlib import Path

from ctsd.store.database import Database
from ctsd.store.sealed_secrets import SealedSecretRepository
from tests.support.cancel_points import Outcome, run_cancelled_at

SEED = 5
THREAD_END_S = 30.0
"""How long a thread may take to end once its run is over: a bound, not a wait (a
thread that ends sooner returns at once)."""


async def _lifecycle(state: Path, url: str | None, kept: list[Database]) -> int:
    db = await Database.open(state, url)
    kept.append(db)  # no garbage collection may stop a thread the code forgot
    try:
        secrets = SealedSecretRepository(db)
        async with db.listen("engines"):  # PostgreSQL: the listener's session too
            await secrets.count()
            return await secrets.reseal_all(lambda stored: (stored.key_id, stored.blob))
    finally:
        await db.close()


async def _interrupted(state: Path, url: str | None, point: int | None, turns: int,
                       kept: list[Database]) -> Outcome:
    outcome = await run_cancelled_at(lambda: _lifecycle(state, url, kept), point)
    for _ in range(turns):  # the instant the runner cancels what is left
        await asyncio.sleep(0)
    return outcome


def _run(state: Path, url: str | None, point: int | None, turns: int) -> tuple[Outcome,
                                                                               list[str]]:
    """One interrupted run in its own runner; the threads and connections it left."""
    before = set(threading.enumerate())
    kept: list[Database] = []
    with asyncio.Runner() as runner:
        outcome = runner.run(_interrupted(state, url, point, turns, kept))
    started = [t for t in threading.enumerate() if t not in before and not t.daemon]
    for thread in started:
        thread.join(THREAD_END_S)
    left = [f"thread {t.name}" for t in started if t.is_alive()]
    kept.clear()
    with warnings.catch_warnings(record=True) as found:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()  # a connection nobody closed warns as it is collected
    return outcome, left + [str(w.message)[:120] for w in found
                            if issubclass(w.category, ResourceWarning)]


def test_every_thread_ends_whatever_await_an_interruption_hits(
        tmp_path: Path, store_url: str | None) -> None:
    rng = random.Random(SEED)
    clean, left = _run(tmp_path, store_url, None, 0)
    assert clean.error is None and not left, (clean.error, left)
    problems = []
    for point in range(1, clean.suspensions + 1):
        for turns in (0, rng.randrange(1, 4), rng.randrange(4, 12)):
            outcome, left = _run(tmp_path, store_url, point, turns)
            if left or outcome.error is not None:
                problems.append(f"cancelled at {point} of {clean.suspensions}, runner after "
                                f"{turns} turns: error {outcome.error!r}, left {left}")
    assert not problems, problems
