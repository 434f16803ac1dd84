"""Batch connection tests: requests to domain, events to cts.v1 messages.

Apart from `check_codec` because it needs the batch tester's types at run time:
connections are listed (with their last result) long before any batch runs, and
the daemon imports this with the first batch (`ConnectionServicer`).
"""

from __future__ import annotations

from cts.v1 import connection_service_pb2 as spb
from ctsd.api.check_codec import FAILURE_CLASSES, TEST_STATUSES, encode_test
from ctsd.api.names import connection_id_from_name
from ctsd.api.wellknown import duration
from ctsd.connections.checks.batch_tester import (
    BatchEvent,
    BatchRequest,
    ItemResult,
    Progress,
    Summary,
)
from ctsd.errors import FieldViolation, InvalidArgument


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
