"""Binance's wire shapes: exchangeInfo, tickers, klines, accounts and orders.

Field names, order and number formatting follow Binance's documented answers
(spot prints 8 decimals, futures prints plain numbers) because ccxt's parsers,
and any other client, read exactly these.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from ctsd.sim.accounts import (
    Account,
    FeeSchedule,
    Fill,
    Holding,
    Order,
    OrderStatus,
    OrderType,
    Rejection,
    RejectKind,
)
from ctsd.sim.auth import AuthFailure
from ctsd.sim.lending import marginable
from ctsd.sim.market import Candle, Instrument, Market, TickerStats
from ctsd.sim.matching import derivatives_balances
from ctsd.sim.wire import VenueError, dumps, fixed, order_status, plain

_STATUS = {
    OrderStatus.NEW: "NEW", OrderStatus.FILLED: "FILLED",
    OrderStatus.CANCELED: "CANCELED", OrderStatus.EXPIRED: "EXPIRED",
}


def _status(order: Order) -> str:
    return order_status(order, _STATUS, "PARTIALLY_FILLED")
_ZERO = Decimal(0)


def error(status: int, code: int, msg: str, headers: Mapping[str, str] | None = None) -> VenueError:
    """Binance's error envelope: `{"code": -XXXX, "msg": "..."}`."""
    return VenueError(status, {"code": code, "msg": msg}, headers)


AUTH_ERRORS: dict[AuthFailure, tuple[int, int, str]] = {
    AuthFailure.MISSING_KEY: (401, -2014, "API-key format invalid."),
    AuthFailure.UNKNOWN_KEY: (401, -2015, "Invalid API-key, IP, or permissions for action."),
    AuthFailure.IP_NOT_ALLOWED: (401, -2015, "Invalid API-key, IP, or permissions for action."),
    AuthFailure.PERMISSION_DENIED: (401, -2015, "Invalid API-key, IP, or permissions for action."),
    AuthFailure.BAD_SIGNATURE: (400, -1022, "Signature for this request is not valid."),
    AuthFailure.STALE_TIMESTAMP: (
        400, -1021, "Timestamp for this request is outside of the recvWindow."),
}


_MANDATORY = "Mandatory parameter '{}' was not sent, was empty/null, or malformed."
_REJECTIONS: dict[RejectKind, tuple[int, str]] = {
    RejectKind.INSUFFICIENT_FUNDS: (
        -2010, "Account has insufficient balance for requested action."),
    RejectKind.UNKNOWN_ORDER: (-2013, "Order does not exist."),
    RejectKind.ORDER_NOT_OPEN: (-2011, "Unknown order sent."),
    RejectKind.UNKNOWN_SYMBOL: (-1121, "Invalid symbol."),
    RejectKind.PRICE_FILTER: (-1013, "Filter failure: PRICE_FILTER"),
    RejectKind.LOT_SIZE: (-1013, "Filter failure: LOT_SIZE"),
    RejectKind.MIN_NOTIONAL: (-1013, "Filter failure: NOTIONAL"),
    RejectKind.DUPLICATE_CLIENT_ID: (-2010, "Duplicate order sent."),
    RejectKind.BAD_PARAMETER: (-1102, _MANDATORY),
    RejectKind.WOULD_TAKE: (-2010, "Order would immediately match and take."),
    RejectKind.WOULD_TRIGGER: (-2010, "Order would immediately trigger."),
    RejectKind.REDUCE_ONLY: (-1106, "Parameter 'reduceOnly' sent when not required."),
    RejectKind.POSITION_SIDE: (-1106, "Parameter 'positionSide' sent when not required."),
    RejectKind.POSITION_LIMIT: (-2010, "Filter failure: MAX_POSITION"),
    RejectKind.BORROW_LIMIT: (-3006, "Your borrow amount has exceed maximum borrow amount."),
}
"""Spot codes (the last three cannot happen on spot); futures and cancel answers
override a few (below)."""
_FUTURES_REJECTIONS: dict[RejectKind, tuple[int, str]] = {
    RejectKind.WOULD_TRIGGER: (-2021, "Order would immediately trigger."),
    RejectKind.WOULD_TAKE: (-5022, "Due to the order could not be executed as maker, the Post "
                                   "Only order will be rejected. The order will not be recorded "
                                   "in the order history"),
    RejectKind.INSUFFICIENT_FUNDS: (-2019, "Margin is insufficient."),
    RejectKind.REDUCE_ONLY: (-2022, "ReduceOnly Order is rejected."),
    RejectKind.POSITION_SIDE: (-4061, "Order's position side does not match user's setting."),
    RejectKind.POSITION_LIMIT: (
        -2027, "Exceeded the maximum allowable position at current leverage."),
    RejectKind.MIN_NOTIONAL: (
        -4164, "Order's notional must be no smaller than 5 (unless you choose reduce only)."),
}
_CANCEL_REJECTIONS: dict[RejectKind, tuple[int, str]] = {
    RejectKind.UNKNOWN_ORDER: (-2011, "Unknown order sent."),
}


