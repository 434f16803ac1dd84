"""A rotation cancelled at each of its await points (SIGINT cancels `asyncio.run`'s task):
the next start finds every secret open under the key it then uses.

The process-level form, with SIGINT, SIGTERM and SIGKILL at random instants over
thousands of secrets, is `tests/robustness/test_rotation_signals.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ctsd.connections.model import CredentialField
from ctsd.store.connections import ConnectionRepository
from ctsd.store.database import Database
from ctsd.store.sealed_secrets import SealedSecretRepository
from ctsd.vault.keyring_setup import open_keyring
from ctsd.vault.master_key import locate_key
from ctsd.vault.rotation import rotate_master_key
from tests.store.test_connection_index import conn
from tests.support.cancel_points import Outcome, explore, report
from tests.support.pg_databases import PgDatabases

FIELDS = ("api_key", "api_secret")


async def seeded(state: Path, url: str | None) -> dict[tuple[str, str], str]:
    db = await Database.open(state, url)
    try:
        keyring = await open_keyring(locate_key(state, None, env={}), SealedSecretRepository(db))
        repo = ConnectionRepository(db)
        plain = {}
        for n in range(5):
            cid = f"c{n}"
            plain.update({(cid, f): f"{f}-{n}" for f in FIELDS})
            await repo.insert(conn(cid), "", [keyring.seal(cid, f, f"{f}-{n}") for f in FIELDS])
    finally:
        await db.close()
    return plain


async def rotation(state: Path, url: str | None) -> object:
    db = await Database.open(state, url)
    try:
        secrets = SealedSecretRepository(db)
        source = locate_key(state, None, env={})
        return await rotate_master_key(source, await open_keyring(source, secrets), secrets, None)
    finally:
        await db.close()


async def next_start(state: Path, url: str | None,
                     plain: dict[tuple[str, str], str]) -> list[str]:
    """What the daemon's start does with the state dir, then every secret opened."""
    db = await Database.open(state, url)
    try:
        keyring = await open_keyring(locate_key(state, None, env={}), SealedSecretRepository(db))
        repo = ConnectionRepository(db)
        lost = []
        for (cid, field), text in plain.items():
            blob = await repo.sealed_secret(cid, CredentialField(field))
            if blob is None or keyring.open(cid, field, blob) != text:
                lost.append(f"{cid}/{field}")
        return lost
    except Exception as exc:
        return [f"the next start failed: {type(exc).__name__}: {exc}"]
    finally:
        await db.close()


@pytest.mark.asyncio
async def test_a_rotation_cancelled_anywhere_loses_no_secret(
        tmp_path: Path, store_url: str | None, request: pytest.FixtureRequest) -> None:
    """On the SQLite file and on PostgreSQL: each run its own state dir (the key) and, on
    PostgreSQL, its own database."""
    plains: dict[int, dict[tuple[str, str], str]] = {}
    urls: dict[int, str | None] = {0: store_url}
    databases: PgDatabases | None = (
        None if store_url is None else request.getfixturevalue("pg_databases"))

    async def make(run: int) -> object:
        return await rotation(tmp_path / f"s{run}", urls[run])

    async def fresh(run: int) -> Path:
        state = tmp_path / f"s{run}"
        state.mkdir()
        if run not in urls:
            urls[run] = None if databases is None else await databases.fresh()
        return state

    async def check(run: int, outcome: Outcome) -> list[str]:
        plains[run + 1] = await seeded(await fresh(run + 1), urls[run + 1])
        if outcome.error is not None:
            return [f"error {type(outcome.error).__name__}: {outcome.error}"]
        return await next_start(tmp_path / f"s{run}", urls[run], plains[run])

    try:
        plains[0] = await seeded(await fresh(0), urls[0])
        found = await explore("rotate-key", make, check)
    finally:
        if databases is not None:
            for url in list(urls.values())[1:]:
                assert url is not None
                await databases.drop(url)
    report(f"rotate-key ({'sqlite' if store_url is None else 'postgresql'})", [found])
    assert found.cancelled >= 5
    assert not found.problems
