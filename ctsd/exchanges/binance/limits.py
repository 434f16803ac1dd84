"""Binance counts request weight per IP and orders per account."""

from ctsd.exchanges.spec import RateLimitScope, RateLimitSpec

BINANCE_RATE_LIMITS = (
    RateLimitSpec("request_weight", RateLimitScope.IP, 1200, 60.0, weighted=True),
    RateLimitSpec("orders", RateLimitScope.ACCOUNT, 50, 10.0),
)
