"""The change feed (`tx.notify`, `Database.listen`) on both backends: a committed unit's
notices reach every listener of the database, in commit order, once; a rolled-back unit's
never do; a listener that may have missed some is told (a gap)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from ctsd.errors import Unavailable
from ctsd.store.database import Database, Transaction
from ctsd.store.database_feed import MAX_PAYLOAD_BYTES, Notice, Subscription
from tests.support.pg_databases import database_url

WAIT_S = 10.0  # a bound, not a pace: every wait ends as soon as the notice arrives


def notifying(*notes: tuple[str, str], fail: bool = False) -> Callable[[Transaction], None]:
    def unit(tx: Transaction) -> None:
        tx.execute("UPDATE engines SET cycle = cycle + 1")  # a real write alongside
        for channel, payload in notes:
            tx.notify(channel, payload)
        if fail:
            raise RuntimeError("rolled back")
    return unit


async def next_notice(feed: Subscription) -> Notice:
    return await asyncio.wait_for(anext(feed), WAIT_S)


@pytest.mark.asyncio
async def test_a_committed_unit_reaches_every_listener_in_commit_order(
        db: Database, other: Database) -> None:
    async with db.listen("engines") as mine, other.listen("engines") as theirs, \
            other.listen("connections") as elsewhere:
        await db.write(notifying(("engines", "a"), ("engines", "b"), ("engines", "a")))
        await db.write(notifying(("engines", "c"), ("connections", "x")))
        assert [await next_notice(mine) for _ in range(3)] == [
            Notice("engines", p, own=True) for p in "abc"]
        assert [await next_notice(theirs) for _ in range(3)] == [
            Notice("engines", p, own=False) for p in "abc"]  # "a" twice in one unit: once
        assert await next_notice(elsewhere) == Notice("connections", "x", own=False)


@pytest.mark.asyncio
async def test_a_rolled_back_unit_notifies_nobody(db: Database, other: Database) -> None:
    async with other.listen("engines") as feed:
        with pytest.raises(RuntimeError):
            await db.write(notifying(("engines", "lost"), fail=True))
        await db.write(notifying(("engines", "kept")))
        assert await next_notice(feed) == Notice("engines", "kept")
        assert feed.pending() == 0


@pytest.mark.asyncio
async def test_bad_channels_and_payloads_are_refused_in_the_unit(db: Database) -> None:
    for channel, payload in (("Engines", ""), ("1st", ""), ("a-b", ""), ("x" * 64, ""),
                             ("ok", "é" * (MAX_PAYLOAD_BYTES // 2 + 1)), ("ok", "a\x00")):
        with pytest.raises(ValueError):
            await db.write(notifying((channel, payload)))
    with pytest.raises(ValueError):
        db.listen("Bad")
    assert db.write_fault is None


@pytest.mark.asyncio
async def test_closing_the_database_ends_every_listener(db: Database, other: Database) -> None:
    async with other.listen("engines") as feed:
        await other.close()
        with pytest.raises(StopAsyncIteration):
            await next_notice(feed)


@pytest.mark.asyncio
async def test_a_listener_too_slow_to_keep_up_gets_one_gap(db: Database, other: Database) -> None:
    async with other.listen("engines", max_queued=10) as slow, \
            other.listen("engines") as watch:
        await db.write(notifying(*(("engines", str(n)) for n in range(15))))
        await db.write(notifying(("engines", "after")))
        while (await next_notice(watch)).payload != "after":
            pass  # delivered to both in one go: `slow` has had every notice too
        seen = [await next_notice(slow) for _ in range(slow.pending())]
        assert seen == [Notice("engines", gap=True),  # 0..9 read by nobody, 10 overflowed
                        *(Notice("engines", str(n)) for n in range(11, 15)),
                        Notice("engines", "after")]


@pytest.mark.asyncio
async def test_a_dropped_listen_connection_reconnects_and_reports_a_gap(
        db: Database, other: Database, store_url: str | None) -> None:
    if store_url is None:
        pytest.skip("SQLite delivers in the process: no connection to drop")
    async with other.listen("engines") as feed:
        with psycopg.connect(store_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'ctsd-listen' AND datname = current_database()"
            ).fetchone()
        assert killed is not None and killed[0] == 1  # `db` never listened
        assert await next_notice(feed) == Notice("engines", gap=True)
        await db.write(notifying(("engines", "after")))
        assert await next_notice(feed) == Notice("engines", "after")


@pytest.mark.asyncio
async def test_listening_on_an_unreachable_server_is_unavailable(tmp_path: Path,
                                                                 store_url: str | None) -> None:
    if store_url is None:
        pytest.skip("a SQLite file has no server")
    db = await Database.open(tmp_path, store_url)
    try:
        name = urlsplit(store_url).path.lstrip("/")
        with psycopg.connect(database_url(store_url, "postgres"), autocommit=True) as admin:
            admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")  # dropped after
        with pytest.raises(Unavailable, match="unreachable"):
            async with db.listen("engines"):
                pass
    finally:
        await db.close()


@pytest.mark.asyncio
async def test_a_second_listener_entering_while_the_first_waits_is_listening_once_entered(
        db: Database, other: Database) -> None:
    """The second of two listeners to one channel, entered while the first still waits
    for LISTEN, must wait for it too: a notice committed once it entered reaches it."""
    first, second = other.listen("engines"), other.listen("engines")
    entering = asyncio.ensure_future(first.__aenter__())
    await asyncio.sleep(0)  # the first has asked for LISTEN and waits
    async with second:
        await db.write(notifying(("engines", "x")))
        assert await next_notice(second) == Notice("engines", "x")
        await entering
        await first.__aexit__(None, None, None)


@pytest.mark.asyncio
async def test_closing_while_a_listener_enters_tells_it_so(db: Database, other: Database) -> None:
    """Not a CancelledError in a task nobody cancelled: Unavailable, or an ended feed."""
    feed = other.listen("engines")
    entering = asyncio.ensure_future(feed.__aenter__())
    await asyncio.sleep(0)
    await other.close()
    try:
        await entering
    except Unavailable as exc:
        assert "closed" in str(exc)
    else:
        with pytest.raises(StopAsyncIteration):
            await next_notice(feed)
