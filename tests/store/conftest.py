"""The store's tests run on both backends: `db` is a fresh SQLite file, then a fresh
PostgreSQL database (`store_url`, tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from ctsd.store.database import Database


@pytest_asyncio.fixture
async def db(tmp_path: Path, store_url: str | None) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path, store_url)
    try:
        yield database
    finally:
        await database.close()


@pytest_asyncio.fixture
async def other(tmp_path: Path, store_url: str | None, db: Database) -> AsyncIterator[Database]:
    """A second `Database` on `db`'s store: another daemon of the fleet."""
    second = await Database.open(tmp_path, store_url)
    try:
        yield second
    finally:
        await second.close()
