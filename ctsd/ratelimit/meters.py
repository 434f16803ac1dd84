"""The arithmetic of a budget, without waiting: how much is used, how long until `w` fits.

Two shapes cover the exchanges we speak to:

- `SlidingWindow`: a log of grants. A grant sent at `t` and answered at `a`
  counts until `max(t + guard, a) + interval`, so *every* window of length
  `interval` on the exchange's side — not only the aligned ones it may use —
  holds at most `capacity` units. The exchange counts a request somewhere
  between our sending it and its answer; counting it until a full interval
  after the answer covers a request that left late (an event loop stalled
  between grant and send) or took long to arrive, which a fixed guard after
  the grant cannot. (A fixed-window counter on our side could grant a full
  window at the end of one and again at the start of the next: twice the
  limit within one interval of the exchange's, differently aligned, windows.)
  A request still unanswered counts for as long as it is unanswered, then
  enters the log when its answer arrives (`land`).
- `DecayingCounter`: Kraken's counter, a leaky bucket that drains at
  `capacity / interval` per second. Draining at the *reduced* capacity keeps
  our counter at or above the exchange's, which drains at the full rate; on
  an answer, what ours drained of the request since it was sent is added
  back, since the exchange may have counted it only then.

Usage headers: the exchange's count minus ours is usage of someone else (another
program on the IP or key), charged as a *correction* for a window. Corrections do
not add up: the next header sees the same outside usage again while the exchange
still counts it, so at each moment the window counts the largest correction still
standing (`raised_corrections`), never their sum and never less. (Subtracting an
earlier correction from a later header, as a plain charge would be, lets it absorb
the later one and expire first, leaving the later usage uncounted.)

Both keep *reservations* apart from charges: a request that holds budget in
one bucket while it waits for another has not been sent, so it counts as
used "now" for as long as it waits, and is charged at the moment it is sent.

Weights are floats (ccxt costs such as 0.4 are fractional); `EPSILON` absorbs
the rounding of sums.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from ctsd.ratelimit.model import BucketSpec, MeterKind

EPSILON = 1e-9


class Sent:
    """One charge in a meter, kept by the request's permit to `land` it on its answer.

    Every charge must be landed (the exchange layer does it in a `finally`): a
    sliding window counts an unlanded charge for ever."""

    __slots__ = ("at", "correction", "landed", "weight")

    def __init__(self, at: float, weight: float, correction: bool = False) -> None:
        self.landed = False
        self.at = at
        """When it was sent; once landed, when it starts counting its `interval + guard`."""
        self.weight = weight
        self.correction = correction
        """A piece of the corrections' profile (`raised_corrections`), not a request."""


def raised_corrections(pieces: Sequence[tuple[float, float]], level: float, until: float,
                       ) -> list[tuple[float, float]] | None:
    """The corrections after a header showed `level` units beyond our own, standing until
    `until`: (end, weight) pieces, or None when those standing already count as much.

    The corrections a window counts at time t are the largest `level` of the headers
    still standing at t: a profile that falls in steps as they end. It is kept as
    additive pieces, each counting until its end like a charge (the piece ending at
    each step weighs that step's drop), so the window's arithmetic needs nothing new.
    `ctsd.ratelimit.lua` does the same in Redis.
    """
    if level <= sum(w for end, w in pieces if end >= until) + EPSILON:
        return None

    def before(end: float) -> float:  # the new profile just before `end`
        return max(sum(w for e, w in pieces if e >= end), level if end <= until else 0.0)

    ends = sorted({end for end, _ in pieces} | {until})
    levels = [before(end) for end in ends] + [0.0]
    return [(end, levels[i] - levels[i + 1]) for i, end in enumerate(ends)
            if levels[i] - levels[i + 1] > EPSILON]


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

    def commit(self, weight: float, now: float) -> Sent:
        """Turn a reservation of `weight` into a charge sent at `now`."""
        ...

    def land(self, sent: Sent, now: float) -> None:
        """The answer to `sent` arrived at `now`: count it until `now + interval` at least."""
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


