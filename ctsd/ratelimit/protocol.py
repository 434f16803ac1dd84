"""What the exchange layer needs of a limiter and its buckets, whatever keeps the count.

Two implementations: `RateLimiter` counts in this process (the default), and
`SharedRateLimiter` counts in Redis for a fleet of daemons, falling back to a
local share when Redis is unreachable. `ctsd.exchanges` types against these
protocols only, so either plugs in where the other did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ctsd.ratelimit.model import BucketSpec, Lane, LimitChange, ScopeKey, ScopeUsage

if TYPE_CHECKING:
    from ctsd.ratelimit.limiter import Demand, Permit


class Bucket(Protocol):
    """One scope's budget. Feedback methods are synchronous: they are called from
    ccxt's answer path; a shared bucket applies them locally at once and tells the
    fleet as soon as it can."""

    @property
    def key(self) -> ScopeKey: ...

    @property
    def spec(self) -> BucketSpec: ...

    def land(self, sent: Any) -> None:
        """The answer to the request charged as `sent` arrived (see `Permit.land`)."""
        ...

    def pause(self, seconds: float) -> None: ...

    def observe_usage(self, used: float) -> None: ...

    def add_usage(self, units: float) -> None:
        """Count `units` more for a window from now: usage counted elsewhere until now (a
        key's requests, handed over to its account's UID bucket once the UID is known)."""
        ...

    def observe_limit(self, limit: float) -> None: ...

    def snapshot(self) -> ScopeUsage: ...


class Relimitable(Bucket, Protocol):
    def relimit(self, spec: BucketSpec) -> None: ...


def relimit_all(buckets: Mapping[ScopeKey, Relimitable],
                spec_of: Callable[[ScopeKey], BucketSpec]) -> list[LimitChange]:
    """Give every bucket `spec_of(key)`, all or none; the buckets that changed, sorted.

    Every new spec is worked out before any is applied, so a `spec_of` that raises
    leaves every bucket as it was. Usage already counted stays (see
    `RateLimitBucket.relimit`): a reload is not a fresh window. Both limiters reload
    this way, whoever keeps the count.
    """
    planned = [(bucket, spec_of(key)) for key, bucket in sorted(buckets.items())]
    changes: list[LimitChange] = []
    for bucket, spec in planned:
        if spec != bucket.spec:
            changes.append(LimitChange(bucket.key, bucket.spec, spec))
            bucket.relimit(spec)
    return changes


class Limiter(Protocol):
    def bucket(self, key: ScopeKey, spec: BucketSpec) -> Bucket: ...

    def buckets(self) -> Sequence[Bucket]: ...

    def relimit(self, spec_of: Callable[[ScopeKey], BucketSpec]) -> list[LimitChange]: ...

    async def acquire(self, demands: Sequence[Demand], lane: Lane) -> Permit: ...

    def snapshot(self) -> list[ScopeUsage]: ...

    async def close(self) -> None: ...
