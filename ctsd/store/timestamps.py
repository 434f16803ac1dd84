"""Times are stored as integer microseconds since the epoch, UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def to_us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, tz=UTC)
