"""The database file: private, WAL, migrated to the current schema, one writer lock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ctsd.errors import ConfigurationError
from ctsd.store.database import Database, Transaction
from ctsd.store.migrations import SCHEMA_VERSION


@pytest.mark.asyncio
async def test_open_creates_private_wal_database_at_current_version(tmp_path: Path) -> None:
    db = await Database.open(tmp_path)
    try:
        assert await db.schema_version() == SCHEMA_VERSION
        assert await db.integrity_check() == "ok"
        mode = await db.fetch_one("PRAGMA journal_mode")
        assert mode == ("wal",)
    finally:
        await db.close()
    assert ((tmp_path / "ctsd.db").stat().st_mode & 0o777) == 0o600


@pytest.mark.asyncio
async def test_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    db = await Database.open(tmp_path)
    try:
        def unit(tx: Transaction) -> None:
            tx.execute(
                "INSERT INTO connections (id, display_name, exchange, api_type, testnet, "
                "margin_mode, position_mode, market_data_method, enabled, predefined, "
                "created_us, updated_us, revision) "
                "VALUES ('x', 'x', 'binance', 'spot', 0, 'cross', 'one_way', 'rest', "
                "0, 0, 0, 0, 1)"
            )
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await db.write(unit)
        assert await db.fetch_all("SELECT id FROM connections") == []
    finally:
        await db.close()


@pytest.mark.asyncio
async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "ctsd.db") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigurationError, match="newer than this ctsd"):
        await Database.open(tmp_path)


@pytest.mark.asyncio
async def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "ctsd.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigurationError, match="cannot open database"):
        await Database.open(tmp_path)
