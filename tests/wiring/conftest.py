"""An in-process simulator, an exchange client factory pointed at it (plain, or funded with
the rate limits scaled up: `tests/support/market_rig.py`), and an engine store."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from ctsd.store.database import Database
from ctsd.store.engines import SqlEngineStore
from tests.support.exchange_clients import factory, make_client, server
from tests.support.market_rig import funded_factory, funded_server

__all__ = ["factory", "funded_factory", "funded_server", "make_client", "server", "store"]


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlEngineStore]:
    """The engines' store on a real SQLite file of the test's own."""
    database = await Database.open(tmp_path)
    try:
        yield SqlEngineStore(database)
    finally:
        await database.close()
