"""Time sources for the simulator.

Everything time-dependent in the simulator (price path, rate-limit windows, order
timestamps, signature freshness checks) reads one injected `Clock` — the
daemon's one protocol (`ctsd.clock`), re-exported here with `SystemClock` —
so tests can pin time without monkeypatching and the real server simply uses
the wall clock (what a real exchange, and therefore ccxt's nonce, uses).
"""

from __future__ import annotations

import asyncio

from ctsd.clock import Clock, SystemClock

__all__ = ["Clock", "ManualClock", "SystemClock"]


class ManualClock:
    """A clock that only moves when told to; both scales advance together."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        return self._now_ms

    def monotonic(self) -> float:
        return self._now_ms / 1000.0

    async def sleep(self, seconds: float) -> None:
        """Time moves by `seconds` at once: nothing else moves it."""
        self.advance(seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self._now_ms += round(seconds * 1000)

    def set_ms(self, now_ms: int) -> None:
        self._now_ms = now_ms
