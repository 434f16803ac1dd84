"""The connection domain in process: the real SQLite store and vault, a manager on a fixed clock.

Nothing here runs a daemon: the use cases are called directly, with the parts
they are given in production (`ctsd.wiring.root`) but a clock the test holds
and a set of "connections with an engine" it can fill.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest_asyncio

from ctsd.connections.credentials import CredentialResolver
from ctsd.connections.manager import ConnectionManager
from ctsd.connections.model import ApiType, ConnectionDraft, CredentialsInput
from ctsd.exchanges.registry import ExchangeRegistry
from ctsd.store.connections import ConnectionRepository
from ctsd.store.database import Database
from ctsd.vault.master_key import MasterKey, generate_key
from ctsd.vault.sealer import Keyring

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@dataclass
class Domain:
    repository: ConnectionRepository
    keyring: Keyring
    manager: ConnectionManager
    credentials: CredentialResolver
    engines: set[str] = field(default_factory=set)
    """Connection ids the manager is told an engine runs on."""
    now: list[datetime] = field(default_factory=lambda: [T0])

    def tick(self, seconds: float = 1.0) -> None:
        self.now[0] += timedelta(seconds=seconds)


@pytest_asyncio.fixture
async def domain(tmp_path: Path) -> AsyncIterator[Domain]:
    db = await Database.open(tmp_path)
    repository = ConnectionRepository(db)
    keyring = Keyring(MasterKey(generate_key(), tmp_path / "master-key"))
    engines: set[str] = set()
    now = [T0]
    manager = ConnectionManager(repository, keyring, ExchangeRegistry.default(),
                                clock=lambda: now[0], active_engines=lambda: set(engines))
    try:
        yield Domain(repository, keyring, manager, CredentialResolver(repository, keyring),
                     engines, now)
    finally:
        await db.close()


def draft(name: str = "Main", exchange: str = "binance", **over: object) -> ConnectionDraft:
    """A valid Binance spot draft with a key and secret; `over` replaces fields."""
    fields: dict[str, object] = dict(
        display_name=name, exchange=exchange, api_type=ApiType.SPOT, enabled=True,
        credentials=CredentialsInput(api_key="AKEY-0123456789", api_secret="the-secret"))
    fields.update(over)
    return ConnectionDraft(**fields)  # type: ignore[arg-type]
