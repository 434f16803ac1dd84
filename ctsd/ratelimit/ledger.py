"""A daemon's own charges in one shared bucket, on its own clock.

Redis holds the fleet's count; the ledger holds this daemon's part of it, charge
by charge, because two moments need it: when Redis becomes unreachable, the
daemon goes on with a share of the limit and must count what it already sent
against that share; and when Redis comes back (empty, after a restart, or
unaware of what was granted meanwhile) the daemon hands its charges back, each
under the id it had, so handing back twice counts once.

The arithmetic is `ctsd.ratelimit.meters`': a window charge counts from its
grant until `max(sent + guard, answer) + interval`; a decaying counter is
`DecayingCounter` itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ctsd.ratelimit.meters import EPSILON, DecayingCounter, Sent
from ctsd.ratelimit.model import BucketSpec, MeterKind


@dataclass
class OwnCharge:
    """One grant of this daemon in one bucket; `member` is its name in Redis."""

    member: str
    weight: float
    sent: float
    """Local monotonic time of the grant."""
    sent_redis_ms: float
    """Redis time of the grant (0 when granted locally, during an outage)."""
    landed: float | None = None
    decaying: Sent | None = field(default=None, repr=False)

    def end(self, spec: BucketSpec) -> float:
        """When it stops counting on the local clock; inf while unanswered."""
        if self.landed is None:
            return math.inf
        return max(self.sent + spec.guard_s, self.landed) + spec.interval_s


class OwnLedger:
    def __init__(self, spec: BucketSpec) -> None:
        self.spec = spec
        self._charges: dict[str, OwnCharge] = {}
        self._counter = DecayingCounter(spec) if spec.kind is MeterKind.DECAYING else None

    def add(self, member: str, weight: float, now: float, sent_redis_ms: float) -> OwnCharge:
        charge = OwnCharge(member, weight, now, sent_redis_ms)
        if self._counter is not None:
            self._counter.reserve(weight)
            charge.decaying = self._counter.commit(weight, now)
        else:
            self._charges[member] = charge
        return charge

    def land(self, charge: OwnCharge, now: float) -> None:
        if charge.landed is not None:
            return
        charge.landed = now
        if self._counter is not None and charge.decaying is not None:
            self._counter.land(charge.decaying, now)

    def _prune(self, now: float) -> None:
        gone = [m for m, c in self._charges.items() if c.end(self.spec) <= now]
        for member in gone:
            del self._charges[member]

    def used(self, now: float) -> float:
        if self._counter is not None:
            return self._counter.used(now)
        self._prune(now)
        return sum(c.weight for c in self._charges.values())

    def delay(self, weight: float, capacity: float, now: float) -> float:
        """Seconds until `weight` more fits under `capacity` (a share); inf if never
        without an answer first."""
        if weight > capacity + EPSILON:
            return math.inf
        if self._counter is not None:
            level = self._counter.used(now)
            excess = level + weight - capacity
            return 0.0 if excess <= EPSILON else excess / (capacity / self.spec.interval_s)
        self._prune(now)
        excess = sum(c.weight for c in self._charges.values()) + weight - capacity
        if excess <= EPSILON:
            return 0.0
        freed = 0.0
        for charge in sorted(self._charges.values(), key=lambda c: c.end(self.spec)):
            freed += charge.weight
            if freed >= excess - EPSILON:
                return charge.end(self.spec) - now
        return math.inf

    def adopt(self, spec: BucketSpec) -> None:
        """New limits (a share, a reload): charges keep counting as they were."""
        self.spec = spec
        if self._counter is not None:
            self._counter.adopt(spec)

    def unanswered(self) -> list[str]:
        """Members of the window charges Redis granted that await their answer."""
        return [c.member for c in self._charges.values()
                if c.landed is None and c.sent_redis_ms]

    def live(self, now: float, unanswered_s: float) -> list[tuple[OwnCharge, float]]:
        """(charge, seconds it still counts) of every window charge; an unanswered one
        for `unanswered_s` (the most a request may take, plus a window)."""
        self._prune(now)
        return [(c, unanswered_s if c.landed is None else c.end(self.spec) - now)
                for c in self._charges.values()]
