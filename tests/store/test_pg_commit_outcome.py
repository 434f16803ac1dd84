"""A PostgreSQL connection lost between COMMIT and its answer (a real network cut, at a
proxy): the writer asks the server what became of the transaction. Committed: the write
succeeds and the read model has it. Not committed: UNAVAILABLE, neither the rows nor the
read model have it. Either way the next write works, and the read model equals one
rebuilt from the rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from ctsd.errors import Unavailable
from ctsd.store.connections import ConnectionRepository
from ctsd.store.database import Database
from tests.store.test_connection_index import conn
from tests.support.pg_databases import PgDatabases
from tests.support.pg_proxy import CommitCutter


@pytest_asyncio.fixture
async def proxied(tmp_path: Path, pg_databases: PgDatabases,
                  ) -> AsyncIterator[tuple[Database, CommitCutter]]:
    url = await pg_databases.fresh()
    cutter = await CommitCutter(pg_databases.server_url).start()
    db = await Database.open(tmp_path, cutter.url(url))
    try:
        yield db, cutter
    finally:
        await db.close()
        await cutter.close()
        await pg_databases.drop(url)


async def _agrees(db: Database, repo: ConnectionRepository) -> list[str]:
    await repo.insert(conn("next"), "", [])  # the writer is usable
    fresh = {c.id for c in await ConnectionRepository(db).all()}
    served = {c.id for c in await repo.all()}
    return [] if fresh == served else [f"rows {sorted(fresh)} != read model {sorted(served)}"]


@pytest.mark.asyncio
@pytest.mark.parametrize("answered", [True, False], ids=["answer-lost", "commit-lost"])
async def test_a_commit_cut_off_is_resolved_by_asking_the_server(
        proxied: tuple[Database, CommitCutter], answered: bool) -> None:
    """answer-lost: the server committed, so the write succeeds (no UNAVAILABLE for a
    write that happened). commit-lost: it never committed, so UNAVAILABLE and nowhere."""
    db, cutter = proxied
    repo = ConnectionRepository(db)
    await repo.all()
    cutter.arm(answered=answered)
    if answered:
        await repo.insert(conn("a"), "", [])
        assert db.write_fault is None
    else:
        with pytest.raises(Unavailable):
            await repo.insert(conn("a"), "", [])
    assert cutter.cuts == 1
    assert ("a" in {c.id for c in await repo.all()}) is answered
    assert await _agrees(db, repo) == []
