"""OKX limits each endpoint per UID; 30 requests a second is the prototype's budget."""

from ctsd.exchanges.spec import RateLimitScope, RateLimitSpec

OKX_RATE_LIMITS = (RateLimitSpec("requests", RateLimitScope.ACCOUNT, 30, 1.0),)
