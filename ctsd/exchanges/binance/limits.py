"""Binance counts request weight per IP (spot and futures apart) and orders per account.

ccxt's costs are Binance weights scaled to one budget per exchange: spot
(`public`/`private`) costs are weight / 5, `sapi` costs weight / 10, futures
(`fapi*`, `dapi*`) costs are the weight. `per_cost` undoes the scaling, so the
buckets count in Binance's own units and `X-MBX-USED-WEIGHT-1M` corrects
them directly. Where ccxt's cost is below Binance's weight, a rule says so
with fixed `units`. (Klines cost by `limit`; ccxt only knows it when the
caller passes one, which `ExchangeClient.fetch_ohlcv` always does.) `sapi` is
charged to the spot IP weight: conservative (Binance counts it apart), and
what the simulator does.
"""

from ctsd.exchanges.spec import Charge, EndpointRule, RateLimitScope, RateLimitSpec, UsageHeader
from ctsd.ratelimit.model import Lane

BINANCE_RATE_LIMITS = (
    RateLimitSpec("request_weight", RateLimitScope.IP, 1200, 60.0, weighted=True),
    RateLimitSpec("futures_request_weight", RateLimitScope.IP, 2400, 60.0, weighted=True),
    RateLimitSpec("orders", RateLimitScope.ACCOUNT, 50, 10.0),
    RateLimitSpec("futures_orders", RateLimitScope.ACCOUNT, 300, 10.0),
)

_USED = UsageHeader(used="X-MBX-USED-WEIGHT-1M")
_SPOT = Charge("request_weight", per_cost=5, usage=_USED)
_SAPI = Charge("request_weight", per_cost=10, usage=_USED)
_FUTURES = Charge("futures_request_weight", per_cost=1, usage=_USED)
_FUTURES_5 = Charge("futures_request_weight", units=5, usage=_USED)

BINANCE_ENDPOINTS = (
    EndpointRule((_SPOT, Charge("orders")), api="private", method="POST", path="order",
                 lane=Lane.ORDER),
    EndpointRule((_SPOT,), api="private", method="DELETE", path="order*", lane=Lane.ORDER),
    # ccxt costs these 2 and 0.4 (weight 10 and 2); Binance weighs them 25 and 4.
    EndpointRule((Charge("request_weight", units=25, usage=_USED),), api="public",
                 method="GET", path="trades"),
    EndpointRule((Charge("request_weight", units=25, usage=_USED),), api="public",
                 method="GET", path="historicalTrades"),
    EndpointRule((Charge("request_weight", units=4, usage=_USED),), api="public",
                 method="GET", path="aggTrades"),
    EndpointRule((_SPOT,), api="public"),
    EndpointRule((_SPOT,), api="private"),
    # Margin orders: Binance weighs them per UID (6 to place), and on the IP 1 to place and
    # 10 to cancel, which ccxt's sapi costs (the UID weights, scaled) undercount.
    EndpointRule((Charge("request_weight", units=1, usage=_USED), Charge("orders")),
                 api="sapi", method="POST", path="margin/order", lane=Lane.ORDER),
    EndpointRule((Charge("request_weight", units=10, usage=_USED),), api="sapi",
                 method="DELETE", path="margin/order", lane=Lane.ORDER),
    EndpointRule((_SAPI,), api="sapi*"),
    EndpointRule((_FUTURES, Charge("futures_orders")), api="fapiPrivate", method="POST",
                 path="order", lane=Lane.ORDER),
    EndpointRule((_FUTURES,), api="fapiPrivate", method="DELETE", path="order*",
                 lane=Lane.ORDER),
    # ccxt costs these 1; Binance weighs them 5.
    EndpointRule((_FUTURES_5,), api="fapiPrivateV*", method="GET", path="account"),
    EndpointRule((_FUTURES_5,), api="fapiPrivateV*", method="GET", path="balance"),
    EndpointRule((_FUTURES_5,), api="fapiPrivateV*", method="GET", path="positionRisk"),
    # ccxt costs premiumIndex 1; Binance weighs it 1 with a symbol and 10 without: the
    # rule cannot see the parameters, so it charges the larger.
    EndpointRule((Charge("futures_request_weight", units=10, usage=_USED),), api="fapiPublic",
                 method="GET", path="premiumIndex"),
    # ccxt costs a depth without `limit` 2; Binance's default (500) weighs 10, 1000 weighs 20.
    EndpointRule((Charge("futures_request_weight", units=20, usage=_USED),), api="fapiPublic",
                 method="GET", path="depth"),
    EndpointRule((_FUTURES,), api="fapi*"),
    EndpointRule((_FUTURES,), api="dapi*"),
    EndpointRule((Charge("request_weight", per_cost=5),)),  # anything else: spot weight
)