def rejection(exc: Rejection, *, futures: bool, cancel: bool = False) -> VenueError:
    """A core `Rejection` as Binance answers it on spot or futures."""
    code, msg = _REJECTIONS[exc.kind]
    if futures:
        code, msg = _FUTURES_REJECTIONS.get(exc.kind, (code, msg))
    if cancel:
        code, msg = _CANCEL_REJECTIONS.get(exc.kind, (code, msg))
    return error(400, code, msg.format(exc.detail))


def banned(now_ms: int, seconds: float) -> VenueError:
    """The 418 of an IP ban (ccxt raises DDoSProtection for it)."""
    until = now_ms + int(seconds * 1000)
    return error(418, -1003, f"Way too much request weight used; IP banned until {until}. "
                 "Please use WebSocket Streams for live updates to avoid bans.",
                 {"Retry-After": str(max(1, math.ceil(seconds)))})


def missing(name: str) -> VenueError:
    return error(400, -1102, _MANDATORY.format(name))


def market_id(inst: Instrument) -> str:
    return f"{inst.base}{inst.quote}"


def _spot_symbol(inst: Instrument) -> dict[str, Any]:
    return {
        "symbol": market_id(inst), "status": "TRADING", "baseAsset": inst.base,
        "baseAssetPrecision": 8, "quoteAsset": inst.quote, "quotePrecision": 8,
        "quoteAssetPrecision": 8, "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True,
        "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": marginable(inst),
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": fixed(inst.min_price),
             "maxPrice": fixed(inst.max_price), "tickSize": fixed(inst.tick_size)},
            {"filterType": "LOT_SIZE", "minQty": fixed(inst.min_qty),
             "maxQty": fixed(inst.max_qty), "stepSize": fixed(inst.step_size)},
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {"filterType": "MARKET_LOT_SIZE", "minQty": fixed(_ZERO),
             "maxQty": fixed(inst.max_qty), "stepSize": fixed(_ZERO)},
            {"filterType": "NOTIONAL", "minNotional": fixed(inst.min_notional),
             "applyMinToMarket": True, "maxNotional": fixed(Decimal(9_000_000)),
             "applyMaxToMarket": False, "avgPriceMins": 5},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"] if marginable(inst) else ["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def _futures_symbol(inst: Instrument) -> dict[str, Any]:
    return {
        "symbol": market_id(inst), "pair": market_id(inst), "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000, "onboardDate": inst.listed_ms, "status": "TRADING",
        "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
        "baseAsset": inst.base, "quoteAsset": inst.quote, "marginAsset": inst.quote,
        "pricePrecision": inst.price_decimals, "quantityPrecision": inst.qty_decimals,
        "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
        "underlyingSubType": [], "triggerProtect": "0.0500", "liquidationFee": "0.012500",
        "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": plain(inst.min_price),
             "maxPrice": plain(inst.max_price), "tickSize": plain(inst.tick_size)},
            {"filterType": "LOT_SIZE", "stepSize": plain(inst.step_size),
             "maxQty": plain(inst.max_qty), "minQty": plain(inst.min_qty)},
            {"filterType": "MARKET_LOT_SIZE", "stepSize": plain(inst.step_size),
             "maxQty": plain(inst.max_qty), "minQty": plain(inst.min_qty)},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": plain(inst.min_notional)},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500",
             "multiplierDown": "0.9500", "multiplierDecimal": "4"},
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                       "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        "permissionSets": ["GRID", "COPY"],
    }


