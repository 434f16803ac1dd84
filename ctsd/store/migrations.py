"""Schema versions, applied in order at start; `PRAGMA user_version` records the last.

Append new steps, never edit old ones: a database in the field is at some
version and must reach the newest by running the steps after it.
"""

from __future__ import annotations

import functools
import sqlite3

from ctsd.errors import ConfigurationError

MIGRATIONS: tuple[str, ...] = (
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
)

SCHEMA_VERSION = len(MIGRATIONS)


@functools.cache
def expected_schema() -> dict[str, frozenset[str]]:
    """Table -> columns, as the migrations build them (on an in-memory database)."""
    conn = sqlite3.connect(":memory:")
    try:
        for script in MIGRATIONS:
            conn.executescript(script)
        return _schema(conn)
    finally:
        conn.close()


def check_schema(conn: sqlite3.Connection) -> None:
    """Every table and column the migrations made is there, or ConfigurationError names
    the first one missing."""
    found = _schema(conn)
    for table, columns in sorted(expected_schema().items()):
        if table not in found:
            raise ConfigurationError(
                f"database schema is damaged: table {table} is missing; restore a backup")
        missing = sorted(columns - found[table])
        if missing:
            raise ConfigurationError(f"database schema is damaged: table {table} lacks "
                                     f"{', '.join(missing)}; restore a backup")


def _schema(conn: sqlite3.Connection) -> dict[str, frozenset[str]]:
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    return {t: frozenset(r[1] for r in conn.execute(f'PRAGMA table_info("{t}")'))
            for t in tables}
