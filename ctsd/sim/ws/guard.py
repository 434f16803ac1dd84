"""The WebSocket limits as the venues enforce them, and the counter of breaches.

Every breach is answered the venue's way by the caller (an HTTP 429 handshake, a
close frame, an error event) and counted in the simulator's `ViolationLog` under
`ws_<limit>`, next to the REST limits, so a benchmark can prove a client stayed
inside all of them: `ws_connections`, `ws_messages`, `ws_streams`,
`ws_subscribe_ops`, `ws_args`, `ws_heartbeat` (a client that let the server's
heartbeat run out) and `ws_slow_consumer` (a client that did not read).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from ctsd.sim.clock import Clock
from ctsd.sim.ratelimit import FixedWindowLimiter, RateLimitConfig, RateRule, Verdict
from ctsd.sim.state import Simulator
from ctsd.sim.ws.protocol import WsLimits


@dataclass(slots=True)
class Window:
    """A fixed-window counter owned by one connection (dropped with it)."""

    start: float = 0.0
    count: int = 0

    def charge(self, now: float, window_s: float, limit: int) -> bool:
        if now - self.start >= window_s:
            self.start, self.count = now, 0
        self.count += 1
        return self.count <= limit


class WsGuard:
    """Connection attempts per IP (shared per pool) and per-connection counters."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.config = sim.config.ws
        self._clock: Clock = sim.clock
        scales = RateLimitConfig(scale=self.config.limit_scale,
                                 window_scale=self.config.timing_scale)
        self._attempts = FixedWindowLimiter(sim.clock, scales)

    def admit_connection(self, venue: str, limits: WsLimits, ip: str) -> Verdict | None:
        """None when the attempt is allowed, else the refusing verdict (counted)."""
        if limits.connections is None:
            return None
        key: Hashable = (venue, limits.connection_pool, ip)
        verdict = self._attempts.charge(
            key, 1, RateRule(limits.connections, limits.connection_window_s))
        if verdict.allowed:
            return None
        self.violation(venue, "connections")
        return verdict

    def now(self) -> float:
        return self._clock.monotonic()

    def admit_message(self, window: Window, limits: WsLimits) -> bool:
        if limits.messages_per_s is None:
            return True
        return window.charge(self.now(), self.config.seconds(1.0),
                             self.config.limit(limits.messages_per_s))

    def admit_subscribe_op(self, window: Window, limits: WsLimits) -> bool:
        if limits.subscribe_ops is None:
            return True
        return window.charge(self.now(), self.config.seconds(limits.subscribe_window_s),
                             self.config.limit(limits.subscribe_ops))

    def stream_limit(self, limits: WsLimits) -> int | None:
        return None if limits.streams is None else self.config.limit(limits.streams)

    def violation(self, venue: str, kind: str) -> None:
        self.sim.stats.violation(venue, f"ws_{kind}")

    def reset(self) -> None:
        self._attempts.reset()
