"""Connections and their sealed credentials, read and written as one unit."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from ctsd.connections.checks.results import TestResult
from ctsd.connections.filtering import Condition
from ctsd.connections.model import (
    ApiType,
    Connection,
    CredentialField,
    CredentialsInfo,
    MarginMode,
    MarketDataMethod,
    PositionMode,
)
from ctsd.connections.ports import ConnectionPage
from ctsd.errors import AlreadyExists, EtagMismatch, NotFound, SealError
from ctsd.store.connection_index import ConnectionIndex
from ctsd.store.database import Database, Row, Transaction
from ctsd.store.result_history import insert_results, latest_results
from ctsd.store.timestamps import from_us, to_us
from ctsd.vault.sealer import SealedSecret

_COLUMNS = (
    "seq, id, display_name, exchange, api_type, testnet, margin_mode, position_mode, "
    "market_data_method, enabled, predefined, api_key_hint, created_us, updated_us, revision, "
    "account_uid"
)
_SECRET_FLAGS = "(SELECT group_concat(field) FROM sealed_secrets s WHERE s.connection_id = c.id)"
_SELECT = f"SELECT {_COLUMNS}, {_SECRET_FLAGS} FROM connections c"


def _to_connection(row: Row) -> Connection:
    stored = set((row[16] or "").split(","))
    return Connection(
        id=row[1],
        display_name=row[2],
        exchange=row[3],
        api_type=ApiType(row[4]),
        testnet=bool(row[5]),
        margin_mode=MarginMode(row[6]),
        position_mode=PositionMode(row[7]),
        market_data_method=MarketDataMethod(row[8]),
        enabled=bool(row[9]),
        predefined=bool(row[10]),
        credentials=CredentialsInfo(
            api_key_set=CredentialField.API_KEY.value in stored,
            api_key_hint=row[11],
            api_secret_set=CredentialField.API_SECRET.value in stored,
            passphrase_set=CredentialField.PASSPHRASE.value in stored,
        ),
        created_at=from_us(row[12]),
        updated_at=from_us(row[13]),
        revision=row[14],
        account_uid=row[15],
    )


def _seq_and_connection(row: Row) -> tuple[int, Connection]:
    return int(row[0]), _to_connection(row)


def _row_values(conn: Connection, hint: str) -> tuple[Any, ...]:
    return (
        conn.display_name,
        conn.exchange,
        conn.api_type.value,
        int(conn.testnet),
        conn.margin_mode.value,
        conn.position_mode.value,
        conn.market_data_method.value,
        int(conn.enabled),
        int(conn.predefined),
        hint,
        to_us(conn.created_at),
        to_us(conn.updated_at),
        conn.revision,
    )


class ConnectionRepository:
    """`ConnectionStore` on SQLite: writes go to the database; reads come from an index
    updated after each commit."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._index: ConnectionIndex | None = None
        self._load_lock = asyncio.Lock()

    async def _loaded(self) -> ConnectionIndex:
        """Loads every row once, on first use; later reads never touch SQLite."""
        if self._index is None:
            async with self._load_lock:
                if self._index is None:
                    index = ConnectionIndex()
                    tests = await latest_results(self._db)
                    rows = await self._db.fetch_all(f"{_SELECT} ORDER BY seq")
                    for seq, conn in self._db.quarantine.decoded(
                            "connections", rows, _seq_and_connection, key=lambda r: r[1]):
                        index.put(seq, replace(conn, last_test=tests.get(conn.id)))
                    self._index = index
        return self._index

    async def get(self, connection_id: str) -> Connection:
        conn = (await self._loaded()).get(connection_id)
        if conn is None:
            raise NotFound(f"connection {connection_id!r} not found")
        return conn

    async def list(
        self, conditions: Sequence[Condition], after: int, limit: int
    ) -> ConnectionPage:
        index = await self._loaded()
        items, next_after = index.page(conditions, after, limit)
        return ConnectionPage(items, next_after, index.count(conditions))

    async def insert(self, conn: Connection, hint: str, secrets: Iterable[SealedSecret]) -> None:
        index = await self._loaded()
        secrets = tuple(secrets)

        def unit(tx: Transaction) -> int:
            _check_unique(tx, conn.id, conn.display_name, check_id=True)
            seq = tx.insert(
                "INSERT INTO connections (id, display_name, exchange, api_type, testnet, "
                "margin_mode, position_mode, market_data_method, enabled, predefined, "
                "api_key_hint, created_us, updated_us, revision) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conn.id, *_row_values(conn, hint)),
            )
            _put_secrets(tx, conn.id, secrets)
            return seq

        await self._db.write(unit, lambda seq: index.put(seq, conn))

    async def replace(
        self,
        conn: Connection,
        hint: str,
        expected_revision: int,
        secrets: Iterable[SealedSecret],
        cleared: Iterable[CredentialField],
    ) -> Connection:
        """Writes `conn` over the row if it is still at `expected_revision`; returns it as
        stored.

        A new or cleared API key, or a switch to or from testnet, forgets the account
        UID: it belonged to the old key's account, and the next test learns it again.
        """
        index = await self._loaded()
        secrets, cleared = tuple(secrets), tuple(cleared)
        new_key = CredentialField.API_KEY in cleared or any(
            s.field == CredentialField.API_KEY.value for s in secrets)

        def unit(tx: Transaction) -> str | None:
            _check_unique(tx, conn.id, conn.display_name, check_id=False)
            changed = tx.execute(
                "UPDATE connections SET display_name = ?, exchange = ?, api_type = ?, "
                "testnet = ?, margin_mode = ?, position_mode = ?, market_data_method = ?, "
                "enabled = ?, predefined = ?, api_key_hint = ?, created_us = ?, "
                "updated_us = ?, revision = ?, account_uid = CASE WHEN ? OR testnet != ? "
                "THEN NULL ELSE account_uid END WHERE id = ? AND revision = ?",
                (*_row_values(conn, hint), int(new_key), int(conn.testnet), conn.id,
                 expected_revision),
            )
            if changed == 0:
                _raise_missing_or_stale(tx, conn.id)
            _put_secrets(tx, conn.id, secrets)
            for cred in cleared:
                tx.execute(
                    "DELETE FROM sealed_secrets WHERE connection_id = ? AND field = ?",
                    (conn.id, cred.value),
                )
            uid = tx.fetch_one("SELECT account_uid FROM connections WHERE id = ?", (conn.id,))
            return uid[0] if uid else None

        written: list[Connection] = []

        def publish(uid: str | None) -> None:
            # `conn` was read before this commit; a test may have finished since.
            stored = index.get(conn.id)
            written.append(replace(
                conn, last_test=stored.last_test if stored else conn.last_test,
                account_uid=uid))
            index.replace(written[0])

        await self._db.write(unit, publish)
        return written[0]

    async def record_test(
        self, connection_ids: Sequence[str], result: TestResult
    ) -> builtins.list[str]:
        """Stores `result` as the last test of each connection, in one transaction.

        The account UID the test learned goes on the row as the test does: without a
        new revision (etags stay valid), since the connection's settings did not change.
        Returns the ids written: a connection deleted meanwhile is skipped.
        """
        index = await self._loaded()
        uid = result.account_uid
        connection_ids = tuple(connection_ids)

        def unit(tx: Transaction) -> builtins.list[str]:
            written = insert_results(tx, connection_ids, result)
            if uid is not None:
                tx.executemany("UPDATE connections SET account_uid = ? WHERE id = ?",
                               [(uid, connection_id) for connection_id in written])
            return written

        kept = replace(result, account_uid=None)  # as the row keeps it: the UID is the row's

        def publish(written: builtins.list[str]) -> None:
            for connection_id in written:
                conn = index.get(connection_id)
                if conn is not None:
                    index.replace(replace(conn, last_test=kept,
                                          account_uid=uid or conn.account_uid))

        return await self._db.write(unit, publish)

    async def all(self) -> builtins.list[Connection]:
        """Every connection in creation order, from the index."""
        index = await self._loaded()
        items, _ = index.page((), 0, len(index) + 1)
        return items

    async def delete(self, connection_id: str, expected_revision: int | None) -> None:
        index = await self._loaded()

        def unit(tx: Transaction) -> None:
            if expected_revision is None:
                changed = tx.execute("DELETE FROM connections WHERE id = ?", (connection_id,))
            else:
                changed = tx.execute(
                    "DELETE FROM connections WHERE id = ? AND revision = ?",
                    (connection_id, expected_revision),
                )
            if changed == 0:
                _raise_missing_or_stale(tx, connection_id)

        await self._db.write(unit, lambda _: index.remove(connection_id))

    async def sealed_secret(self, connection_id: str, field: CredentialField) -> bytes | None:
        row = await self._db.fetch_one(
            "SELECT blob FROM sealed_secrets WHERE connection_id = ? AND field = ?",
            (connection_id, field.value),
        )
        if row is None:
            return None
        if not isinstance(row[0], bytes):  # the column takes any type: an altered row
            raise SealError(f"the stored {field.value} of connection {connection_id} is a "
                            f"{type(row[0]).__name__}, not a sealed blob")
        return row[0]


