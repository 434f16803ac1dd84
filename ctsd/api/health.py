"""cts.v1.HealthService: each RPC asks the health domain, then encodes.

Not to be confused with `grpc.health.v1.Health` (liveness and readiness for
probes), which `ctsd.server` registers and `ctsd.health.readiness` drives.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cts.v1 import health_service_pb2 as hpb
from cts.v1 import health_service_pb2_grpc as hgrpc
from ctsd.api.check_codec import FAILURE_CLASSES, TEST_STATUSES
from ctsd.api.handlers import Context
from ctsd.api.wellknown import duration, timestamp
from ctsd.health.report import ConnectionHealth, HealthReporter, SystemStatus
from ctsd.health.startup import CheckResult, StartupChecks
from ctsd.ratelimit.model import Counting, ScopeUsage

if TYPE_CHECKING:  # the hub is built on demand (`ctsd.wiring.market_hub`)
    from ctsd.marketdata.feeds import StreamStatus

COUNTING = {
    Counting.LOCAL: hpb.RATE_LIMIT_COUNTING_LOCAL,
    Counting.SHARED: hpb.RATE_LIMIT_COUNTING_SHARED,
    Counting.FALLBACK: hpb.RATE_LIMIT_COUNTING_FALLBACK,
    Counting.BLOCKED: hpb.RATE_LIMIT_COUNTING_BLOCKED,
}


def encode_usage(usage: ScopeUsage, now: datetime) -> hpb.RateLimitUsage:
    msg = hpb.RateLimitUsage(
        scope=usage.key.label,
        used=usage.used,
        limit=usage.capacity,
        interval=duration(usage.interval_s),
        waits=usage.waits,
        wait_time=duration(usage.wait_time_s),
        rate_limited=usage.rejections,
        counting=COUNTING[usage.counting],
        fleet_share=usage.share if usage.counting is Counting.FALLBACK else 0.0,
    )
    if usage.paused_for_s > 0:
        msg.paused_until.CopyFrom(timestamp(now + timedelta(seconds=usage.paused_for_s)))
    return msg


def encode_system_status(status: SystemStatus, now: datetime) -> hpb.GetSystemStatusResponse:
    return hpb.GetSystemStatusResponse(
        version=status.version,
        uptime=duration(status.uptime_s),
        start_time=timestamp(status.started_at),
        connections=[
            hpb.ConnectionStateCount(state=state, count=count)
            for state, count in status.connections.items()
        ],
        rate_limits=[encode_usage(u, now) for u in status.rate_limits],
        store_status=status.store_status,
        schema_version=status.schema_version,
        engines=[
            hpb.EngineStateCount(state=state, count=count)
            for state, count in status.engines.items()
        ],
        streams=[encode_stream(s) for s in status.streams],
    )


def encode_stream(status: StreamStatus) -> hpb.MarketStream:
    msg = hpb.MarketStream(
        stream=status.stream, state=status.state.value,
        messages_per_second=status.messages_per_s, reconnects=status.reconnects,
        rest_fallbacks=status.fallbacks, consumers=status.users, resyncs=status.resyncs,
        error=status.error)
    if status.data_age_s is not None:
        msg.data_age.CopyFrom(duration(status.data_age_s))
    return msg


def encode_connection_health(item: ConnectionHealth, now: datetime) -> hpb.ConnectionHealth:
    conn = item.connection
    msg = hpb.ConnectionHealth(
        name=f"{conn.name}/health",
        display_name=conn.display_name,
        exchange=conn.exchange,
        enabled=conn.enabled,
        error_rate=item.counts.error_rate,
        tests_in_window=item.counts.tests,
        window=duration(item.window.total_seconds()),
        rate_limits=[encode_usage(u, now) for u in item.rate_limits],
    )
    if item.last_status is not None:
        msg.last_test_status = TEST_STATUSES[item.last_status]
    if item.last_time is not None:
        msg.last_test_time.CopyFrom(timestamp(item.last_time))
    if item.last_failure is not None:
        msg.last_failure_class = FAILURE_CLASSES[item.last_failure]
    return msg


def encode_checks(results: Sequence[CheckResult]) -> hpb.VerifyStartupResponse:
    return hpb.VerifyStartupResponse(
        checks=[
            hpb.StartupCheck(
                name=r.name, passed=r.passed, detail=r.detail, duration=duration(r.duration_s)
            )
            for r in results
        ],
        passed=all(r.passed for r in results),
    )


class SystemHealthServicer(hgrpc.HealthServiceServicer):
    def __init__(self, reporter: HealthReporter, checks: StartupChecks) -> None:
        self._reporter = reporter
        self._checks = checks

    async def GetSystemStatus(
        self, request: hpb.GetSystemStatusRequest, context: Context
    ) -> hpb.GetSystemStatusResponse:
        status = await self._reporter.system_status()
        return encode_system_status(status, datetime.now(UTC))

    async def GetConnectionsHealth(
        self, request: hpb.GetConnectionsHealthRequest, context: Context
    ) -> hpb.GetConnectionsHealthResponse:
        items = await self._reporter.connections_health(request.filter)
        now = datetime.now(UTC)
        return hpb.GetConnectionsHealthResponse(
            connections=[encode_connection_health(i, now) for i in items]
        )

    async def VerifyStartup(
        self, request: hpb.VerifyStartupRequest, context: Context
    ) -> hpb.VerifyStartupResponse:
        return encode_checks(await self._checks.run_all())
