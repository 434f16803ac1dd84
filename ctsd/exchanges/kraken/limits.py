"""Kraken: decaying counters per key; public calls are not counted.

Kraken's REST "call counter" is capped by tier (starter 15, intermediate and
pro 20) and drains at 0.33, 0.5 or 1 per second; each private call adds 1,
ledger and trade-history queries 2, orders nothing. Orders count in a
separate trading counter per key and pair (cap 60, draining 1/s; a cancel of
a young order adds up to 8). The prototype's "15-20 req/s" are these caps;
read as a rate they would have the key locked out within a minute, so the
defaults are the starter tier's cap *and* decay, overridable per tier
(`rate_limits.kraken.api_counter`: `limit = 20`, `interval_s = 40` for
intermediate). A decaying limit's `interval_s` is the time a full counter
takes to drain. Public calls have no published limit; we keep them to one a
second per IP, as ccxt does. Kraken reports no usage headers.
"""

from ctsd.exchanges.spec import Charge, EndpointRule, RateLimitScope, RateLimitSpec
from ctsd.ratelimit.model import Lane

KRAKEN_RATE_LIMITS = (
    RateLimitSpec("api_counter", RateLimitScope.ACCOUNT, 15, 15 / 0.33, decaying=True),
    RateLimitSpec("trading_counter", RateLimitScope.ACCOUNT, 60, 60.0, decaying=True),
    RateLimitSpec("public_requests", RateLimitScope.IP, 1, 1.0),
)

_COUNTER = Charge("api_counter")
_HISTORY = Charge("api_counter", units=2)

KRAKEN_ENDPOINTS = (
    EndpointRule((Charge("trading_counter"),), api="private", path="AddOrder", lane=Lane.ORDER),
    EndpointRule((Charge("trading_counter"),), api="private", path="EditOrder",
                 lane=Lane.ORDER),
    EndpointRule((Charge("trading_counter", units=8),), api="private", path="CancelOrder",
                 lane=Lane.ORDER),
    *(EndpointRule((_HISTORY,), api="private", path=p)
      for p in ("Ledgers", "QueryLedgers", "TradesHistory", "QueryTrades")),
    EndpointRule((_COUNTER,), api="private"),
    EndpointRule((Charge("public_requests"),)),
)
