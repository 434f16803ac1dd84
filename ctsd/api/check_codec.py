"""Connection tests: results and log lines to cts.v1 messages (batches: `batch_codec`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2 as spb
from ctsd.api.wellknown import duration, timestamp
from ctsd.connections.checks.results import FailureClass, LogLevel, LogLine, TestResult, TestStatus

if TYPE_CHECKING:  # the tester is built by the first test (`ctsd.wiring.root`)
    from ctsd.connections.checks.tester import TestEvent

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
