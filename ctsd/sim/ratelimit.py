"""Rate-limit accounting primitives that every venue composes with its own data.

Exchanges count differently — Binance weights per IP per minute, Bybit and OKX
count per account per endpoint group, Kraken keeps a counter that decays — but
each is one of two shapes: a fixed window or a leaky counter. A venue declares its
limits as data (`RateRule`s), keys them as the exchange does (IP, UID, UID +
group) and renders the verdict in its own headers and error body. `scale`
shrinks every limit (and `window_scale` every window) so tests trip limits in a
few requests; `ViolationLog` counts every request that exceeded a limit, so a
benchmark can prove the daemon never did.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field

from ctsd.sim.clock import Clock


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    scale: float = 1.0
    """Multiplies every limit: 0.01 turns Binance's 1,200 weight/min into 12."""
    window_scale: float = 1.0
    """Multiplies every window and ban length: 0.01 turns a minute into 0.6 s."""

    def limit(self, nominal: float) -> int:
        return max(1, math.floor(nominal * self.scale))

    def window(self, seconds: float) -> float:
        return seconds * self.window_scale


@dataclass(frozen=True, slots=True)
class RateRule:
    """A declared limit: `limit` units per `window_s` seconds (before scaling)."""

    limit: float
    window_s: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of charging one request, with what headers need."""

    allowed: bool
    used: float
    limit: float
    reset_at: float
    """Monotonic time when the window resets (or the counter is back under the limit)."""
    now: float
    now_ms: int
    """Wall-clock time of the verdict, for venues that publish reset timestamps."""

    @property
    def reset_at_ms(self) -> int:
        return self.now_ms + math.ceil((self.reset_at - self.now) * 1000)

    @property
    def remaining(self) -> float:
        return max(self.limit - self.used, 0.0)

    @property
    def retry_after_s(self) -> int:
        """Whole seconds to wait, at least 1, as a Retry-After header carries."""
        return max(1, math.ceil(self.reset_at - self.now))


class FixedWindowLimiter:
    """Units per aligned window per key (Binance IP weight, Bybit/OKX per-UID groups).

    A request that would exceed the limit is refused and charged nothing, as the
    exchanges do; the caller decides whether that is a violation.
    """

    def __init__(self, clock: Clock, config: RateLimitConfig) -> None:
        self._clock = clock
        self._config = config
        self._windows: dict[Hashable, tuple[int, float]] = {}

    def charge(self, key: Hashable, cost: float, rule: RateRule) -> Verdict:
        now = self._clock.monotonic()
        window = self._config.window(rule.window_s)
        limit = self._config.limit(rule.limit)
        index = math.floor(now / window)
        start, used = self._windows.get(key, (index, 0.0))
        if start != index:
            used = 0.0
        reset_at = (index + 1) * window
        if used + cost > limit:
            self._windows[key] = (index, used)
            return Verdict(False, used, limit, reset_at, now, self._clock.now_ms())
        self._windows[key] = (index, used + cost)
        return Verdict(True, used + cost, limit, reset_at, now, self._clock.now_ms())

    def used(self, key: Hashable, rule: RateRule) -> float:
        index = math.floor(self._clock.monotonic() / self._config.window(rule.window_s))
        start, used = self._windows.get(key, (index, 0.0))
        return used if start == index else 0.0

    def reset(self) -> None:
        self._windows.clear()


class DecayingCounter:
    """Kraken's call counter: each call adds its cost, the counter drains at a rate.

    `rule.limit` is the maximum counter value; the counter drains by
    `rule.limit / rule.window_s` per second (so `window_s` is the time a full
    counter takes to empty).
    """

    def __init__(self, clock: Clock, config: RateLimitConfig) -> None:
        self._clock = clock
        self._config = config
        self._counters: dict[Hashable, tuple[float, float]] = {}

    def charge(self, key: Hashable, cost: float, rule: RateRule) -> Verdict:
        now = self._clock.monotonic()
        limit = self._config.limit(rule.limit)
        rate = limit / self._config.window(rule.window_s)
        value, at = self._counters.get(key, (0.0, now))
        value = max(value - (now - at) * rate, 0.0)
        if value + cost > limit:
            self._counters[key] = (value, now)
            return Verdict(
                False, value, limit, now + (value + cost - limit) / rate, now,
                self._clock.now_ms(),
            )
        self._counters[key] = (value + cost, now)
        return Verdict(
            True, value + cost, limit, now + (value + cost) / rate, now, self._clock.now_ms(),
        )

    def reset(self) -> None:
        self._counters.clear()


class BanList:
    """IP bans after repeated violations (Binance's 418), with doubling length."""

    def __init__(self, clock: Clock, config: RateLimitConfig) -> None:
        self._clock = clock
        self._config = config
        self._until: dict[Hashable, float] = {}
        self._strikes: Counter[Hashable] = Counter()

    def banned_for(self, key: Hashable) -> float:
        """Seconds of ban left for `key` (0 when not banned)."""
        return max(self._until.get(key, 0.0) - self._clock.monotonic(), 0.0)

    def ban(self, key: Hashable, base_s: float, max_s: float) -> float:
        """Ban `key` for base * 2^strikes (capped); returns the ban length in seconds."""
        length = min(base_s * 2 ** self._strikes[key], max_s)
        length = self._config.window(length)
        self._strikes[key] += 1
        self._until[key] = self._clock.monotonic() + length
        return length

    def reset(self) -> None:
        self._until.clear()
        self._strikes.clear()


@dataclass
class ViolationLog:
    """Per-venue counts of requests served and of requests over a limit."""

    requests: Counter[str] = field(default_factory=Counter)
    endpoints: Counter[str] = field(default_factory=Counter)
    """Requests served per `<venue> <METHOD> <path>`: what a client spends its REST on."""
    violations: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[tuple[str, str]] = field(default_factory=Counter)

    def violation(self, venue: str, kind: str) -> None:
        self.violations[venue] += 1
        self.by_kind[(venue, kind)] += 1

    def snapshot(self) -> dict[str, object]:
        return {
            "requests": dict(self.requests),
            "endpoints": dict(self.endpoints),
            "violations": dict(self.violations),
            "violations_by_kind": {f"{v}:{k}": n for (v, k), n in self.by_kind.items()},
        }

    def reset(self) -> None:
        self.requests.clear()
        self.endpoints.clear()
        self.violations.clear()
        self.by_kind.clear()
