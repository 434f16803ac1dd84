"""Every decoded table read through once: what VerifyStartup reports as damaged rows."""

from __future__ import annotations

from ctsd.store.connections import audit_connections
from ctsd.store.database import Database
from ctsd.store.engine_requests import audit_requests
from ctsd.store.engine_statuses import SqlStatusStore
from ctsd.store.engines import audit_engine_rows
from ctsd.store.fleet import SqlFleetStore
from ctsd.store.quarantine import QuarantinedRow
from ctsd.store.result_history import audit_results


async def audit_rows(db: Database) -> list[QuarantinedRow]:
    """Quarantines every row that does not decode; returns all quarantined so far."""
    await audit_connections(db)
    await audit_results(db)
    await audit_engine_rows(db)
    await SqlFleetStore(db).view(0)  # members and leases: decoded through the quarantine
    await SqlStatusStore(db).load()
    await audit_requests(db)
    return db.quarantine.rows
