"""The account UID on a connection's row: migrated in, recorded by tests, forgotten with its key."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from ctsd.connections.model import CredentialField
from ctsd.store.connections import ConnectionRepository
from ctsd.store.database import DB_NAME, Database
from ctsd.store.migrations import scripts
from ctsd.vault.sealer import SealedSecret
from tests.store.test_connection_index import conn
from tests.store.test_result_history import result

UID_COLUMN = 4
"""The migration that added `connections.account_uid`."""


async def with_uid(db: Database, uid: str | None = "100000001") -> ConnectionRepository:
    repo = ConnectionRepository(db)
    await repo.insert(conn("a"), "", [])
    await repo.record_test(["a"], replace(result(1), account_uid=uid))
    return repo


def new_key() -> SealedSecret:
    return SealedSecret(CredentialField.API_KEY.value, b"\x01" * 8, b"sealed")


@pytest.mark.asyncio
async def test_a_database_from_before_the_column_upgrades_with_no_uid(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / DB_NAME) as old:
        for script in scripts("sqlite")[:UID_COLUMN - 1]:
            old.executescript(script)
        old.execute(
            "INSERT INTO connections (id, display_name, exchange, api_type, testnet, "
            "margin_mode, position_mode, market_data_method, enabled, predefined, "
            "created_us, updated_us, revision) "
            "VALUES ('old', 'old', 'bybit', 'spot', 0, 'cross', 'one_way', 'rest', 1, 0, 1, 1, 3)")
        old.execute(f"PRAGMA user_version = {UID_COLUMN - 1}")
    old.close()
    database = await Database.open(tmp_path)
    try:
        found = await ConnectionRepository(database).get("old")
        assert found.account_uid is None and found.revision == 3
        row = await database.fetch_one("SELECT account_uid FROM connections WHERE id = 'old'")
        assert row == (None,)
    finally:
        await database.close()


@pytest.mark.asyncio
async def test_a_learned_uid_is_recorded_without_a_new_revision(db: Database) -> None:
    repo = await with_uid(db)
    found = await repo.get("a")
    assert found.account_uid == "100000001"
    assert found.revision == conn("a").revision and found.etag == conn("a").etag
    assert (await ConnectionRepository(db).get("a")).account_uid == "100000001"  # a restart


@pytest.mark.asyncio
async def test_a_test_that_learned_no_uid_keeps_the_known_one(db: Database) -> None:
    repo = await with_uid(db)
    await repo.record_test(["a"], result(2))
    assert (await repo.get("a")).account_uid == "100000001"
    assert (await ConnectionRepository(db).get("a")).account_uid == "100000001"


@pytest.mark.asyncio
async def test_an_update_keeps_the_uid_unless_the_key_or_testnet_changes(db: Database) -> None:
    repo = await with_uid(db)
    before = await repo.get("a")
    renamed = replace(before, display_name="renamed", revision=before.revision + 1)
    await repo.replace(renamed, "", before.revision, [], [])
    assert (await repo.get("a")).account_uid == "100000001"

    rekeyed = replace(renamed, revision=renamed.revision + 1, account_uid="stale")
    await repo.replace(rekeyed, "****cafe", renamed.revision, [new_key()], [])
    assert (await repo.get("a")).account_uid is None  # the index, from the row
    assert (await ConnectionRepository(db).get("a")).account_uid is None

    await repo.record_test(["a"], replace(result(3), account_uid="100000002"))
    current = await repo.get("a")
    to_testnet = replace(current, testnet=True, revision=current.revision + 1)
    await repo.replace(to_testnet, "****cafe", current.revision, [], [])
    assert (await repo.get("a")).account_uid is None


@pytest.mark.asyncio
async def test_clearing_the_key_forgets_the_uid(db: Database) -> None:
    repo = await with_uid(db)
    before = await repo.get("a")
    cleared = replace(before, revision=before.revision + 1)
    await repo.replace(cleared, "", before.revision, [], [CredentialField.API_KEY])
    assert (await repo.get("a")).account_uid is None