def exchange_info_tail(spot: bool, instruments: list[Instrument], weight_limit: int) -> str:
    """Everything after `"serverTime":N,` — serialised once, the list can be 2,000 long."""
    limits: list[dict[str, Any]] = [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
         "limit": weight_limit},
    ]
    if spot:
        limits += [
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5,
             "limit": 61000},
        ]
        body: dict[str, Any] = {"rateLimits": limits, "exchangeFilters": [],
                                "symbols": [_spot_symbol(i) for i in instruments]}
    else:
        limits += [
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
        ]
        body = {"futuresType": "U_MARGINED", "rateLimits": limits, "exchangeFilters": [],
                "assets": [{"asset": "USDT", "marginAvailable": True,
                            "autoAssetExchange": "-10000"}],
                "symbols": [_futures_symbol(i) for i in instruments]}
    return dumps(body)[1:]


def ticker(inst: Instrument, t: TickerStats, spot: bool) -> dict[str, Any]:
    num = (lambda d: fixed(d)) if spot else plain
    change = t.last - t.open
    out: dict[str, Any] = {
        "symbol": market_id(inst), "priceChange": num(change),
        "priceChangePercent": f"{change / t.open * 100:.3f}",
        "weightedAvgPrice": num(t.vwap.quantize(inst.tick_size)),
    }
    if spot:
        out["prevClosePrice"] = num(t.open)
    out |= {"lastPrice": num(t.last), "lastQty": num(inst.min_qty)}
    if spot:
        out |= {"bidPrice": num(t.bid), "bidQty": num(inst.min_qty * 10),
                "askPrice": num(t.ask), "askQty": num(inst.min_qty * 10)}
    out |= {
        "openPrice": num(t.open), "highPrice": num(t.high), "lowPrice": num(t.low),
        "volume": num(t.volume), "quoteVolume": num(t.quote_volume),
        "openTime": t.open_ms, "closeTime": t.close_ms, "firstId": 1, "lastId": t.trades,
        "count": t.trades,
    }
    return out


def kline(inst: Instrument, c: Candle) -> list[Any]:
    return [
        c.open_ms, fixed(c.open), fixed(c.high), fixed(c.low), fixed(c.close),
        fixed(c.volume), c.close_ms, fixed(c.quote_volume), c.trades,
        fixed((c.volume / 2).quantize(inst.step_size)),
        fixed((c.quote_volume / 2).quantize(inst.tick_size)), "0",
    ]


def coin(asset: str, holding: Holding | None) -> dict[str, Any]:
    network = asset if asset in ("BTC", "ETH", "SOL", "XRP", "ADA", "DOGE", "TRX") else "ETH"
    return {
        "coin": asset, "depositAllEnable": True, "withdrawAllEnable": True, "name": asset,
        "free": fixed(holding.free if holding else _ZERO),
        "locked": fixed(holding.locked if holding else _ZERO),
        "freeze": "0", "withdrawing": "0", "ipoing": "0", "ipoable": "0", "storage": "0",
        "isLegalMoney": False, "trading": True,
        "networkList": [{
            "network": network, "coin": asset, "withdrawIntegerMultiple": "0.00000001",
            "isDefault": True, "depositEnable": True, "withdrawEnable": True,
            "depositDesc": "", "withdrawDesc": "", "specialTips": "", "name": network,
            "resetAddressStatus": False, "addressRegex": "", "memoRegex": "",
            "withdrawFee": "0.0001", "withdrawMin": "0.001", "withdrawMax": "9999999999",
            "minConfirm": 12, "unLockConfirm": 0, "sameAddress": False,
            "estimatedArrivalTime": 5, "busy": False,
        }],
    }


def spot_account(account: Account, fees: FeeSchedule, now_ms: int) -> dict[str, Any]:
    return {
        "makerCommission": int(fees.maker * 10000), "takerCommission": int(fees.taker * 10000),
        "buyerCommission": 0, "sellerCommission": 0,
        "commissionRates": {"maker": fixed(fees.maker), "taker": fixed(fees.taker),
                            "buyer": fixed(_ZERO), "seller": fixed(_ZERO)},
        "canTrade": "trade" in account.spec.permissions,
        "canWithdraw": "withdraw" in account.spec.permissions,
        "canDeposit": True, "brokered": False, "requireSelfTradePrevention": False,
        "preventSor": False, "updateTime": now_ms, "accountType": "SPOT",
        "balances": [{"asset": a, "free": fixed(h.free), "locked": fixed(h.locked)}
                     for a, h in sorted(account.spot.items())],
        "permissions": ["SPOT"], "uid": account.uid,
    }


