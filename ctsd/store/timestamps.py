"""Times are stored as integer microseconds since the epoch, UTC (the fleet's tables:
milliseconds, by the database's clock)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def to_us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, tz=UTC)


def checked_ms(value: Any) -> int:
    """A stored millisecond time, refused (ValueError, a damaged row) unless it is one a
    datetime can hold: the API turns it into a Timestamp, and a value out of range there
    would fail an answer instead of quarantining the row."""
    ms = int(value)
    try:
        datetime.fromtimestamp(ms / 1000, tz=UTC)
    except (OverflowError, OSError) as exc:
        raise ValueError(f"time {ms} ms is out of range") from exc
    return ms
