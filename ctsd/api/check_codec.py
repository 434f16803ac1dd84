"""Connection tests and batch tests: domain events to cts.v1 messages, requests to domain."""

from __future__ import annotations

from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2 as spb
from ctsd.api.names import connection_id_from_name
from ctsd.api.wellknown import duration, timestamp
from ctsd.connections.checks.batch_tester import (
    BatchEvent,
    BatchRequest,
    ItemResult,
    Progress,
    Summary,
)
from ctsd.connections.checks.results import FailureClass, LogLevel, LogLine, TestResult, TestStatus
from ctsd.connections.checks.tester import TestEvent
from ctsd.errors import FieldViolation, InvalidArgument

TEST_STATUSES: dict[TestStatus, pb.TestStatus.ValueType] = {
    TestStatus.SUCCESS: pb.TEST_STATUS_SUCCESS,
    TestStatus.WARNING: pb.TEST_STATUS_WARNING,
    TestStatus.FAILED: pb.TEST_STATUS_FAILED,
}
LOG_LEVELS: dict[LogLevel, pb.LogLevel.ValueType] = {
    LogLevel.DEBUG: pb.LOG_LEVEL_DEBUG,
    LogLevel.INFO: pb.LOG_LEVEL_INFO,
    LogLevel.WARNING: pb.LOG_LEVEL_WARNING,
    LogLevel.ERROR: pb.LOG_LEVEL_ERROR,
}
# Same names on both sides; a class the proto lacks fails here, at import, not mid-stream.
FAILURE_CLASSES: dict[FailureClass, pb.FailureClass.ValueType] = {
    fc: pb.FailureClass.Value(f"FAILURE_CLASS_{fc.name}") for fc in FailureClass
}


def encode_log_line(line: LogLine) -> pb.TestLogLine:
    return pb.TestLogLine(
        time=timestamp(line.time),
        level=LOG_LEVELS[line.level],
        step=line.step,
        message=line.message,
    )


def encode_test(result: TestResult) -> pb.ConnectionTestResult:
    msg = pb.ConnectionTestResult(
        status=TEST_STATUSES[result.status],
        start_time=timestamp(result.started_at),
        duration=duration(result.duration_s),
        balance_total=result.balance_total,
        balance_currency=result.balance_currency,
        log=list(result.log),
        capabilities=list(result.capabilities),
        message=result.message,
        remedy=result.remedy,
        balances=[
            pb.AssetBalance(asset=b.asset, free=b.free, used=b.used, total=b.total, value=b.value)
            for b in result.balances
        ],
        log_lines=[encode_log_line(line) for line in result.log_lines],
    )
    if result.failure_class is not None:
        msg.failure_class = FAILURE_CLASSES[result.failure_class]
    if result.clock_skew_s is not None:
        msg.clock_skew.CopyFrom(duration(result.clock_skew_s))
    if result.latency_s is not None:
        msg.latency.CopyFrom(duration(result.latency_s))
    return msg


def encode_test_event(event: TestEvent) -> spb.TestConnectionResponse:
    if isinstance(event, TestResult):
        return spb.TestConnectionResponse(result=encode_test(event))
    return spb.TestConnectionResponse(log=encode_log_line(event))


def _summary(summary: Summary) -> spb.BatchTestSummary:
    return spb.BatchTestSummary(
        total=summary.total,
        by_status=[
            spb.TestStatusCount(status=TEST_STATUSES[status], count=count)
            for status, count in sorted(summary.by_status.items(), key=lambda kv: kv[0].value)
        ],
        failures=[
            spb.FailureClassCount(failure_class=FAILURE_CLASSES[fc], count=count)
            for fc, count in sorted(summary.failures.items(), key=lambda kv: -kv[1])
        ],
        elapsed=duration(summary.elapsed_s),
        limiter_wait=duration(summary.limiter_wait_s),
    )


def encode_batch_event(event: BatchEvent) -> spb.BatchTestConnectionsResponse:
    if isinstance(event, ItemResult):
        return spb.BatchTestConnectionsResponse(
            result=spb.BatchTestItemResult(
                name=event.connection.name,
                result=encode_test(event.result),
                attempts=event.attempts,
                shared_from=event.shared_from,
            )
        )
    if isinstance(event, Progress):
        return spb.BatchTestConnectionsResponse(
            progress=spb.BatchTestProgress(
                done=event.done, total=event.total, limiter_wait=duration(event.limiter_wait_s)
            )
        )
    return spb.BatchTestConnectionsResponse(summary=_summary(event))


def decode_batch_request(request: spb.BatchTestConnectionsRequest) -> BatchRequest:
    ids: list[str] = []
    violations: list[FieldViolation] = []
    for i, name in enumerate(request.names):
        try:
            ids.append(connection_id_from_name(name, f"names[{i}]"))
        except InvalidArgument as exc:
            violations.extend(exc.violations)
    if violations:
        raise InvalidArgument("names: malformed connection names", violations[:20])
    if request.concurrency < 0:
        raise InvalidArgument.field("concurrency", "must not be negative")
    return BatchRequest(
        connection_ids=tuple(dict.fromkeys(ids)),
        filter_text=request.filter,
        concurrency=request.concurrency,
        priority=request.priority,
    )
