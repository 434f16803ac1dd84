"""What the daemon and its connections are doing: answers for GetSystemStatus and
GetConnectionsHealth, assembled from the store, the test history and the limiter.

Everything here is a read: the index for connections, one grouped query for
error rates, a snapshot of the limiter's buckets. Nothing is cached, so an
answer is as fresh as the last committed write.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from ctsd.connections.checks.results import FailureClass, TestStatus
from ctsd.connections.filtering import matches_all, parse_filter
from ctsd.connections.model import Connection
from ctsd.engine.activity import EngineActivity
from ctsd.ratelimit.model import ScopeUsage
from ctsd.store.connections import ConnectionRepository
from ctsd.store.database import Database
from ctsd.store.result_history import ResultCounts, ResultHistory

if TYPE_CHECKING:  # the hub is built on demand (`ctsd.wiring.market_hub`)
    from ctsd.marketdata.feeds import StreamStatus

DEFAULT_ERROR_WINDOW = timedelta(hours=24)

UsageSource = Callable[[], Sequence[ScopeUsage]]


@dataclass(frozen=True)
class SystemStatus:
    version: str
    started_at: datetime
    uptime_s: float
    connections: dict[str, int]
    rate_limits: Sequence[ScopeUsage]
    store_status: str
    schema_version: int
    engines: dict[str, int]
    streams: Sequence[StreamStatus] = ()


@dataclass(frozen=True)
class ConnectionHealth:
    connection: Connection
    last_status: TestStatus | None
    last_time: datetime | None
    last_failure: FailureClass | None
    counts: ResultCounts
    window: timedelta
    rate_limits: Sequence[ScopeUsage]


def connection_states(conn: Connection, active: bool) -> list[str]:
    """The states a connection counts under: enabled or not, active, and its last test."""
    states = ["enabled" if conn.enabled else "disabled"]
    if active:
        states.append("active")
    test = conn.last_test
    states.append("untested" if test is None else f"test_{test.status.value}")
    return states


def scopes_of(conn: Connection, usage: Sequence[ScopeUsage]) -> list[ScopeUsage]:
    """The buckets a connection draws on: its exchange's per-IP ones and its key's own.

    Account scopes are recognised by the masked key hint they display, or by
    the account's UID where the venue counts per UID; two keys with the same
    last four characters would both show, which is harmless for a health view
    and never reveals more than the hint.
    """
    hint = conn.credentials.api_key_hint
    uid = f"uid {conn.account_uid}" if conn.account_uid else None
    return [
        u
        for u in usage
        if u.key.exchange == conn.exchange
        and (u.key.scope == "ip" or (hint != "****" and hint in u.key.display)
             or u.key.display == uid)
    ]


class HealthReporter:
    def __init__(
        self,
        version: str,
        repository: ConnectionRepository,
        history: ResultHistory,
        db: Database,
        usage: UsageSource,
        engines: EngineActivity | None = None,
        streams: Callable[[], Sequence[StreamStatus]] = lambda: (),
        error_window: timedelta = DEFAULT_ERROR_WINDOW,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._version = version
        self._repo = repository
        self._history = history
        self._db = db
        self._usage = usage
        self._engines = engines or EngineActivity()
        self._streams = streams
        self._window = error_window
        self._now = now
        self._monotonic = monotonic
        self._started_at = now()
        self._started = monotonic()

    async def system_status(self) -> SystemStatus:
        active = self._engines.active_connections()
        states: Counter[str] = Counter()
        for conn in await self._repo.all():
            states.update(connection_states(conn, conn.id in active))
        try:
            store_status = await self._db.integrity_check()
            schema = await self._db.schema_version()
        except Exception as exc:  # a broken store is what this answer must report
            store_status, schema = f"{type(exc).__name__}: {exc}", 0
        fault = self._db.write_fault
        store_status = "; ".join(part for part in (
            store_status, f"takes no writes: {fault}" if fault else "",
            self._db.quarantine.summary()) if part)
        return SystemStatus(
            version=self._version,
            started_at=self._started_at,
            uptime_s=self._monotonic() - self._started,
            connections=dict(sorted(states.items())),
            rate_limits=list(self._usage()),
            store_status=store_status,
            schema_version=schema,
            engines=self._engines.by_state(),
            streams=sorted(self._streams(), key=lambda s: s.stream),
        )

    async def connections_health(self, filter_text: str = "") -> list[ConnectionHealth]:
        conditions = parse_filter(filter_text)
        counts = await self._history.counts_since(self._now() - self._window)
        usage = list(self._usage())
        report = []
        for conn in await self._repo.all():
            if not matches_all(conditions, conn):
                continue
            test = conn.last_test
            report.append(
                ConnectionHealth(
                    connection=conn,
                    last_status=test.status if test else None,
                    last_time=test.started_at if test else None,
                    last_failure=test.failure_class if test else None,
                    counts=counts.get(conn.id, ResultCounts(0, 0)),
                    window=self._window,
                    rate_limits=scopes_of(conn, usage),
                )
            )
        return report
