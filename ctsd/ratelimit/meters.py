"""The arithmetic of a budget, without waiting: how much is used, how long until `w` fits.

Two shapes cover the exchanges we speak to:

- `SlidingWindow`: a log of grants. A grant at `t` counts until `t + interval
  + guard`, so *every* window of length `interval` — not only the aligned
  ones an exchange may use — holds at most `capacity` units. (A fixed-window
  counter on our side could grant a full window at the end of one and again
  at the start of the next: twice the limit within one interval of the
  exchange's, differently aligned, windows.)
- `DecayingCounter`: Kraken's counter, a leaky bucket that drains at
  `capacity / interval` per second. Draining at the *reduced* capacity keeps
  our counter at or above the exchange's, which drains at the full rate.

Both keep *reservations* apart from charges: a request that holds budget in
one bucket while it waits for another has not been sent, so it counts as
used "now" for as long as it waits, and is charged at the moment it is sent.

Weights are floats (ccxt costs such as 0.4 are fractional); `EPSILON` absorbs
the rounding of sums.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol

from ctsd.ratelimit.model import BucketSpec, MeterKind

EPSILON = 1e-9


class Meter(Protocol):
    spec: BucketSpec

    def used(self, now: float) -> float:
        """Units counted at `now`, reservations included."""
        ...

    def delay(self, weight: float, now: float) -> float:
        """Seconds from `now` until `weight` more fits; `inf` while reservations block it."""
        ...

    def reserve(self, weight: float) -> None: ...

    def release(self, weight: float) -> None: ...

    def commit(self, weight: float, now: float) -> None:
        """Turn a reservation of `weight` into a charge sent at `now`."""
        ...

    def observe(self, used: float, now: float) -> bool:
        """Take the exchange's own count into account; True when it raised ours."""
        ...

    def adopt(self, spec: BucketSpec) -> None:
        """Switch to new limits (a lower limit the exchange announced, a reloaded config),
        keeping the units counted so far. A sliding window keeps its log, but grants
        older than the old window are already gone: a longer interval counts from
        what the old window still held."""
        ...


class SlidingWindow:
    def __init__(self, spec: BucketSpec) -> None:
        self.spec = spec
        self._log: deque[tuple[float, float]] = deque()
        self._charged = 0.0
        self._reserved = 0.0

    @property
    def span(self) -> float:
        return self.spec.interval_s + self.spec.guard_s

    def _expire(self, now: float) -> None:
        log, span = self._log, self.span
        while log and log[0][0] + span <= now:
            self._charged -= log.popleft()[1]
        if not log:
            self._charged = 0.0  # no drift from float subtraction

    def used(self, now: float) -> float:
        self._expire(now)
        return self._charged + self._reserved

    def delay(self, weight: float, now: float) -> float:
        self._expire(now)
        excess = self._charged + self._reserved + weight - self.spec.capacity
        if excess <= EPSILON:
            return 0.0
        freed = 0.0
        for at, units in self._log:
            freed += units
            if freed >= excess - EPSILON:
                return at + self.span - now
        return math.inf

    def reserve(self, weight: float) -> None:
        self._reserved += weight

    def release(self, weight: float) -> None:
        self._reserved = max(self._reserved - weight, 0.0)

    def commit(self, weight: float, now: float) -> None:
        self.release(weight)
        self._charge(weight, now)

    def _charge(self, weight: float, now: float) -> None:
        if self._log and self._log[-1][0] > now:
            now = self._log[-1][0]  # keep the log sorted even if a caller's clock lags
        self._log.append((now, weight))
        self._charged += weight

    def observe(self, used: float, now: float) -> bool:
        self._expire(now)
        missing = used - self._charged
        if missing <= EPSILON:
            return False
        self._charge(missing, now)
        return True

    def adopt(self, spec: BucketSpec) -> None:
        self.spec = spec


class DecayingCounter:
    def __init__(self, spec: BucketSpec) -> None:
        self.spec = spec
        self._level = 0.0
        self._at = -math.inf
        self._reserved = 0.0

    @property
    def rate(self) -> float:
        """Units drained per second: the capacity over the interval (see module doc)."""
        return self.spec.capacity / self.spec.interval_s

    def _drain(self, now: float) -> float:
        if now > self._at:
            self._level = max(self._level - (now - self._at) * self.rate, 0.0)
            self._at = now
        return self._level

    def used(self, now: float) -> float:
        return self._drain(now) + self._reserved

    def delay(self, weight: float, now: float) -> float:
        level = self._drain(now)
        excess = level + self._reserved + weight - self.spec.capacity
        if excess <= EPSILON:
            return 0.0
        if excess > level + EPSILON:
            return math.inf
        return excess / self.rate

    def reserve(self, weight: float) -> None:
        self._reserved += weight

    def release(self, weight: float) -> None:
        self._reserved = max(self._reserved - weight, 0.0)

    def commit(self, weight: float, now: float) -> None:
        self.release(weight)
        self._level = self._drain(now) + weight

    def observe(self, used: float, now: float) -> bool:
        if used <= self._drain(now) + EPSILON:
            return False
        self._level = used
        return True

    def adopt(self, spec: BucketSpec) -> None:
        self.spec = spec


def meter_for(spec: BucketSpec) -> Meter:
    if spec.kind is MeterKind.DECAYING:
        return DecayingCounter(spec)
    return SlidingWindow(spec)