def _check_unique(tx: Transaction, conn_id: str, display_name: str, *, check_id: bool) -> None:
    if check_id and tx.fetch_one("SELECT 1 FROM connections WHERE id = ?", (conn_id,)):
        raise AlreadyExists(f"connection {conn_id!r} already exists")
    clash = tx.fetch_one(
        "SELECT id FROM connections WHERE display_name = ? AND id != ?",
        (display_name, conn_id),
    )
    if clash:
        raise AlreadyExists(f"display name {display_name!r} is taken by connections/{clash[0]}")


def _put_secrets(tx: Transaction, connection_id: str, secrets: Iterable[SealedSecret]) -> None:
    tx.executemany(
        "INSERT INTO sealed_secrets (connection_id, field, key_id, blob) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (connection_id, field) DO UPDATE SET key_id = excluded.key_id, "
        "blob = excluded.blob",
        [(connection_id, s.field, s.key_id.hex(), s.blob) for s in secrets],
    )


def _raise_missing_or_stale(tx: Transaction, connection_id: str) -> None:
    if tx.fetch_one("SELECT 1 FROM connections WHERE id = ?", (connection_id,)):
        raise EtagMismatch(
            f"connection {connection_id!r} changed since it was read; get it again and retry"
        )
    raise NotFound(f"connection {connection_id!r} not found")


async def audit_connections(db: Database) -> None:
    """Every row decoded once more, so a damaged one is quarantined (VerifyStartup)."""
    rows = await db.fetch_all(f"{_SELECT} ORDER BY seq")
    await db.quarantine.audit("connections", rows, _seq_and_connection, key=lambda r: r[1])
