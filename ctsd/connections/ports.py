"""What the connection use cases need from storage, as a Protocol.

The use cases (`manager`, `credentials`, `checks`) are written against this
port, not against `ctsd.store`: the store implements it
(`ctsd.store.connections.ConnectionRepository`, SQLite plus an in-memory read
model) and imports this package's model, never the other way round.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ctsd.connections.checks.results import TestResult
from ctsd.connections.filtering import Condition
from ctsd.connections.model import Connection, CredentialField
from ctsd.vault.sealer import SealedSecret


@dataclass(frozen=True)
class ConnectionPage:
    items: list[Connection]
    next_after: int | None
    """The position to continue after; None on the last page."""
    total: int


class ConnectionStore(Protocol):
    async def get(self, connection_id: str) -> Connection:
        """The connection; NotFound if there is none."""
        ...

    async def list(
        self, conditions: Sequence[Condition], after: int, limit: int
    ) -> ConnectionPage:
        """Up to `limit` connections matching every condition, after position `after`."""
        ...

    async def all(self) -> builtins.list[Connection]:
        """Every connection, in creation order."""
        ...

    async def insert(self, conn: Connection, hint: str, secrets: Iterable[SealedSecret]) -> None:
        """A new connection and its sealed credentials, in one transaction; AlreadyExists
        for a taken id or display name."""
        ...

    async def replace(
        self, conn: Connection, hint: str, expected_revision: int,
        secrets: Iterable[SealedSecret], cleared: Iterable[CredentialField],
    ) -> Connection:
        """`conn` over the stored one if that is still at `expected_revision` (else
        EtagMismatch); returns it as stored."""
        ...

    async def delete(self, connection_id: str, expected_revision: int | None) -> None:
        """Removes the connection and its secrets; None: whatever its revision."""
        ...

    async def sealed_secret(self, connection_id: str, field: CredentialField) -> bytes | None:
        """One sealed credential of the connection, None where it has none."""
        ...

    async def record_test(
        self, connection_ids: Sequence[str], result: TestResult
    ) -> builtins.list[str]:
        """Stores `result` as the last test of each connection, in one transaction;
        returns the ids that still existed."""
        ...
