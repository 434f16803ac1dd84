"""Tuning of the simulated WebSocket APIs: tick, queues, and the scales tests shrink.

Kept apart from the REST `RateLimitConfig` on purpose: a REST test that shrinks
Binance's weight to 12 a minute must not also turn Binance's five incoming
WebSocket messages a second into one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WsConfig:
    tick_s: float = 0.05
    """Period of the server's one data loop; a stream's cadence is rounded up to it."""
    timing_scale: float = 1.0
    """Multiplies every heartbeat interval and timeout, listenKey and token validity, and
    every connection-attempt window: 0.01 turns Binance's one-minute pong timeout into 0.6 s."""
    limit_scale: float = 1.0
    """Multiplies every count limit (connection attempts, messages a second, streams a
    connection, subscribe operations an hour); never below 1."""
    send_queue_max: int = 10_000
    """Messages queued for one connection before it counts as a slow consumer and is cut."""

    def limit(self, nominal: float) -> int:
        return max(1, math.floor(nominal * self.limit_scale))

    def seconds(self, nominal: float) -> float:
        return nominal * self.timing_scale
