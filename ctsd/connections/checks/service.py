"""The connection-test use cases: test one connection, or a batch; store the outcome.

A result is stored only once the test has finished, in one transaction, and
the store is shielded from cancellation: a client that leaves mid-test
leaves nothing behind, and one that leaves just as the result is written
cannot leave the database and the in-memory index disagreeing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

from ctsd.connections.checks.batch_tester import BatchEvent, BatchRequest, BatchTester
from ctsd.connections.checks.results import TestResult
from ctsd.connections.checks.tester import ConnectionTester, TestEvent
from ctsd.connections.ports import ConnectionStore
from ctsd.errors import FailedPrecondition


class ConnectionTests:
    def __init__(
        self, repository: ConnectionStore, tester: ConnectionTester, batch: BatchTester
    ) -> None:
        self._repo = repository
        self._tester = tester
        self._batch = batch

    async def test(self, connection_id: str) -> AsyncGenerator[TestEvent, None]:
        """Log lines as each step runs, then the stored result."""
        conn = await self._repo.get(connection_id)
        if not conn.enabled:
            raise FailedPrecondition(f"connection {connection_id!r} is disabled; enable it first")
        async for event in self._tester.run(conn):
            if isinstance(event, TestResult):
                await asyncio.shield(self._repo.record_test([conn.id], event))
            yield event

    def batch(self, request: BatchRequest) -> AsyncIterator[BatchEvent]:
        """Each result as it finishes, progress after each, then the summary."""
        return self._batch.run(request)
