"""A fresh database per test, opened (and migrated) as the daemon opens it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from ctsd.store.database import Database


@pytest_asyncio.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path)
    try:
        yield database
    finally:
        await database.close()
