"""Damaged engine request rows (migration 9), in-process on both backends: every way
of `tests.support.damaged_requests`, then what the daemon does with those rows.

- the start-up audit (`audit_rows`) quarantines the damaged row, and only that one;
- the member's scan (`claim`) takes the healthy requests, quarantines a damaged one and
  answers it UNAVAILABLE in the same unit (its sender hears at once) -- never raising;
- the sender's read of every row answers the status, a `CtsError` (what the API turns
  into a deliberate code) or nothing -- never another error, which would be INTERNAL.

The daemon-level corpora (tests/robustness/test_corrupt_databases*.py) start a daemon
on a few of the same damages.
"""

from __future__ import annotations

import pytest

from ctsd.errors import CtsError, Unavailable
from ctsd.store.audit import audit_rows
from ctsd.store.database import Database
from ctsd.store.engine_requests import SqlRequestStore
from ctsd.store.quarantine import Quarantine
from tests.support.damaged_requests import DAMAGE, SEEDED, SQLITE_DAMAGE, seed_requests

TARGET = "m"


async def one_case(db: Database, damaged: str, statement: str) -> list[str]:
    """Seeds fresh rows, damages them, and lists what went wrong."""
    await db.write(lambda tx: tx.execute("DELETE FROM engine_requests"))
    db.quarantine = Quarantine()
    await seed_requests(db, TARGET)
    await db.write(lambda tx: tx.execute(statement))
    problems: list[str] = []
    quarantined = {r.key for r in await audit_rows(db) if r.table == "engine_requests"}
    if not quarantined or (damaged != "?" and quarantined != {damaged}):
        problems.append(f"the audit quarantined {sorted(quarantined)}")
    store = SqlRequestStore(db)
    try:
        taken = {r.id for r in await store.claim(TARGET, 3_600_000)}
    except Exception as exc:
        return [*problems, f"the scan raised {type(exc).__name__}: {exc}"]
    if taken - {"req-sent"} or (damaged not in ("req-sent", "?") and not taken):
        problems.append(f"the scan took {sorted(taken)}")  # a damaged time still runs
    for request_id in SEEDED:
        try:
            found = await store.read(request_id)
        except Exception as exc:
            problems.append(f"read {request_id} raised {type(exc).__name__}: {exc}")
            continue
        if request_id == damaged == "req-sent" and request_id not in taken and not (
                found and found[1] and isinstance(found[1].error, Unavailable)):
            problems.append(f"the damaged request, taken, is left {found}")
        answer = None if found is None else found[1]
        if answer and answer.error is not None and not isinstance(answer.error, CtsError):
            problems.append(f"read {request_id} answers {type(answer.error).__name__}")
    return problems


@pytest.mark.asyncio
async def test_damaged_request_rows_are_quarantined_and_never_raise(db: Database) -> None:
    cases = dict(DAMAGE) | (SQLITE_DAMAGE if db.kind == "sqlite" else {})
    found = {name: await one_case(db, *case) for name, case in cases.items()}
    assert not {name: problems for name, problems in found.items() if problems}
