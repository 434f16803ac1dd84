"""`LinePacer`: a warning an engine may repeat every cycle, written at most once a minute.

Why: an engine refused by its own risk limits (its orders-per-minute budget spent, a
grid re-deciding its levels every cycle) or by the venue (a balance short every cycle)
would otherwise write a line per refused order, every few seconds for as long as the
condition lasts: 20 LIVE grid engines at their budget wrote about three lines a second,
which buries everything else in a daemon that runs for months. The first line comes at
once; the next one due says how many were held back meanwhile, and the engine's status
counts every refusal (`orders_rejected`) regardless.
"""

from __future__ import annotations

import math

from ctsd.clock import Clock

EVERY_S = 60.0


class LinePacer:
    def __init__(self, clock: Clock, every_s: float = EVERY_S) -> None:
        self._clock = clock
        self._every_s = every_s
        self._last = -math.inf
        self._held = 0

    def admit(self) -> int | None:
        """None: hold this line back (counted); else write it, with the number held back
        since the last one written."""
        now = self._clock.monotonic()
        if now - self._last < self._every_s:
            self._held += 1
            return None
        held, self._held, self._last = self._held, 0, now
        return held
