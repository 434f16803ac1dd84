"""Domain times and durations as google.protobuf Timestamp and Duration."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import duration_pb2, timestamp_pb2


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts


def duration(seconds: float) -> duration_pb2.Duration:
    """Seconds, possibly negative, as a Duration (seconds and nanos share the sign)."""
    total = round(seconds * 1e9)
    sign = -1 if total < 0 else 1
    whole, nanos = divmod(abs(total), 1_000_000_000)
    return duration_pb2.Duration(seconds=sign * whole, nanos=sign * nanos)
