"""The limiter's only view of time: a monotonic reading and a way to wait.

Injected, so unit tests drive the limiter with a virtual clock (no real
sleeping) and prove its window guarantees exactly; the daemon uses
`SystemClock`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a scale that never goes backwards."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after `seconds` of this clock's time."""
        ...


class SystemClock:
    """`time.monotonic` and `asyncio.sleep`."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
