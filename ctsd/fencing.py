"""The fence an engine's task carries into every request it sends (fleet engine leases).

Why a context variable: the last place a daemon can refuse to send an order is
inside the exchange layer, after the rate limiter granted the request and just
before ccxt builds and sends it (`ctsd.exchanges.throttle`). The engine that
holds the lease and that layer are two packages that must not know each other,
and a request is sent from the engine's own task: the engine sets its guard for
its task (`guarded`), the exchange layer asks `check()` and `deadline_ms()`.

A guard says two things: whether the lease may still be relied on by this
daemon's own clock (`check` raises `ctsd.errors.LeaseLost` once the renewal
deadline has passed or the lease was lost), and until when, in wall-clock
milliseconds, a request may still be acted upon (`deadline_ms`). A venue that
takes a validity window on signed requests (Binance's `timestamp` +
`recvWindow`) is sent that deadline, so a request that sat in a paused
process past it is refused by the venue itself: no check-then-act window stays
open on the daemon's side.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Protocol


class Guard(Protocol):
    def check(self) -> None:
        """Raise `LeaseLost` if requests may no longer be sent on the lease's behalf."""
        ...

    def deadline_ms(self) -> int:
        """Wall-clock ms after which a request sent now must not be acted upon."""
        ...


_CURRENT: ContextVar[Guard | None] = ContextVar("ctsd_fence", default=None)


@contextlib.contextmanager
def guarded(guard: Guard | None) -> Iterator[None]:
    """Every request sent from this context (and tasks it starts) is checked against `guard`."""
    token = _CURRENT.set(guard)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def check() -> None:
    """Raise `LeaseLost` if the current context's guard says stop; no guard: nothing."""
    guard = _CURRENT.get()
    if guard is not None:
        guard.check()


def deadline_ms() -> int | None:
    """The current guard's deadline, or None outside a fenced context."""
    guard = _CURRENT.get()
    return None if guard is None else guard.deadline_ms()