class _Reservations:
    """Budget held for requests granted but not sent yet: counted, and given back if
    they are never sent."""

    _reserved = 0.0

    def reserve(self, weight: float) -> None:
        self._reserved += weight

    def release(self, weight: float) -> None:
        self._reserved = max(self._reserved - weight, 0.0)


class SlidingWindow(_Reservations):
    def __init__(self, spec: BucketSpec) -> None:
        self.spec = spec
        self._log: deque[Sent] = deque()
        self._charged = 0.0
        """Units in the log: landed charges, each counting until its start + span."""
        self._flying = 0.0
        """Units sent and not answered yet: counted until they land."""
        self._reserved = 0.0
        self._corrections = 0
        """Correction pieces in the log: while none, `observe` (every answer's usage
        header) need not scan a log of a window's requests, thousands long."""

    @property
    def span(self) -> float:
        return self.spec.interval_s + self.spec.guard_s

    def _expire(self, now: float) -> None:
        log, span = self._log, self.span
        while log and log[0].at + span <= now:
            gone = log.popleft()
            self._charged -= gone.weight
            self._corrections -= gone.correction
        if not log:
            self._charged = 0.0  # no drift from float subtraction

    def used(self, now: float) -> float:
        self._expire(now)
        return self._charged + self._flying + self._reserved

    def delay(self, weight: float, now: float) -> float:
        self._expire(now)
        excess = self._charged + self._flying + self._reserved + weight - self.spec.capacity
        if excess <= EPSILON:
            return 0.0
        freed = 0.0
        for sent in self._log:
            freed += sent.weight
            if freed >= excess - EPSILON:
                return sent.at + self.span - now
        return math.inf

    def commit(self, weight: float, now: float) -> Sent:
        self.release(weight)
        self._flying += weight
        return Sent(now, weight)

    def land(self, sent: Sent, now: float) -> None:
        if sent.landed:
            return
        sent.landed = True
        self._flying = max(self._flying - sent.weight, 0.0)
        # counts until max(sent + interval + guard, answer + interval)
        self._charge(sent.weight, max(sent.at, now - self.spec.guard_s))

    def _charge(self, weight: float, at: float, correction: bool = False) -> None:
        log = self._log
        index = len(log)
        while index and log[index - 1].at > at:  # sorted by start; the tail is the usual place
            index -= 1
        log.insert(index, Sent(at, weight, correction))
        self._charged += weight
        self._corrections += correction

    def observe(self, used: float, now: float) -> bool:
        """The exchange counts `used`: what exceeds our own charges is a correction (see
        the module doc), standing a window and guard from now."""
        self._expire(now)
        span = self.span
        pieces = ([(s.at + span, s.weight) for s in self._log if s.correction]
                  if self._corrections else [])
        ours = self._charged - sum(w for _, w in pieces) + self._flying
        raised = raised_corrections(pieces, used - ours, now + span)
        if raised is None:
            return False
        if self._corrections:
            self._log = deque(s for s in self._log if not s.correction)
            self._corrections = 0
        self._charged = ours - self._flying
        for end, weight in raised:
            self._charge(weight, end - span, correction=True)
        return True

    def adopt(self, spec: BucketSpec) -> None:
        self.spec = spec


class DecayingCounter(_Reservations):
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

    def commit(self, weight: float, now: float) -> Sent:
        self.release(weight)
        self._level = self._drain(now) + weight
        return Sent(now, weight)

    def land(self, sent: Sent, now: float) -> None:
        """The exchange may have counted the request only now: give back what ours drained
        of it since it was sent, so ours is not below the exchange's (it drains slower)."""
        if sent.landed:
            return
        sent.landed = True
        self._level = self._drain(now) + min(sent.weight, (now - sent.at) * self.rate)

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
