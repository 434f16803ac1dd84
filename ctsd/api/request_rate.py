"""The flood guard: each peer's calls per second, on aiolimiter; above it, RESOURCE_EXHAUSTED.

A runaway client (a retry loop without backoff, a script gone wrong) must not
take the daemon from everyone else. A leaky bucket is the right shape here: a
burst up to one second's worth goes through, then the average holds. (The
exchanges' limits are another matter: they need a guarantee for every window,
which a leaky bucket cannot give; see `ctsd.ratelimit.bucket`.)

A call over the limit is refused at once, not queued: waiting calls would hold
the daemon's memory and the client's deadline while teaching it nothing. Peers
are told apart by address without port (every Unix-socket client is one peer:
the socket's file mode already says who may call). Health checks are exempt, so a
flood does not turn a supervisor's probe red.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator

import grpc
from aiolimiter import AsyncLimiter

from ctsd.api import handlers
from ctsd.api.handlers import Context, WrappingInterceptor
from ctsd.log_pacing import LinePacer

log = logging.getLogger("ctsd.api")

EXEMPT_PREFIX = "/grpc.health.v1.Health/"
MAX_PEERS = 4096
"""Peers remembered; the least recently seen is forgotten first (memory stays bounded)."""
LOG_EVERY_S = 10.0


def peer_key(peer: str) -> str:
    """'ipv4:10.0.0.7:51234' -> 'ipv4:10.0.0.7'; 'ipv6:[::1]:5' -> 'ipv6:[::1]'; 'unix:...' ->
    'unix'. A client's port changes with every connection; its address does not."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return f"{kind}:{rest.rpartition(':')[0]}"
    return kind


class PeerBudget:
    """Per peer: a leaky bucket of `per_second` events, and a log line at most every
    `LOG_EVERY_S` saying how many went over. Bounded to `max_peers` peers."""

    def __init__(self, per_second: float, max_peers: int = MAX_PEERS) -> None:
        self.per_second = per_second
        self._max_peers = max_peers
        self._limiters: OrderedDict[str, AsyncLimiter] = OrderedDict()
        self._lines = LinePacer(LOG_EVERY_S, max_keys=max_peers)
        self.refused = 0

    def _limiter(self, key: str) -> AsyncLimiter:
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = AsyncLimiter(self.per_second, 1.0)
            if len(self._limiters) > self._max_peers:
                self._limiters.popitem(last=False)
        else:
            self._limiters.move_to_end(key)
        return limiter

    async def take(self, key: str) -> bool:
        """One event of `key` within its budget (True), or one over it (False)."""
        limiter = self._limiter(key)
        if not limiter.has_capacity():
            self.refused += 1
            return False
        await limiter.acquire()  # has capacity: returns without waiting
        return True

    def log_due(self, key: str) -> int:
        """0 while `key`'s last line is recent; else how many events it covers now
        (`ctsd.log_pacing`: its keys bounded like the peers)."""
        return self._lines.due(key)


class RequestRateGuard:
    def __init__(self, per_second: float, max_peers: int = MAX_PEERS) -> None:
        self._budget = PeerBudget(per_second, max_peers)

    @property
    def refused(self) -> int:
        return self._budget.refused

    @contextlib.asynccontextmanager
    async def around(self, method: str, context: Context) -> AsyncIterator[None]:
        key = peer_key(context.peer() or "")
        if not await self._budget.take(key):
            handlers.refused_quietly.set(True)  # logged here at a bounded rate, not per call
            self._log_refusal(key, method)
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"more than {self._budget.per_second:g} calls per second from this client; "
                "slow down and retry")
        yield

    def _log_refusal(self, key: str, method: str) -> None:
        """One line per peer per `LOG_EVERY_S`: a flood must not flood the log too."""
        count = self._budget.log_due(key)
        if count:
            log.warning("calls refused: too many per second", extra={
                "peer": key, "method": method, "limit_per_s": self._budget.per_second,
                "refused": count, "refused_so_far": self.refused})

    def interceptor(self) -> grpc.aio.ServerInterceptor:
        return WrappingInterceptor(self.around, skip=lambda m: m.startswith(EXEMPT_PREFIX))
