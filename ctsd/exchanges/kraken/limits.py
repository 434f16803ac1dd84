"""Kraken's decaying call counter per key; 15/s is the starter tier (20/s above)."""

from ctsd.exchanges.spec import RateLimitScope, RateLimitSpec

KRAKEN_RATE_LIMITS = (RateLimitSpec("api_counter", RateLimitScope.ACCOUNT, 15, 1.0),)
