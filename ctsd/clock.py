"""Time as the daemon's parts see it: one injected object for wall time, intervals and sleeping.

Engines sleep between cycles and count orders per minute, the rate limiter
waits for budget, the simulator stamps orders and windows. With all of it
behind this protocol, tests drive hours of engine life or exact rate-limit
windows on a virtual clock (`tests/support/virtual_clock.py`) and never
sleep for real; the daemon uses `SystemClock`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall time, milliseconds since the Unix epoch (timestamps, UTC midnight)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a scale that never goes backwards: durations and rate windows."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after `seconds` of this clock's time."""
        ...


class SystemClock:
    """The wall clock, `time.monotonic` and `asyncio.sleep`."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
