"""Schema versions, applied in order at start; `PRAGMA user_version` records the last.

Append new steps, never edit old ones: a database in the field is at some
version and must reach the newest by running the steps after it.
"""

from __future__ import annotations

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
)

SCHEMA_VERSION = len(MIGRATIONS)
