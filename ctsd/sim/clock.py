"""Time sources for the simulator.

Everything time-dependent in the simulator (price path, rate-limit windows, order
timestamps, signature freshness checks) reads one injected `Clock`, so tests can
pin time without monkeypatching and the real server simply uses the wall clock.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A source of the current time, in the units exchanges speak."""

    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a monotonic scale; used for rate-limit windows and decay."""
        ...


class SystemClock:
    """The wall clock: what a real exchange, and therefore ccxt's nonce, uses."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that only moves when told to; both scales advance together."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        return self._now_ms

    def monotonic(self) -> float:
        return self._now_ms / 1000.0

    def advance(self, seconds: float) -> None:
        self._now_ms += round(seconds * 1000)

    def set_ms(self, now_ms: int) -> None:
        self._now_ms = now_ms
