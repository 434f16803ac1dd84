"""Batch connection tests: select, group shared keys, run through the BatchProcessor.

Connections with the same exchange, API key, api type and testnet flag ask
the exchange the same questions with the same key, so they are tested once
and the result is given to each (`shared_from` names the one tested). Keys
are compared by the resolver's keyed fingerprint; the plain key is dropped as
soon as the fingerprint is taken and unsealed again when the test runs.

Each finished group is stored in one transaction before its results are
yielded; a client that leaves mid-batch keeps the groups that finished and
nothing of the ones still running.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ctsd.connections.checks.batch import Abandoned, BatchOptions, BatchProcessor, Job
from ctsd.connections.checks.results import (
    FailureClass,
    LogLevel,
    LogLine,
    TestResult,
    TestStatus,
)
from ctsd.connections.checks.settings import BatchSettings
from ctsd.connections.checks.tester import ConnectionTester, utc_now
from ctsd.connections.credentials import CredentialResolver
from ctsd.connections.filtering import matches_all, parse_filter
from ctsd.connections.model import Connection
from ctsd.connections.ports import ConnectionStore
from ctsd.errors import CredentialsUnavailable, FailedPrecondition, InvalidArgument, NotFound

MAX_NAMES = 1000
MAX_CONCURRENCY = 32
DEFAULT_PRIORITY = 5


@dataclass(frozen=True)
class BatchRequest:
    connection_ids: tuple[str, ...] = ()
    filter_text: str = ""
    concurrency: int = 0
    """0: the daemon's default."""
    priority: int = 0
    """1 (lowest) to 9; 0: the default, 5."""


@dataclass(frozen=True)
class ItemResult:
    connection: Connection
    result: TestResult
    attempts: int
    shared_from: str = ""


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    limiter_wait_s: float


@dataclass(frozen=True)
class Summary:
    total: int
    by_status: dict[TestStatus, int]
    failures: dict[FailureClass, int]
    elapsed_s: float
    limiter_wait_s: float


BatchEvent = ItemResult | Progress | Summary
GroupKey = tuple[str, ...]
Outcome = tuple[TestResult, float]


class BatchTester:
    def __init__(
        self,
        repository: ConnectionStore,
        tester: ConnectionTester,
        resolver: CredentialResolver,
        processor: BatchProcessor,
        settings: BatchSettings | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._now = now
        self._repo = repository
        self._tester = tester
        self._resolver = resolver
        self._processor = processor
        self.settings = settings or BatchSettings()
        self._monotonic = monotonic

    def options(self, request: BatchRequest) -> BatchOptions:
        concurrency = request.concurrency or self.settings.concurrency
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise InvalidArgument.field("concurrency", f"must be 0 to {MAX_CONCURRENCY}")
        priority = request.priority or DEFAULT_PRIORITY
        if not 1 <= priority <= 9:
            raise InvalidArgument.field("priority", "must be 0 (default) to 9")
        return BatchOptions(
            concurrency=concurrency,
            priority=priority,
            item_timeout_s=self.settings.item_timeout_s,
            retry=self.settings.retry,
        )

    async def select(self, request: BatchRequest) -> list[Connection]:
        """The connections a request names, or those its filter selects (enabled only)."""
        if request.connection_ids and request.filter_text:
            raise InvalidArgument.field("filter", "give names or a filter, not both")
        if len(request.connection_ids) > MAX_NAMES:
            raise InvalidArgument.field("names", f"at most {MAX_NAMES} names")
        if not request.connection_ids:
            conditions = parse_filter(request.filter_text)
            return [c for c in await self._repo.all() if c.enabled and matches_all(conditions, c)]
        chosen: dict[str, Connection] = {}
        for connection_id in request.connection_ids:
            try:
                chosen[connection_id] = await self._repo.get(connection_id)
            except NotFound as exc:
                raise NotFound(f"connection {connection_id!r} not found") from exc
        disabled = [c.id for c in chosen.values() if not c.enabled]
        if disabled:
            raise FailedPrecondition(f"disabled connections cannot be tested: {disabled[:10]}")
        return list(chosen.values())

    async def run(self, request: BatchRequest) -> AsyncIterator[BatchEvent]:
        options = self.options(request)
        connections = await self.select(request)
        started = self._monotonic()
        groups = await self._group(connections)
        waited = [0.0]
        done = 0
        statuses: Counter[TestStatus] = Counter()
        failures: Counter[FailureClass] = Counter()
        jobs = [Job(key, self._job(members[0], waited)) for key, members in groups.items()]
        finished = self._processor.process(
            jobs, options, retryable=_retryable, fallback=self._fallback
        )
        try:
            async for item in finished:
                members = groups[item.key]
                result = item.result[0]
                await asyncio.shield(self._repo.record_test([c.id for c in members], result))
                for member in members:
                    shared = members[0].name if member is not members[0] else ""
                    yield ItemResult(member, result, item.attempts, shared)
                    done += 1
                    statuses[result.status] += 1
                    if result.failure_class is not None:
                        failures[result.failure_class] += 1
                    yield Progress(done, len(connections), waited[0])
        finally:
            await finished.aclose()
        elapsed = self._monotonic() - started
        yield Summary(len(connections), dict(statuses), dict(failures), elapsed, waited[0])

    async def _group(self, connections: Sequence[Connection]) -> dict[GroupKey, list[Connection]]:
        groups: dict[GroupKey, list[Connection]] = {}
        for conn in connections:
            try:
                fingerprint = self._resolver.fingerprint(await self._resolver.resolve(conn))
            except CredentialsUnavailable:
                fingerprint = "unresolved:" + conn.id  # tested alone; fails at its first step
            key = (conn.exchange, fingerprint, conn.api_type.value, str(conn.testnet))
            groups.setdefault(key, []).append(conn)
        return groups

    def _job(self, conn: Connection, waited: list[float]) -> Callable[[int], Awaitable[Outcome]]:
        async def attempt(_number: int) -> Outcome:
            result, wait_s = await self._tester.test(conn)
            waited[0] += wait_s
            return result, wait_s

        return attempt

    def _fallback(self, key: GroupKey, abandoned: Abandoned) -> Outcome:
        """The result of a group whose test timed out (or crashed) without one."""
        now = self._now()
        failure = FailureClass.TIMEOUT if abandoned.timed_out else FailureClass.EXCHANGE_ERROR
        result = TestResult(
            status=TestStatus.FAILED,
            started_at=now,
            duration_s=self.settings.item_timeout_s if abandoned.timed_out else 0.0,
            log_lines=(LogLine(now, LogLevel.ERROR, "batch", abandoned.reason),),
            message=abandoned.reason,
            failure_class=failure,
            remedy=failure.remedy,
        )
        return result, 0.0


def _retryable(outcome: Outcome) -> bool:
    failure = outcome[0].failure_class
    return outcome[0].failed and failure is not None and failure.retryable
