"""`LinePacer`: warnings that can repeat without end, written at most one a key every
`every_s`, each line saying how many events it covers.

Why: a daemon that runs for months must not let a repeating condition bury its log: a
flood of refused calls (`ctsd.api.request_rate`, `ctsd.api.auth`), an engine refused by
its own risk limits or by the venue on every cycle (`ctsd.engine.engine`: 20 LIVE grid
engines at their orders-per-minute budget wrote about three lines a second). The first
line of a key comes at once; the next one due counts what was held back meanwhile.
Keys (a peer, a peer and a reason, a kind of refusal) are bounded, the least recently
seen forgotten first, so a flood from ever new peers costs no memory either.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from ctsd.lru import LruCache

MAX_KEYS = 4096


@dataclass
class _Line:
    logged_at: float
    events: int = 0
    """Events since the line was written."""


class LinePacer:
    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_KEYS) -> None:
        self._every_s = every_s
        self._clock = clock
        self._lines: LruCache[Hashable, _Line] = LruCache(max_keys)

    def due(self, key: Hashable = "") -> int:
        """Count one event of `key`: 0 while its last line is recent (hold this one back);
        else write it now, covering this many events (this one and those held back)."""
        now = self._clock()
        line = self._lines.get(key)
        if line is None:
            self._lines.put(key, _Line(now))
            return 1
        line.events += 1
        if now - line.logged_at < self._every_s:
            return 0
        covered, line.events, line.logged_at = line.events, 0, now
        return covered

    def __len__(self) -> int:
        return len(self._lines)
