"""Bybit limits requests per UID and endpoint group, and per IP overall."""

from ctsd.exchanges.spec import RateLimitScope, RateLimitSpec

BYBIT_RATE_LIMITS = (
    RateLimitSpec("requests", RateLimitScope.ACCOUNT, 100, 1.0),
    RateLimitSpec("ip_requests", RateLimitScope.IP, 600, 5.0),
)
