"""Bybit limits requests per UID and endpoint group, per UID overall, and per IP.

Each signed endpoint has its own per-UID budget per second (Bybit's published
table; the order endpoints allow 20/s on spot and 10/s on derivatives — we
take 10), reported in `X-Bapi-Limit` / `X-Bapi-Limit-Status` on every answer.
On top: the prototype's 100 requests a second per account, and 600 requests
per 5 s per IP, past which Bybit answers a bare 403 and bans the IP for ten
minutes. Every request counts 1 (ccxt's costs are its own 50/s scale).

A UID can hold several keys (a read key and a trade key, say): account scopes
are keyed by the UID once a connection test has learned it (`AccountUidProbe`),
so its keys share one budget, and by API key until then.
"""

from ctsd.exchanges.spec import Charge, EndpointRule, RateLimitScope, RateLimitSpec, UsageHeader
from ctsd.ratelimit.model import Lane

_GROUPS = {
    # ccxt path → (limit name, requests per second per UID)
    "v5/order/create": ("order_create", 10),
    "v5/order/cancel": ("order_cancel", 10),
    "v5/order/amend": ("order_amend", 10),
    "v5/order/realtime": ("order_realtime", 50),
    "v5/order/history": ("order_history", 50),
    "v5/account/wallet-balance": ("wallet_balance", 50),
    "v5/account/info": ("account_info", 50),
    "v5/user/query-api": ("query_api", 10),
    "v5/asset/coin/query-info": ("coin_info", 5),
}

BYBIT_RATE_LIMITS = (
    RateLimitSpec("requests", RateLimitScope.ACCOUNT, 100, 1.0),
    RateLimitSpec("ip_requests", RateLimitScope.IP, 600, 5.0),
    *(RateLimitSpec(name, RateLimitScope.ACCOUNT, per_s, 1.0) for name, per_s in _GROUPS.values()),
)

_STATUS = UsageHeader(remaining="X-Bapi-Limit-Status", limit="X-Bapi-Limit")
_IP = Charge("ip_requests")
_ACCOUNT = Charge("requests")
_ORDER_PATHS = ("v5/order/create", "v5/order/cancel", "v5/order/amend")

BYBIT_ENDPOINTS = (
    *(EndpointRule((_IP, _ACCOUNT, Charge(name, usage=_STATUS)), api="private", path=path,
                   lane=Lane.ORDER if path in _ORDER_PATHS else None)
      for path, (name, _) in _GROUPS.items()),
    EndpointRule((_IP, _ACCOUNT), api="private"),
    EndpointRule((_IP,)),
)
