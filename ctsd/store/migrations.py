"""Schema versions, applied in order at start; the database records the last
(SQLite: `PRAGMA user_version`; PostgreSQL: the table `ctsd_schema`).

Append new steps, never edit old ones: a database in the field is at some
version and must reach the newest by running the steps after it.

A step is written once in SQLite's DDL and `pg_ddl` turns it into PostgreSQL's
(`INTEGER PRIMARY KEY AUTOINCREMENT` -> an identity column, `INTEGER` ->
`BIGINT`, `BLOB` -> `BYTEA`); a step the two must spell differently is a
`Migration(sqlite=..., postgresql=...)`. Both must make the same tables and
columns (`check_schema` holds either to the SQLite one).
"""

from __future__ import annotations

import functools
import re
import sqlite3
from dataclasses import dataclass

from ctsd.errors import ConfigurationError


@dataclass(frozen=True)
class Migration:
    """A step spelled per dialect."""

    sqlite: str
    postgresql: str


MIGRATIONS: tuple[str | Migration, ...] = (
    # 1: connections and their sealed credentials
    """
    CREATE TABLE connections (
        seq                INTEGER PRIMARY KEY AUTOINCREMENT,
        id                 TEXT    NOT NULL UNIQUE,
        display_name       TEXT    NOT NULL UNIQUE,
        exchange           TEXT    NOT NULL,
        api_type           TEXT    NOT NULL,
        testnet            INTEGER NOT NULL,
        margin_mode        TEXT    NOT NULL,
        position_mode      TEXT    NOT NULL,
        market_data_method TEXT    NOT NULL,
        enabled            INTEGER NOT NULL,
        predefined         INTEGER NOT NULL,
        api_key_hint       TEXT    NOT NULL DEFAULT '',
        created_us         INTEGER NOT NULL,
        updated_us         INTEGER NOT NULL,
        revision           INTEGER NOT NULL
    );
    CREATE INDEX connections_exchange ON connections (exchange, api_type);
    CREATE TABLE sealed_secrets (
        connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
        field         TEXT NOT NULL CHECK (field IN ('api_key', 'api_secret', 'passphrase')),
        key_id        TEXT NOT NULL,
        blob          BLOB NOT NULL,
        PRIMARY KEY (connection_id, field)
    );
    """,
    # 2: connection test history, the newest row of each connection is its last test
    """
    CREATE TABLE connection_tests (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        connection_id TEXT    NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
        started_us    INTEGER NOT NULL,
        status        TEXT    NOT NULL,
        failure_class TEXT    NOT NULL DEFAULT '',
        result        TEXT    NOT NULL
    );
    CREATE INDEX connection_tests_by_connection ON connection_tests (connection_id, seq);
    CREATE INDEX connection_tests_by_time ON connection_tests (started_us);
    """,
    # 3: trade engines: desired state per connection, their orders and fills.
    # No foreign key to connections: an engine's trades outlive a deleted connection
    # for the record, and a resume on a vanished connection fails visibly instead.
    """
    CREATE TABLE engines (
        connection_id TEXT    PRIMARY KEY,
        engine_id     TEXT    NOT NULL,
        config        TEXT    NOT NULL,
        desired       TEXT    NOT NULL,
        cycle         INTEGER NOT NULL,
        last_error    TEXT    NOT NULL DEFAULT '',
        updated_us    INTEGER NOT NULL
    );
    CREATE TABLE engine_orders (
        seq               INTEGER PRIMARY KEY AUTOINCREMENT,
        connection_id     TEXT    NOT NULL,
        client_order_id   TEXT    NOT NULL,
        symbol            TEXT    NOT NULL,
        side              TEXT    NOT NULL,
        type              TEXT    NOT NULL,
        amount            TEXT    NOT NULL,
        price             TEXT,
        tag               TEXT    NOT NULL,
        cycle             INTEGER NOT NULL,
        status            TEXT    NOT NULL,
        filled            TEXT    NOT NULL,
        average_price     TEXT,
        fee               TEXT    NOT NULL,
        exchange_order_id TEXT    NOT NULL,
        reason            TEXT    NOT NULL,
        created_ms        INTEGER NOT NULL,
        updated_ms        INTEGER NOT NULL,
        UNIQUE (connection_id, client_order_id)
    );
    CREATE INDEX engine_orders_by_status ON engine_orders (connection_id, status);
    CREATE TABLE engine_fills (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        connection_id   TEXT    NOT NULL,
        trade_id        TEXT    NOT NULL,
        client_order_id TEXT    NOT NULL,
        symbol          TEXT    NOT NULL,
        side            TEXT    NOT NULL,
        amount          TEXT    NOT NULL,
        price           TEXT    NOT NULL,
        fee             TEXT    NOT NULL,
        fee_asset       TEXT    NOT NULL,
        timestamp_ms    INTEGER NOT NULL,
        maker           INTEGER NOT NULL,
        UNIQUE (connection_id, trade_id)
    );
    """,
    # 4: the account (UID) a connection's key belongs to, learned by its tests where the
    # exchange counts limits per UID. NULL until learned; not part of the revision.
    """
    ALTER TABLE connections ADD COLUMN account_uid TEXT;
    """,
    # 5: an engine's orders and fills page by their position (ListOrders, ListTrades)
    """
    CREATE INDEX engine_orders_by_connection ON engine_orders (connection_id, seq);
    CREATE INDEX engine_fills_by_connection ON engine_fills (connection_id, seq);
    """,
    # 6: perpetuals: an order's reduce-only flag and position side (hedge mode), a fill's
    # position side, and the funding payments an engine booked (one row per venue id).
    """
    ALTER TABLE engine_orders ADD COLUMN reduce_only INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE engine_orders ADD COLUMN position_side TEXT NOT NULL DEFAULT 'both';
    ALTER TABLE engine_fills ADD COLUMN position_side TEXT NOT NULL DEFAULT 'both';
    CREATE TABLE engine_funding (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        connection_id TEXT    NOT NULL,
        funding_id    TEXT    NOT NULL,
        symbol        TEXT    NOT NULL,
        amount        TEXT    NOT NULL,
        asset         TEXT    NOT NULL,
        timestamp_ms  INTEGER NOT NULL,
        UNIQUE (connection_id, funding_id)
    );
    """,
    # 7: spot margin: a booked payment is funding or interest on a loan.
    """
    ALTER TABLE engine_funding ADD COLUMN kind TEXT NOT NULL DEFAULT 'funding';
    """,
    # 8: a fleet of daemons on one database: its members, one lease per engine (the owner
    # and a fencing token that grows with every change of owner), the token each
    # order's PENDING record was written under, and each engine's latest status as its
    # owner published it (JSON), for the other members. Times are the database's clock.
    """
    CREATE TABLE fleet_members (
        id             TEXT    PRIMARY KEY,
        address        TEXT    NOT NULL,
        version        TEXT    NOT NULL,
        schema_version INTEGER NOT NULL,
        started_ms     INTEGER NOT NULL,
        heartbeat_ms   INTEGER NOT NULL,
        draining       INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE engine_leases (
        connection_id TEXT    PRIMARY KEY,
        owner         TEXT    NOT NULL,
        token         INTEGER NOT NULL,
        expires_ms    INTEGER NOT NULL,
        acquired_ms   INTEGER NOT NULL
    );
    CREATE INDEX engine_leases_by_owner ON engine_leases (owner);
    ALTER TABLE engine_orders ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE engine_statuses (
        connection_id TEXT    PRIMARY KEY,
        owner         TEXT    NOT NULL,
        status        TEXT    NOT NULL,
        version       INTEGER NOT NULL,
        updated_ms    INTEGER NOT NULL
    );
    """,
    # 9: a fleet's engine requests: a StartEngine placed on another member by load, or a
    # StopEngine sent to the engine's owner; the addressee takes the row ('sent' ->
    # 'taken'), runs the call and writes its answer (status or error, JSON; 'done').
    """
    CREATE TABLE engine_requests (
        id            TEXT    PRIMARY KEY,
        connection_id TEXT    NOT NULL,
        target        TEXT    NOT NULL,
        kind          TEXT    NOT NULL,
        config        TEXT    NOT NULL,
        created_ms    INTEGER NOT NULL,
        state         TEXT    NOT NULL DEFAULT 'sent',
        answer        TEXT    NOT NULL DEFAULT ''
    );
    CREATE INDEX engine_requests_by_target ON engine_requests (target, state);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)

_PG_TYPES = (
    (re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b"),
     "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
)
"""Type names are matched in capitals only: a column may be called `blob`."""


def pg_ddl(script: str) -> str:
    """SQLite's DDL of a step as PostgreSQL's (see the module docstring)."""
    for pattern, replacement in _PG_TYPES:
        script = pattern.sub(replacement, script)
    return script


def scripts(dialect: str) -> list[str]:
    """Every step's script in `dialect` ("sqlite" or "postgresql"), in order."""
    found = []
    for step in MIGRATIONS:
        if isinstance(step, Migration):
            found.append(step.sqlite if dialect == "sqlite" else step.postgresql)
        else:
            found.append(step if dialect == "sqlite" else pg_ddl(step))
    return found


def refuse_newer(version: int) -> None:
    """A database a newer ctsd made is never touched: its steps are unknown here."""
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"database schema version {version} is newer than this ctsd's "
            f"({SCHEMA_VERSION}); upgrade ctsd (never migrate a database backwards)")


@functools.cache
def expected_schema() -> dict[str, frozenset[str]]:
    """Table -> columns, as the migrations build them (on an in-memory database)."""
    conn = sqlite3.connect(":memory:")
    try:
        for script in scripts("sqlite"):
            conn.executescript(script)
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%'")]
        return {t: frozenset(r[1] for r in conn.execute(f'PRAGMA table_info("{t}")'))
                for t in tables}
    finally:
        conn.close()


def check_schema(found: dict[str, frozenset[str]]) -> None:
    """Every table and column the migrations made is in `found` (table -> columns), or
    ConfigurationError names the first one missing."""
    for table, columns in sorted(expected_schema().items()):
        if table not in found:
            raise ConfigurationError(
                f"database schema is damaged: table {table} is missing; restore a backup")
        missing = sorted(columns - found[table])
        if missing:
            raise ConfigurationError(f"database schema is damaged: table {table} lacks "
                                     f"{', '.join(missing)}; restore a backup")
