"""Every decoded table read through once: what VerifyStartup reports as damaged rows."""

from __future__ import annotations

from ctsd.store.connections import audit_connections
from ctsd.store.database import Database
from ctsd.store.engines import audit_engine_rows
from ctsd.store.quarantine import QuarantinedRow
from ctsd.store.result_history import audit_results


async def audit_rows(db: Database) -> list[QuarantinedRow]:
    """Quarantines every row that does not decode; returns all quarantined so far."""
    await audit_connections(db)
    await audit_results(db)
    await audit_engine_rows(db)
    return db.quarantine.rows
