"""OKX limits each endpoint on its own, per IP or per UID, in 2-second windows mostly.

The per-endpoint budgets are OKX's published ones; the prototype's 30
requests a second per account sits on top of every signed call. OKX counts
some limits per IP and instrument type, or per UID and instrument: we count
them per IP or per UID, which is stricter ("per UID" is per API key until a
connection test has learned the key's UID: `AccountUidProbe`). A batch order
endpoint with one order counts as the single-order endpoint (ccxt places single
orders through `trade/batch-orders`). Every request counts 1; OKX sends no
usage headers.
"""

from ctsd.exchanges.spec import Charge, EndpointRule, RateLimitScope, RateLimitSpec
from ctsd.ratelimit.model import Lane

IP, ACCOUNT = RateLimitScope.IP, RateLimitScope.ACCOUNT

# (ccxt path, method) → (limit name, scope, requests, seconds)
_ENDPOINTS: dict[tuple[str, str], tuple[str, RateLimitScope, float, float]] = {
    ("public/time", "GET"): ("public_time", IP, 10, 2.0),
    ("system/status", "GET"): ("system_status", IP, 1, 5.0),
    ("public/instruments", "GET"): ("public_instruments", IP, 20, 2.0),
    ("market/ticker", "GET"): ("market_ticker", IP, 20, 2.0),
    ("market/tickers", "GET"): ("market_tickers", IP, 20, 2.0),
    ("market/candles", "GET"): ("market_candles", IP, 40, 2.0),
    ("market/history-candles", "GET"): ("market_history_candles", IP, 20, 2.0),
    ("asset/currencies", "GET"): ("asset_currencies", ACCOUNT, 6, 1.0),
    ("asset/balances", "GET"): ("asset_balances", ACCOUNT, 6, 1.0),
    ("account/balance", "GET"): ("account_balance", ACCOUNT, 10, 2.0),
    ("account/config", "GET"): ("account_config", ACCOUNT, 5, 2.0),
    ("trade/order", "POST"): ("trade_order", ACCOUNT, 60, 2.0),
    ("trade/batch-orders", "POST"): ("trade_order", ACCOUNT, 60, 2.0),
    ("trade/cancel-order", "POST"): ("trade_cancel", ACCOUNT, 60, 2.0),
    ("trade/cancel-batch-orders", "POST"): ("trade_cancel", ACCOUNT, 60, 2.0),
    ("trade/order", "GET"): ("trade_order_query", ACCOUNT, 60, 2.0),
    ("trade/orders-pending", "GET"): ("trade_orders_pending", ACCOUNT, 60, 2.0),
    ("trade/close-position", "POST"): ("trade_close_position", ACCOUNT, 20, 2.0),
}
_PLACES = ("trade/order", "trade/batch-orders", "trade/close-position")
"""What places an order (a close of a whole position too) and counts as a new order."""
_ORDERS = (*_PLACES, "trade/cancel-order", "trade/cancel-batch-orders")

OKX_RATE_LIMITS = (
    RateLimitSpec("requests", ACCOUNT, 30, 1.0),
    RateLimitSpec("new_orders", ACCOUNT, 1000, 2.0),
    RateLimitSpec("public_requests", IP, 20, 2.0),
    *{name: RateLimitSpec(name, scope, limit, seconds)
      for name, scope, limit, seconds in _ENDPOINTS.values()}.values(),
)

_ACCOUNT = Charge("requests")


def _rule(path: str, method: str, name: str, scope: RateLimitScope) -> EndpointRule:
    charges = (Charge(name), _ACCOUNT) if scope is ACCOUNT else (Charge(name),)
    if method == "POST" and path in _PLACES:
        charges = (*charges, Charge("new_orders"))
    api = "private" if scope is ACCOUNT else "public"
    lane = Lane.ORDER if method == "POST" and path in _ORDERS else None
    return EndpointRule(charges, api=api, method=method, path=path, lane=lane)


OKX_ENDPOINTS = (
    *(_rule(path, method, name, scope)
      for (path, method), (name, scope, _, _) in _ENDPOINTS.items()),
    EndpointRule((_ACCOUNT,), api="private"),
    EndpointRule((Charge("public_requests"),)),
)
