"""Test results in the store: last test in the index, a bounded history, nothing partial."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from ctsd.connections.checks.results import (
    AssetBalance,
    FailureClass,
    LogLevel,
    LogLine,
    TestResult,
    TestStatus,
)
from ctsd.store.connections import ConnectionRepository
from ctsd.store.database import Database
from ctsd.store.result_history import (
    HISTORY_LIMIT,
    ResultHistory,
    result_from_json,
    result_to_json,
)
from tests.store.test_connection_index import conn

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def result(n: int, status: TestStatus = TestStatus.SUCCESS) -> TestResult:
    failed = status is TestStatus.FAILED
    return TestResult(
        status=status,
        started_at=T0 + timedelta(minutes=n),
        duration_s=0.25,
        balance_total=1234.5,
        balance_currency="USDT",
        log_lines=(LogLine(T0, LogLevel.INFO, "balance", f"run {n}"),),
        capabilities=("read", "trade"),
        message=f"run {n}",
        failure_class=FailureClass.RATE_LIMITED if failed else None,
        remedy="wait" if failed else "",
        balances=(AssetBalance("BTC", 0.5, 0.0, 0.5, 30000.0),),
        clock_skew_s=-0.012,
        latency_s=0.004,
    )


async def repository_with(db: Database, *ids: str) -> ConnectionRepository:
    repo = ConnectionRepository(db)
    for cid in ids:
        await repo.insert(conn(cid), "", [])
    return repo


def test_a_result_survives_its_json_form_unchanged() -> None:
    original = result(3, TestStatus.FAILED)
    assert result_from_json(result_to_json(original)) == original


@pytest.mark.asyncio
async def test_the_last_test_is_in_the_index_and_survives_a_restart(db: Database) -> None:
    repo = await repository_with(db, "a", "b")
    await repo.record_test(["a", "b"], result(1))
    await repo.record_test(["a"], result(2, TestStatus.FAILED))
    assert (await repo.get("a")).last_test == result(2, TestStatus.FAILED)
    assert (await repo.get("b")).last_test == result(1)
    reloaded = ConnectionRepository(db)  # a new daemon reads the newest row of each
    assert (await reloaded.get("a")).last_test == result(2, TestStatus.FAILED)
    assert (await reloaded.get("b")).last_test == result(1)


@pytest.mark.asyncio
async def test_history_keeps_only_the_newest_results_per_connection(db: Database) -> None:
    repo = await repository_with(db, "a", "b")
    for n in range(HISTORY_LIMIT + 5):
        await repo.record_test(["a"], result(n))
    await repo.record_test(["b"], result(99))
    kept = await ResultHistory(db).history("a", limit=100)
    assert [r.message for r in kept] == [f"run {n}" for n in range(HISTORY_LIMIT + 4, 4, -1)]
    assert len(await ResultHistory(db).history("b")) == 1


@pytest.mark.asyncio
async def test_a_connection_deleted_during_its_test_is_skipped(db: Database) -> None:
    repo = await repository_with(db, "a", "gone")
    await repo.delete("gone", None)
    assert await repo.record_test(["a", "gone"], result(1)) == ["a"]
    assert await ResultHistory(db).history("gone") == []


@pytest.mark.asyncio
async def test_an_update_read_before_a_test_finished_keeps_that_test(db: Database) -> None:
    repo = await repository_with(db, "a")
    before = await repo.get("a")  # an update starts from this copy ...
    await repo.record_test(["a"], result(1))  # ... a test finishes meanwhile ...
    changed = replace(before, display_name="renamed", revision=before.revision + 1)
    await repo.replace(changed, "", before.revision, [], [])  # ... then the update lands
    after = await repo.get("a")
    assert after.display_name == "renamed" and after.last_test == result(1)


@pytest.mark.asyncio
async def test_error_rates_count_the_window_only(db: Database) -> None:
    repo = await repository_with(db, "a")
    for n, status in enumerate([TestStatus.SUCCESS, TestStatus.FAILED, TestStatus.FAILED]):
        await repo.record_test(["a"], result(n * 60, status))  # one an hour
    counts = await ResultHistory(db).counts_since(T0 + timedelta(minutes=30))
    assert counts["a"].tests == 2 and counts["a"].failed == 2 and counts["a"].error_rate == 1.0
    assert (await ResultHistory(db).counts_since(T0))["a"].error_rate == pytest.approx(2 / 3)
