"""Time as the engine sees it: one injected object for wall time, intervals and sleeping.

Engines sleep between cycles, back off between restarts and count orders per
minute; with all of that behind this protocol, tests drive hours of engine life
with a virtual clock in milliseconds and never sleep for real.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class EngineClock(Protocol):
    def now_ms(self) -> int:
        """Wall time, milliseconds since the Unix epoch (UTC midnight, timestamps)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a scale that never jumps: durations and rate windows."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
