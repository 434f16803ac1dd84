"""Connection test results in the database: a bounded history per connection.

A result is one row: the columns health queries filter on (time, status,
failure class) plus the whole result as JSON, which is only ever read back
whole. Each write keeps the newest `HISTORY_LIMIT` rows of the connection and
drops the rest in the same transaction, so the table cannot grow without
bound and a reader never sees a half-pruned history.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ctsd.connections.checks import results
from ctsd.store.database import Database, Transaction
from ctsd.store.timestamps import from_us, to_us

HISTORY_LIMIT = 20


def _line_json(line: results.LogLine) -> list[Any]:
    return [to_us(line.time), line.level.value, line.step, line.message]


def _line(raw: list[Any]) -> results.LogLine:
    return results.LogLine(from_us(int(raw[0])), results.LogLevel(raw[1]), str(raw[2]), str(raw[3]))


def _balance(raw: list[Any]) -> results.AssetBalance:
    return results.AssetBalance(str(raw[0]), float(raw[1]), float(raw[2]), float(raw[3]),
                                float(raw[4]))


def result_to_json(result: results.TestResult) -> str:
    return json.dumps(
        {
            "status": result.status.value,
            "started_us": to_us(result.started_at),
            "duration_s": result.duration_s,
            "balance_total": result.balance_total,
            "balance_currency": result.balance_currency,
            "log": [_line_json(line) for line in result.log_lines],
            "capabilities": list(result.capabilities),
            "message": result.message,
            "failure_class": result.failure_class.name if result.failure_class else "",
            "remedy": result.remedy,
            "balances": [[b.asset, b.free, b.used, b.total, b.value] for b in result.balances],
            "clock_skew_s": result.clock_skew_s,
            "latency_s": result.latency_s,
        },
        separators=(",", ":"),
    )


def result_from_json(text: str) -> results.TestResult:
    raw = json.loads(text)
    failure = raw.get("failure_class") or ""
    return results.TestResult(
        status=results.TestStatus(raw["status"]),
        started_at=from_us(int(raw["started_us"])),
        duration_s=float(raw["duration_s"]),
        balance_total=float(raw.get("balance_total", 0.0)),
        balance_currency=str(raw.get("balance_currency", "")),
        log_lines=tuple(_line(line) for line in raw.get("log", ())),
        capabilities=tuple(raw.get("capabilities", ())),
        message=str(raw.get("message", "")),
        failure_class=(results.FailureClass[failure]
                       if failure in results.FailureClass.__members__ else None),
        remedy=str(raw.get("remedy", "")),
        balances=tuple(_balance(b) for b in raw.get("balances", ())),
        clock_skew_s=raw.get("clock_skew_s"),
        latency_s=raw.get("latency_s"),
    )


def insert_results(
    tx: Transaction, connection_ids: Iterable[str], result: results.TestResult
) -> list[str]:
    """Appends `result` to each connection that still exists; returns those ids.

    A connection deleted while its test ran is skipped rather than failing the
    write for the others.
    """
    payload = result_to_json(result)
    failure = result.failure_class.name if result.failure_class else ""
    written: list[str] = []
    for connection_id in connection_ids:
        changed = tx.execute(
            "INSERT INTO connection_tests (connection_id, started_us, status, failure_class, "
            "result) SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM connections WHERE id = ?)",
            (
                connection_id,
                to_us(result.started_at),
                result.status.value,
                failure,
                payload,
                connection_id,
            ),
        )
        if changed:
            tx.execute(
                "DELETE FROM connection_tests WHERE connection_id = ? AND seq NOT IN "
                "(SELECT seq FROM connection_tests WHERE connection_id = ? "
                "ORDER BY seq DESC LIMIT ?)",
                (connection_id, connection_id, HISTORY_LIMIT),
            )
            written.append(connection_id)
    return written


async def latest_results(db: Database, connection_id: str | None = None,
                         ) -> dict[str, results.TestResult]:
    """Each connection's newest result (or one's), to seed the in-memory index at start."""
    if connection_id is not None:
        rows = await db.fetch_all(
            "SELECT connection_id, result FROM connection_tests WHERE connection_id = ? "
            "ORDER BY seq DESC LIMIT 1", (connection_id,))
    else:
        rows = await db.fetch_all(
            "SELECT connection_id, result FROM connection_tests WHERE seq IN "
            "(SELECT max(seq) FROM connection_tests GROUP BY connection_id)"
        )
    return dict(db.quarantine.decoded("connection_tests", rows,
                                      lambda row: (str(row[0]), result_from_json(str(row[1])))))


@dataclass(frozen=True)
class ResultCounts:
    """How many tests a connection had in a window, and how many failed."""

    tests: int
    failed: int

    @property
    def error_rate(self) -> float:
        return self.failed / self.tests if self.tests else 0.0


class ResultHistory:
    """Read side of the history, for health reports."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def counts_since(self, since: datetime) -> dict[str, ResultCounts]:
        rows = await self._db.fetch_all(
            "SELECT connection_id, count(*), sum(CASE WHEN status = ? THEN 1 ELSE 0 END) "
            "FROM connection_tests WHERE started_us >= ? GROUP BY connection_id",
            (results.TestStatus.FAILED.value, to_us(since)),
        )
        return {str(r[0]): ResultCounts(int(r[1]), int(r[2] or 0)) for r in rows}

    async def history(self, connection_id: str,
                      limit: int = HISTORY_LIMIT) -> list[results.TestResult]:
        """Newest first."""
        rows = await self._db.fetch_all(
            "SELECT seq, result FROM connection_tests WHERE connection_id = ? "
            "ORDER BY seq DESC LIMIT ?", (connection_id, limit),
        )
        return self._db.quarantine.decoded("connection_tests", rows,
                                           lambda row: result_from_json(str(row[1])))


async def audit_results(db: Database) -> None:
    """Every stored result decoded once more, so a damaged one is quarantined."""
    rows = await db.fetch_all("SELECT seq, result FROM connection_tests ORDER BY seq")
    await db.quarantine.audit("connection_tests", rows,
                              lambda row: result_from_json(str(row[1])))
