"""`ctsd migrate`: brings the database's schema to this ctsd's, once, on purpose.

A daemon makes an empty database itself, and migrates its own SQLite file at
start. A PostgreSQL database at an older version is shared by daemons of that
version: the daemon refuses it (exit 78), and the operator upgrades it with
this command after stopping them (docs/operations.md, "PostgreSQL store").
"""

from __future__ import annotations

from ctsd.config import DaemonConfig
from ctsd.instance_lock import InstanceLock
from ctsd.store.database import Database
from ctsd.store.migrations import SCHEMA_VERSION


async def run_migration(config: DaemonConfig) -> str:
    """What was done, in one line."""
    lock = None
    if config.store.url is None:  # the file's daemon must not run meanwhile
        lock = InstanceLock(config.state_dir)
        lock.acquire("migrate")
    try:
        db = await Database.open(config.state_dir, config.store.url, upgrade=True)
        try:
            found = db.found_version
            if found == SCHEMA_VERSION:
                return f"database {db.where}: schema version {found}, nothing to do"
            return f"database {db.where}: schema version {found} -> {SCHEMA_VERSION}"
        finally:
            await db.close()
    finally:
        if lock is not None:
            lock.release()