def futures_balance(account: Account, market: Market) -> list[dict[str, Any]]:
    now = market.now_ms()
    return [{
        "accountAlias": f"Sim{account.uid}", "asset": b.asset, "balance": plain(b.wallet),
        "crossWalletBalance": plain(b.wallet), "crossUnPnl": plain(b.unrealized_pnl),
        "availableBalance": plain(b.available), "maxWithdrawAmount": plain(b.available),
        "marginAvailable": True, "updateTime": now,
    } for b in derivatives_balances(account, market)]


def spot_order(
    order: Order, inst: Instrument, *, resp_type: str = "FULL", query: bool = False,
    cancel: bool = False, fills: Sequence[Fill] = (),
) -> dict[str, Any]:
    """The spot order shape of POST (ACK/RESULT/FULL), GET and DELETE /api/v3/order;
    FULL lists the order's `fills` with their commission, as Binance does."""
    out: dict[str, Any] = {"symbol": market_id(inst)}
    if cancel:
        out["origClientOrderId"] = order.client_id
    out |= {"orderId": order.id, "orderListId": -1, "clientOrderId": order.client_id}
    if not query:
        out["transactTime"] = order.updated_ms
    if resp_type == "ACK" and not query:
        return out
    out |= {
        "price": fixed(order.price or _ZERO), "origQty": fixed(order.qty),
        "executedQty": fixed(order.filled), "origQuoteOrderQty": fixed(_ZERO),
        "cummulativeQuoteQty": fixed(order.cost), "status": _status(order),
        "timeInForce": order.time_in_force.value, "type": order_type(order, futures=False),
        "side": order.side.value.upper(),
    }
    if query:
        out |= {"stopPrice": fixed(order.trigger.price if order.trigger else _ZERO),
                "icebergQty": fixed(_ZERO), "time": order.created_ms,
                "updateTime": order.updated_ms, "isWorking": not order.untriggered}
    if order.trigger is not None and not query:
        out["stopPrice"] = fixed(order.trigger.price)
    working = -1 if order.untriggered else order.triggered_ms or order.created_ms
    out |= {"workingTime": working, "selfTradePreventionMode": "EXPIRE_MAKER"}
    if resp_type == "FULL" and not query and not cancel:
        out["fills"] = [{
            "price": fixed(f.price), "qty": fixed(f.qty), "commission": fixed(f.fee),
            "commissionAsset": f.fee_asset, "tradeId": f.trade_id,
        } for f in fills]
    return out


def order_type(order: Order, *, futures: bool) -> str:
    """Binance's type name: MARKET, LIMIT, LIMIT_MAKER, or the stop/take-profit kinds."""
    limit = order.type is OrderType.LIMIT
    if order.trigger is None:
        return "LIMIT_MAKER" if order.post_only and not futures else order.type.value.upper()
    if futures:
        kind = "STOP" if order.stop_loss else "TAKE_PROFIT"
        return kind if limit else f"{kind}_MARKET"
    kind = "STOP_LOSS" if order.stop_loss else "TAKE_PROFIT"
    return f"{kind}_LIMIT" if limit else kind


def futures_order(order: Order, inst: Instrument, *, query: bool = False) -> dict[str, Any]:
    """The USDⓈ-M order shape of POST, GET and DELETE /fapi/v1/order."""
    out: dict[str, Any] = {
        "orderId": order.id, "symbol": market_id(inst), "status": _status(order),
        "clientOrderId": order.client_id, "price": plain(order.price or _ZERO),
        "avgPrice": plain(order.average.quantize(inst.tick_size)) if order.average else "0",
        "origQty": plain(order.qty), "executedQty": plain(order.filled),
        "cumQty": plain(order.filled), "cumQuote": plain(order.cost),
        "timeInForce": order.time_in_force.value, "type": order.type.value.upper(),
        "reduceOnly": order.reduce_only, "closePosition": False,
        "side": order.side.value.upper(),
        "positionSide": order.position_side.value.upper(), "stopPrice": "0",
        "workingType": "CONTRACT_PRICE", "priceProtect": False,
        "origType": order_type(order, futures=True), "priceMatch": "NONE",
        "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0,
    }
    if query:
        out["time"] = order.created_ms
    out["updateTime"] = order.updated_ms
    if order.type is OrderType.MARKET and not order.filled:
        out["avgPrice"] = "0"
    return out
