"""Bulk access to sealed blobs, for key rotation and start-up key checks."""

from __future__ import annotations

from collections.abc import Callable

from ctsd.store.database import Database, Transaction
from ctsd.vault.ports import StoredBlob


class SealedSecretRepository:
    """`ctsd.vault.ports.SealedSecretStore` on SQLite."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def key_ids(self) -> set[str]:
        rows = await self._db.fetch_all("SELECT DISTINCT key_id FROM sealed_secrets")
        return {str(r[0]) for r in rows}

    async def count(self) -> int:
        row = await self._db.fetch_one("SELECT count(*) FROM sealed_secrets")
        return int(row[0]) if row else 0

    async def reseal_all(self, reseal: Callable[[StoredBlob], tuple[str, bytes]]) -> int:
        """Replaces every blob by `reseal(blob)` -> (key_id, blob) in one transaction.

        If `reseal` raises for any blob, nothing is changed.
        """

        def unit(tx: Transaction) -> int:
            rows = tx.fetch_all("SELECT connection_id, field, key_id, blob FROM sealed_secrets")
            updates = []
            for row in rows:
                stored = StoredBlob(row[0], row[1], row[2], bytes(row[3]))
                key_id, blob = reseal(stored)
                updates.append((key_id, blob, stored.connection_id, stored.field))
            tx.executemany(
                "UPDATE sealed_secrets SET key_id = ?, blob = ? "
                "WHERE connection_id = ? AND field = ?",
                updates,
            )
            return len(updates)

        return await self._db.write(unit)
