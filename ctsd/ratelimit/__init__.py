"""Shared request budgets: one bucket per scope the exchange counts, awaited before every request.

    RateLimiter            owns the buckets of the process; `acquire` waits for them
    ├── RateLimitBucket    one scope (e.g. Binance request weight of this host's IP):
    │                      a priority queue in front of a meter, pausable after a 429
    └── meters             SlidingWindow (fixed and sliding windows) and DecayingCounter
                           (Kraken's counter that drains at a constant rate)
    SharedRateLimiter      the same accounting for a fleet of daemons, in Redis
                           (`ctsd.ratelimit.shared`); both satisfy `protocol.Limiter`

Nothing here knows an exchange: `ctsd.exchanges` turns an exchange's declared
limits and endpoint table into `ScopeKey`s, `BucketSpec`s and weights.
"""

from ctsd.ratelimit.bucket import RateLimitBucket
from ctsd.ratelimit.config import LimitOverride, RateLimitOverrides
from ctsd.ratelimit.limiter import Demand, Permit, RateLimiter
from ctsd.ratelimit.model import (
    BucketSpec,
    Counting,
    Lane,
    LimitChange,
    MeterKind,
    ScopeKey,
    ScopeUsage,
)
from ctsd.ratelimit.protocol import Bucket, Limiter

__all__ = [
    "Bucket",
    "BucketSpec",
    "Counting",
    "Demand",
    "Lane",
    "LimitChange",
    "LimitOverride",
    "Limiter",
    "MeterKind",
    "Permit",
    "RateLimitBucket",
    "RateLimitOverrides",
    "RateLimiter",
    "ScopeKey",
    "ScopeUsage",
]
