"""Test results and batch requests between cts.v1 messages and the domain."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2 as spb
from ctsd.api.batch_codec import decode_batch_request
from ctsd.api.check_codec import encode_test
from ctsd.api.wellknown import duration
from ctsd.connections.checks.results import FailureClass, TestResult, TestStatus
from ctsd.errors import InvalidArgument


def test_every_failure_class_has_its_proto_value() -> None:
    for failure in FailureClass:
        result = TestResult(TestStatus.FAILED, datetime.now(UTC), 0.1, failure_class=failure)
        assert pb.FailureClass.Name(encode_test(result).failure_class) == (
            f"FAILURE_CLASS_{failure.name}"
        )


@pytest.mark.parametrize("seconds", [0.0, 1.5, -1.5, -0.25, 2.9999999999, 86400.000001])
def test_durations_keep_their_sign_and_never_overflow_nanos(seconds: float) -> None:
    d = duration(seconds)
    assert abs(d.nanos) < 1_000_000_000
    assert d.seconds * d.nanos >= 0  # the same sign, as Duration requires
    assert d.ToNanoseconds() == pytest.approx(seconds * 1e9, abs=1)


def test_an_unset_skew_or_latency_stays_unset() -> None:
    msg = encode_test(TestResult(TestStatus.SUCCESS, datetime.now(UTC), 0.1))
    assert not msg.HasField("clock_skew") and not msg.HasField("latency")
    assert msg.failure_class == pb.FAILURE_CLASS_UNSPECIFIED


def test_batch_requests_name_every_bad_name_and_drop_duplicates() -> None:
    request = decode_batch_request(
        spb.BatchTestConnectionsRequest(names=["connections/a", "connections/a", "connections/b"])
    )
    assert request.connection_ids == ("a", "b")
    with pytest.raises(InvalidArgument) as bad:
        decode_batch_request(spb.BatchTestConnectionsRequest(names=["x", "connections/ok", "y/z"]))
    assert [v.field for v in bad.value.violations] == ["names[0]", "names[2]"]
